"""Fixtures for the Traefik tests: real Traefik in front of the session's cluster, and the
seed's two versions served by loopback servers. Test modules import them by name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from canaryctl.errors import TestenvError
from canaryctl.testenv import ClusterState, crds, traefik_build
from canaryctl.testenv.traefik import LocalTraefik, TraefikState
from canaryctl.testenv.traefik import state_of as traefik_component_state
from dataplane.loopback import EndpointMirror


@pytest.fixture(scope="session")
def traefik_binary() -> str:
    """The pinned Traefik, built from its Go module the first time; skips if it cannot be."""
    try:
        return str(traefik_build.ensure(progress=lambda m: print(m)))
    except TestenvError as exc:
        pytest.skip(f"the Traefik binary could not be found or built: {exc}")


@pytest.fixture(scope="session")
def traefik(
    traefik_binary: str, kube: Client, local_cluster: ClusterState
) -> Iterator[TraefikState]:
    """Traefik serving Ingresses of class nginx and HTTPRoutes of its Gateway on loopback.

    The data plane's own Traefik when the session's cluster has one; else one beside it.
    """
    crds.install(kube, crds.BUNDLES, progress=lambda _: None)
    running = traefik_component_state(local_cluster)
    if running is not None:
        yield running
        return
    proxy = LocalTraefik(local_cluster, progress=lambda _: None)
    state = proxy.up()
    try:
        yield state
    finally:
        if not os.environ.get("CANARYCTL_TESTENV_KEEP"):
            proxy.down()


#: Pods of the loopback app select this label, which no node has: they stay Pending.
NO_NODE = {"canaryctl.dev/loopback-test": "no-node"}


def deployment(name: str, version: str, replicas: int) -> dict[str, Any]:
    """One version of `app` whose pods never run (the loopback servers stand in for them)."""
    labels = {"app": "app", "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "app"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": NO_NODE,
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:" + version,
                            "ports": [{"containerPort": 8080}],
                        }
                    ],
                },
            },
        },
    }


@dataclass
class LoopbackApp:
    """app-v1 (stable, running) and app-v2 (canary, 0 replicas) behind Service `app`,
    served by loopback servers; requests reach them through Traefik with Host `host`."""

    kube: Client
    namespace: str
    host: str
    url: str
    mirror: EndpointMirror

    def scale(self, name: str, replicas: int) -> None:
        """Scale a Deployment, as the engine does between router calls."""
        self.kube.patch(
            Deployment,
            name,
            {"spec": {"replicas": replicas}},
            namespace=self.namespace,
            patch_type=PatchType.MERGE,
        )


@pytest.fixture
def loopback_app(kube: Client, namespace: str, traefik: TraefikState) -> Iterator[LoopbackApp]:
    """The seed's two versions and Service (selecting both) with loopback endpoints."""
    for doc in (
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "app"},
            "spec": {
                "selector": {"app": "app"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
        deployment("app-v1", "v1", 2),
        deployment("app-v2", "v2", 0),
    ):
        kube.create(codecs.from_dict(doc), namespace=namespace, field_manager="user")
    mirror = EndpointMirror(kube, namespace, ("v1", "v2"))
    mirror.start()
    try:
        yield LoopbackApp(kube, namespace, f"{namespace}.test", traefik.url + "/", mirror)
    finally:
        mirror.stop()
    assert not mirror.errors, f"the endpoint mirror failed: {mirror.errors[:3]}"

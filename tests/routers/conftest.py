"""Fixtures for the router tests: the real Istio and Gateway API CRDs in the session's
cluster, and a two-version app in a fresh namespace."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from canaryctl.testenv import ClusterState, crds
from helpers import wait_until


@pytest.fixture(scope="session")
def installed_crds(kube: Client, local_cluster: ClusterState) -> list[str]:
    """The pinned Istio networking and Gateway API CRDs, Established in the cluster."""
    return crds.install(kube, progress=lambda _: None)


def deployment(name: str, version: str, replicas: int, app: str = "app") -> dict[str, Any]:
    """A Deployment of one version of the app, pods labelled app and version (the seed's)."""
    labels = {"app": app, "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:" + version,
                            "ports": [{"containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    """A ClusterIP Service on port 80 -> 8080."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def create(kube: Client, namespace: str, *docs: dict[str, Any]) -> None:
    """Create objects from plain manifests (CRD kinds must be installed)."""
    for doc in docs:
        obj = codecs.from_dict(doc)
        kube.create(obj, namespace=namespace, field_manager="user")


def ready(kube: Client, namespace: str, name: str) -> int | None:
    """Ready replicas of a Deployment; None when it does not exist."""
    try:
        dep = kube.get(Deployment, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise
    return dep.status.readyReplicas or 0 if dep.status else 0


@dataclass
class App:
    """The two versions of `app` in `namespace`: app-v1 (stable) and app-v2 (canary)."""

    namespace: str
    stable_replicas: int
    canary_replicas: int


@pytest.fixture
def app(kube: Client, namespace: str) -> App:
    """app-v1 with 2 ready pods, app-v2 with 1, and the seed's Service `app` selecting both."""
    create(
        kube,
        namespace,
        service("app", {"app": "app"}),
        deployment("app-v1", "v1", 2),
        deployment("app-v2", "v2", 1),
    )
    wait_until(lambda: ready(kube, namespace, "app-v1") == 2, timeout=60)
    wait_until(lambda: ready(kube, namespace, "app-v2") == 1, timeout=60)
    return App(namespace, 2, 1)


class Interfering:
    """A client that lets another writer change an object just before our next patch.

    It reproduces the race a GitOps tool or a colleague causes mid-rollout: canaryctl has
    read the object and computed its patch, and someone else writes first.
    """

    def __init__(self, client: Client, interfere: Callable[[Client], None]) -> None:
        self._client = client
        self._interfere: Callable[[Client], None] | None = interfere
        self.interfered = 0

    def patch(self, *args: Any, **kwargs: Any) -> Any:
        if self._interfere is not None:
            interfere, self._interfere = self._interfere, None
            interfere(self._client)
            self.interfered += 1
        return self._client.patch(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def other_writer_patch(res: Any, name: str, namespace: str, body: Any) -> Callable[[Client], None]:
    """An edit by another field manager (a merge patch), for `Interfering`."""

    def interfere(client: Client) -> None:
        client.patch(
            res, name, body, namespace=namespace, patch_type=PatchType.MERGE, field_manager="other"
        )

    return interfere

"""canaryctl's NGINX and Gateway API routers through the data plane's Traefik, with real
pods on the real node: the measured share at each pause, the header route, promotion.

Skips where the host cannot run a node (see the ``dataplane_cluster`` fixture)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

import realnode
from canaryctl.routers import GatewayRouter, NginxRouter
from canaryctl.testenv import ClusterState
from canaryctl.testenv.traefik import state_of, user_route
from dataplane.hostapp import Load, measure, wait_for_answers
from dataplane.proxy import (
    deployment_exists,
    pause_measurement,
    report,
    settle,
    tick_until,
    wait_proxy_weight,
)
from helpers import app_ingress, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.dataplane, pytest.mark.traefik]

HEADER = {"X-Track": "canary"}


def _route(kind: str, host: str) -> dict[str, Any]:
    if kind == "nginx":
        return app_ingress("echo", host)
    return user_route("echo", host)


def _router(kind: str, kube: Client, namespace: str) -> NginxRouter | GatewayRouter:
    common: dict[str, Any] = {
        "name": "echo",
        "namespace": namespace,
        "service": "echo",
        "stable": "echo-v1",
        "canary": "echo-v2",
        "header": dict(HEADER),
    }
    if kind == "nginx":
        return NginxRouter(kube, ingress="echo", **common)
    return GatewayRouter(kube, httproute="echo", **common)


@pytest.mark.parametrize("kind", ["nginx", "gateway"])
def test_router_through_traefik_with_real_pods_splits_by_weight_and_promotes(
    kind: str,
    dataplane_cluster: ClusterState,
    dataplane_kube: Client,
    dataplane_namespace: str,
) -> None:
    kube, ns = dataplane_kube, dataplane_namespace
    proxy = state_of(dataplane_cluster)
    assert proxy is not None, "the data plane runs Traefik"
    image = realnode.load_echo(dataplane_cluster)
    host = f"{ns}.test"
    url = proxy.url + "/"
    realnode.apply(
        kube,
        ns,
        realnode.service("echo"),
        realnode.deployment("echo-v1", "v1", 2, image),
        realnode.deployment("echo-v2", "v2", 0, image),
    )
    kube.create(codecs.from_dict(_route(kind, host)), namespace=ns, field_manager="user")
    wait_until(lambda: realnode.available(kube, "echo-v1", ns) == 2, timeout=120)
    wait_for_answers(url, host, "v1", timeout=60)

    def scale(name: str, replicas: int) -> None:
        patch = {"spec": {"replicas": replicas}}
        kube.patch(Deployment, name, patch, namespace=ns, patch_type=PatchType.MERGE)

    router = _router(kind, kube, ns)
    load = Load(url, host)
    with load.running():
        router.reconcile()
        load.phase = "to 10%"
        scale("echo-v2", 1)  # capacity first; the router waits for a ready canary
        tick_until(lambda: router.set_weight(10), lambda: router.get_weight() == 10, 120)
        wait_proxy_weight(proxy.api, ns, "echo-canary", 10)
        pauses = {10: pause_measurement(load, "pause 10%")}
        header = measure(url, host, 200, HEADER)
        load.phase = "to 50%"
        scale("echo-v2", 2)
        tick_until(lambda: router.set_weight(50), lambda: router.get_weight() == 50, 120)
        wait_proxy_weight(proxy.api, ns, "echo-canary", 50)
        pauses[50] = pause_measurement(load, "pause 50%")
        load.phase = "to 100%"
        tick_until(lambda: router.set_weight(100), lambda: router.get_weight() == 100, 120)
        # As the engine: promotion follows the weight in the API, not the proxy's view.
        load.phase = "promotion"
        started = time.monotonic()
        tick_until(router.promote, lambda: not deployment_exists(kube, ns, "echo-v1"), 120)
        promoted_in = time.monotonic() - started
        router.cleanup()
        settle(load, "promotion", 8.0)  # the old pods' termination
        after = pause_measurement(load, "after promotion")
    report(
        f"{kind} through Traefik, real pods (promotion took {promoted_in:.1f}s)",
        load,
    )

    for weight, tally in pauses.items():
        assert tally.total >= 2000
        assert abs(tally.share("v2") - weight / 100) <= 0.02, (weight, tally)
    assert header.versions == {"v2": 200}, header
    assert after.versions == {"v2": after.total}, after
    for phase in ("to 10%", "pause 10%", "to 50%", "pause 50%", "after promotion"):
        assert not load.phases[phase].failures, (phase, load.phases[phase])

"""canaryctl's Gateway API router through a real Traefik (kubernetesGateway provider):
backendRef weights are the measured share of real requests, the header rule reaches only
the canary, promotion ends on the new version and rollback on the stable; and what
Traefik does with weight on a canary that has no ready endpoint."""

from __future__ import annotations

import pytest
from lightkube import Client, codecs

from canaryctl.routers import GatewayRouter
from canaryctl.testenv.traefik import GATEWAY, NAMESPACE
from dataplane.hostapp import Load, measure, wait_for_answers
from dataplane.proxy import (
    deployment_exists,
    pause_measurement,
    report,
    settle,
    tick_until,
    wait_proxy_weight,
)
from dataplane.traefik_fixtures import HostApp, host_app, traefik, traefik_binary
from helpers import wait_until

# The fixtures are imported by name, so pytest finds them in this module.
__all__ = ["host_app", "traefik", "traefik_binary"]

pytestmark = [pytest.mark.integration, pytest.mark.traefik]

HEADER = {"X-Track": "canary"}


def http_route(app: HostApp) -> None:
    """The user's HTTPRoute on Traefik's Gateway: the app's host, every path to `app`."""
    doc = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "app"},
        "spec": {
            "parentRefs": [{"name": GATEWAY, "namespace": NAMESPACE}],
            "hostnames": [app.host],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": "app", "port": 80}],
                }
            ],
        },
    }
    app.kube.create(codecs.from_dict(doc), namespace=app.namespace, field_manager="user")


def gateway_router(kube: Client, app: HostApp) -> GatewayRouter:
    return GatewayRouter(
        kube,
        name="app",
        namespace=app.namespace,
        httproute="app",
        service="app",
        stable="app-v1",
        canary="app-v2",
        header=dict(HEADER),
    )


def _start(kube: Client, app: HostApp, traefik_api: str, load: Load) -> GatewayRouter:
    """Baseline on v1, then the canary's capacity and the 10% step."""
    router = gateway_router(kube, app)
    router.reconcile()
    load.phase = "to 10%"
    app.scale("app-v2", 1)
    tick_until(lambda: router.set_weight(10), lambda: router.get_weight() == 10)
    wait_proxy_weight(traefik_api, app.namespace, "app-canary", 10)
    return router


def test_gateway_steps_header_and_promotion_through_traefik(
    kube: Client, host_app: HostApp, traefik
) -> None:
    app = host_app
    http_route(app)
    wait_for_answers(app.url, app.host, "v1")
    load = Load(app.url, app.host)
    with load.running():
        router = _start(kube, app, traefik.api, load)
        pauses = {10: pause_measurement(load, "pause 10%")}
        header = measure(app.url, app.host, 200, HEADER)
        load.phase = "to 50%"
        tick_until(lambda: router.set_weight(50), lambda: router.get_weight() == 50)
        wait_proxy_weight(traefik.api, app.namespace, "app-canary", 50)
        pauses[50] = pause_measurement(load, "pause 50%")
        load.phase = "to 100%"
        app.scale("app-v2", 2)  # the engine gives the canary full capacity first
        tick_until(lambda: router.set_weight(100), lambda: router.get_weight() == 100)
        # As the engine: promotion follows the weight in the API, not the proxy's view.
        load.phase = "promotion"
        tick_until(router.promote, lambda: not deployment_exists(kube, app.namespace, "app-v1"))
        router.cleanup()
        settle(load, "promotion")
        after = pause_measurement(load, "after promotion")
    report("gateway promotion", load)

    for weight, tally in pauses.items():
        assert tally.total >= 2000
        assert abs(tally.share("v2") - weight / 100) <= 0.02, (weight, tally)
    assert header.versions == {"v2": 200}, header
    assert after.versions == {"v2": after.total}, after
    for phase in ("to 10%", "pause 10%", "to 50%", "pause 50%", "after promotion"):
        assert not load.phases[phase].failures, (phase, load.phases[phase])


def test_gateway_rollback_through_traefik_returns_all_traffic_to_stable(
    kube: Client, host_app: HostApp, traefik
) -> None:
    app = host_app
    http_route(app)
    wait_for_answers(app.url, app.host, "v1")
    load = Load(app.url, app.host)
    with load.running():
        router = _start(kube, app, traefik.api, load)
        pause = pause_measurement(load, "pause 10%")
        load.phase = "rollback"
        tick_until(lambda: router.set_weight(0), lambda: router.get_weight() == 0)
        wait_proxy_weight(traefik.api, app.namespace, "app-canary", 0)
        router.cleanup()
        app.scale("app-v2", 0)  # canary capacity goes only after its traffic
        settle(load, "rollback")
        after = pause_measurement(load, "after rollback")
    report("gateway rollback", load)

    assert abs(pause.share("v2") - 0.10) <= 0.02, pause
    assert after.versions == {"v1": after.total}, after
    for phase in ("to 10%", "pause 10%", "after rollback"):
        assert not load.phases[phase].failures, (phase, load.phases[phase])


def test_gateway_weight_is_withdrawn_from_a_canary_without_ready_endpoints(
    kube: Client, host_app: HostApp, traefik
) -> None:
    """Traefik answers 503 for the share of a weighted backendRef whose Service has no
    ready endpoint (measured here); canaryctl, asked for any weight then, writes 0, and
    the failures stop once Traefik applies it."""
    app = host_app
    http_route(app)
    wait_for_answers(app.url, app.host, "v1")
    load = Load(app.url, app.host)
    with load.running():
        router = _start(kube, app, traefik.api, load)
        healthy = pause_measurement(load, "pause 10%")
        load.phase = "canary unready"
        app.mirror.unready.add("v2")  # the canary's pods fail their readiness probe
        wait_until(lambda: not router.backends.ready("canary"), timeout=10)
        settle(load, "canary unready", 1.0)
        unready = pause_measurement(load, "10%, canary unready")
        load.phase = "withdrawing"
        router.set_weight(50)
        withdrawn_at = router.get_weight()
        wait_proxy_weight(traefik.api, app.namespace, "app-canary", 0)
        withdrawn = pause_measurement(load, "canary unready, weight 0")
    report("gateway, canary without ready endpoints", load)

    assert abs(healthy.share("v2") - 0.10) <= 0.02, healthy
    # What Traefik does with weight left on such a canary: its share is answered 503.
    assert unready.versions.keys() == {"v1"}, unready
    assert unready.failures.keys() == {"HTTP 503"}, unready
    assert abs(unready.failures["HTTP 503"] / unready.total - 0.10) <= 0.02, unready
    # canaryctl never keeps weight on a canary without ready endpoints.
    assert withdrawn_at == 0
    assert withdrawn.versions.keys() == {"v1"} and not withdrawn.failures, withdrawn

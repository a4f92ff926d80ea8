"""canaryctl's Gateway API router through a real Traefik (kubernetesGateway provider):
backendRef weights are the measured share of real requests, the header rule reaches only
the canary, promotion ends on the new version and rollback on the stable; and what
Traefik does with weight on a canary that has no ready endpoint."""

from __future__ import annotations

import pytest
from lightkube import Client, codecs

from canaryctl.routers import GatewayRouter
from canaryctl.testenv.traefik import user_route
from dataplane.hostapp import Load, wait_for_answers
from dataplane.proxy import pause_measurement, report, settle, wait_proxy_weight
from dataplane.traefik_fixtures import HostApp, host_app, traefik, traefik_binary
from dataplane.traefik_harness import HEADER, promote, roll_back, start_at_10
from helpers import wait_until

# The fixtures are imported by name, so pytest finds them in this module.
__all__ = ["host_app", "traefik", "traefik_binary"]

pytestmark = [pytest.mark.integration, pytest.mark.traefik]


def http_route(app: HostApp) -> None:
    """The user's HTTPRoute on Traefik's Gateway: the app's host, every path to `app`."""
    doc = user_route("app", app.host)
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


def test_gateway_steps_header_and_promotion_through_traefik(
    kube: Client, host_app: HostApp, traefik
) -> None:
    http_route(host_app)
    run = promote(gateway_router(kube, host_app), host_app, traefik.api, "gateway promotion")

    for weight, tally in run.pauses.items():
        assert tally.total >= 2000
        assert abs(tally.share("v2") - weight / 100) <= 0.02, (weight, tally)
    assert run.header.versions == {"v2": 200}, run.header
    assert run.after.versions == {"v2": run.after.total}, run.after
    for phase in ("to 10%", "pause 10%", "to 50%", "pause 50%", "after promotion"):
        assert not run.load.phases[phase].failures, (phase, run.load.phases[phase])


def test_gateway_rollback_through_traefik_returns_all_traffic_to_stable(
    kube: Client, host_app: HostApp, traefik
) -> None:
    http_route(host_app)
    run = roll_back(gateway_router(kube, host_app), host_app, traefik.api, "gateway rollback")

    assert abs(run.pause.share("v2") - 0.10) <= 0.02, run.pause
    assert run.after.versions == {"v1": run.after.total}, run.after
    for phase in ("to 10%", "pause 10%", "after rollback"):
        assert not run.load.phases[phase].failures, (phase, run.load.phases[phase])


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
        router = gateway_router(kube, app)
        start_at_10(router, app, traefik.api, load)
        healthy = pause_measurement(load, "pause 10%")
        load.phase = "canary unready"
        app.mirror.unready.add("v2")  # the canary's pods fail their readiness probe
        wait_until(lambda: not router.backends.ready("canary"), timeout=10)
        settle(load, "canary unready", 3.0)  # Traefik notices in 0.3-2.2 s here
        unready = pause_measurement(load, "10%, canary unready")
        load.phase = "withdrawing"
        router.set_weight(50)
        withdrawn_at = router.get_weight()
        wait_proxy_weight(traefik.api, app.namespace, "app-canary", 0)
        withdrawn = pause_measurement(load, "canary unready, weight 0")
    report("gateway, canary without ready endpoints", load)

    assert abs(healthy.share("v2") - 0.10) <= 0.02, healthy
    # What Traefik does with weight left on such a canary: its share is answered 503.
    # (how fast Traefik notices the endpoints are gone varies with load: no exact share)
    assert unready.failures.keys() == {"HTTP 503"}, unready
    assert unready.failures["HTTP 503"] / unready.total <= 0.12, unready
    # canaryctl never keeps weight on a canary without ready endpoints.
    assert withdrawn_at == 0
    assert withdrawn.versions.keys() == {"v1"} and not withdrawn.failures, withdrawn

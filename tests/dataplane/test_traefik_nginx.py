"""canaryctl's NGINX router through a real Traefik (kubernetesIngressNGINX provider): the
canary-weight of each step is the measured share of real requests, the header route
reaches only the canary, promotion ends on the new version and rollback on the stable."""

from __future__ import annotations

import pytest
from lightkube import Client, codecs

from canaryctl.routers import NginxRouter
from dataplane.loopback import Load, measure, wait_for_answers
from dataplane.proxy import (
    deployment_exists,
    pause_measurement,
    report,
    settle,
    tick_until,
    wait_proxy_weight,
)
from dataplane.traefik_fixtures import LoopbackApp, loopback_app, traefik, traefik_binary

# The fixtures are imported by name, so pytest finds them in this module.
__all__ = ["loopback_app", "traefik", "traefik_binary"]

pytestmark = [pytest.mark.integration, pytest.mark.traefik]

HEADER = {"X-Track": "canary"}


def primary_ingress(app: LoopbackApp) -> None:
    """The user's Ingress: class nginx, the app's host, every path to Service `app`."""
    doc = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "app"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": app.host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "app", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }
    app.kube.create(codecs.from_dict(doc), namespace=app.namespace, field_manager="user")


def nginx_router(kube: Client, app: LoopbackApp) -> NginxRouter:
    return NginxRouter(
        kube,
        name="app",
        namespace=app.namespace,
        ingress="app",
        service="app",
        stable="app-v1",
        canary="app-v2",
        header=dict(HEADER),
    )


def _start(kube: Client, app: LoopbackApp, traefik_api: str, load: Load) -> NginxRouter:
    """Baseline on v1, then the canary's capacity and the 10% step."""
    router = nginx_router(kube, app)
    router.reconcile()
    load.phase = "to 10%"
    app.scale("app-v2", 1)
    tick_until(lambda: router.set_weight(10), lambda: router.get_weight() == 10)
    wait_proxy_weight(traefik_api, app.namespace, "app-canary", 10)
    return router


def test_nginx_steps_header_and_promotion_through_traefik(
    kube: Client, loopback_app: LoopbackApp, traefik
) -> None:
    app = loopback_app
    primary_ingress(app)
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
        tick_until(lambda: router.set_weight(100), lambda: router.get_weight() == 100)
        wait_proxy_weight(traefik.api, app.namespace, "app-canary", 100)
        load.phase = "promotion"
        app.scale("app-v2", 2)  # the engine gives the canary full capacity first
        tick_until(
            lambda: router.promote(), lambda: not deployment_exists(kube, app.namespace, "app-v1")
        )
        router.cleanup()
        settle(load, "promotion")
        after = pause_measurement(load, "after promotion")
    report("nginx promotion", load)

    for weight, tally in pauses.items():
        assert tally.total >= 2000
        assert abs(tally.share("v2") - weight / 100) <= 0.02, (weight, tally)
    assert header.versions == {"v2": 200}, header
    assert after.versions == {"v2": after.total}, after
    # Measured, reported above; the steps and pauses themselves must lose nothing.
    for phase in ("to 10%", "pause 10%", "to 50%", "pause 50%", "to 100%", "after promotion"):
        assert not load.phases[phase].failures, (phase, load.phases[phase])


def test_nginx_rollback_through_traefik_returns_all_traffic_to_stable(
    kube: Client, loopback_app: LoopbackApp, traefik
) -> None:
    app = loopback_app
    primary_ingress(app)
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
    report("nginx rollback", load)

    assert abs(pause.share("v2") - 0.10) <= 0.02, pause
    assert after.versions == {"v1": after.total}, after
    for phase in ("to 10%", "pause 10%", "after rollback"):
        assert not load.phases[phase].failures, (phase, load.phases[phase])

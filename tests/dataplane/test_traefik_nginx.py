"""canaryctl's NGINX router through a real Traefik (kubernetesIngressNGINX provider): the
canary-weight of each step is the measured share of real requests, the header route
reaches only the canary, promotion ends on the new version and rollback on the stable."""

from __future__ import annotations

import pytest
from lightkube import Client, codecs

from canaryctl.routers import NginxRouter
from dataplane.traefik_fixtures import HostApp, host_app, traefik, traefik_binary
from dataplane.traefik_harness import HEADER, promote, roll_back

# The fixtures are imported by name, so pytest finds them in this module.
__all__ = ["host_app", "traefik", "traefik_binary"]

pytestmark = [pytest.mark.integration, pytest.mark.traefik]


def primary_ingress(app: HostApp) -> None:
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


def nginx_router(kube: Client, app: HostApp) -> NginxRouter:
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


def test_nginx_steps_header_and_promotion_through_traefik(
    kube: Client, host_app: HostApp, traefik
) -> None:
    primary_ingress(host_app)
    run = promote(nginx_router(kube, host_app), host_app, traefik.api, "nginx promotion")

    for weight, tally in run.pauses.items():
        assert tally.total >= 2000
        assert abs(tally.share("v2") - weight / 100) <= 0.02, (weight, tally)
    assert run.header.versions == {"v2": 200}, run.header
    assert run.after.versions == {"v2": run.after.total}, run.after
    # Measured, reported above; the steps and pauses themselves must lose nothing.
    for phase in ("to 10%", "pause 10%", "to 50%", "pause 50%", "to 100%", "after promotion"):
        assert not run.load.phases[phase].failures, (phase, run.load.phases[phase])


def test_nginx_rollback_through_traefik_returns_all_traffic_to_stable(
    kube: Client, host_app: HostApp, traefik
) -> None:
    primary_ingress(host_app)
    run = roll_back(nginx_router(kube, host_app), host_app, traefik.api, "nginx rollback")

    assert abs(run.pause.share("v2") - 0.10) <= 0.02, run.pause
    assert run.after.versions == {"v1": run.after.total}, run.after
    for phase in ("to 10%", "pause 10%", "after rollback"):
        assert not run.load.phases[phase].failures, (phase, run.load.phases[phase])

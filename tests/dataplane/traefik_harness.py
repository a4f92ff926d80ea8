"""The rollout scenarios the Traefik tests drive, the same for every router Traefik serves.

Each scenario steps a router as the engine does while real requests run through Traefik,
and returns what was measured; the test modules own their routes and their assertions.
"""

from __future__ import annotations

from dataclasses import dataclass

from canaryctl.routers.base import Router
from dataplane.hostapp import Load, Tally, measure, wait_for_answers
from dataplane.proxy import (
    deployment_exists,
    pause_measurement,
    report,
    settle,
    tick_until,
    wait_proxy_weight,
)
from dataplane.traefik_fixtures import HostApp

HEADER = {"X-Track": "canary"}


def start_at_10(router: Router, app: HostApp, traefik_api: str, load: Load) -> None:
    """Baseline on v1, then the canary's capacity and the 10% step, as Traefik applies it."""
    router.reconcile()
    load.phase = "to 10%"
    app.scale("app-v2", 1)
    tick_until(lambda: router.set_weight(10), lambda: router.get_weight() == 10)
    wait_proxy_weight(traefik_api, app.namespace, "app-canary", 10)


@dataclass
class Promotion:
    """What a promotion measured: the share at each pause, the header route, the end state."""

    load: Load
    pauses: dict[int, Tally]
    header: Tally
    after: Tally


def promote(router: Router, app: HostApp, traefik_api: str, title: str) -> Promotion:
    """10% and 50% with measured pauses, the header route, 100%, promotion and cleanup."""
    wait_for_answers(app.url, app.host, "v1")
    load = Load(app.url, app.host)
    with load.running():
        start_at_10(router, app, traefik_api, load)
        pauses = {10: pause_measurement(load, "pause 10%")}
        header = measure(app.url, app.host, 200, HEADER)
        load.phase = "to 50%"
        tick_until(lambda: router.set_weight(50), lambda: router.get_weight() == 50)
        wait_proxy_weight(traefik_api, app.namespace, "app-canary", 50)
        pauses[50] = pause_measurement(load, "pause 50%")
        load.phase = "to 100%"
        app.scale("app-v2", 2)  # the engine gives the canary full capacity first
        tick_until(lambda: router.set_weight(100), lambda: router.get_weight() == 100)
        # As the engine: promotion follows the weight in the API, not the proxy's view.
        load.phase = "promotion"
        tick_until(router.promote, lambda: not deployment_exists(app.kube, app.namespace, "app-v1"))
        router.cleanup()
        settle(load, "promotion")
        after = pause_measurement(load, "after promotion")
    report(title, load)
    return Promotion(load, pauses, header, after)


@dataclass
class Rollback:
    """What a rollback from 10% measured: the share at 10% and the end state."""

    load: Load
    pause: Tally
    after: Tally


def roll_back(router: Router, app: HostApp, traefik_api: str, title: str) -> Rollback:
    """10% with a measured pause, then back to 0%, cleanup and the canary scaled away."""
    wait_for_answers(app.url, app.host, "v1")
    load = Load(app.url, app.host)
    with load.running():
        start_at_10(router, app, traefik_api, load)
        pause = pause_measurement(load, "pause 10%")
        load.phase = "rollback"
        tick_until(lambda: router.set_weight(0), lambda: router.get_weight() == 0)
        wait_proxy_weight(traefik_api, app.namespace, "app-canary", 0)
        router.cleanup()
        app.scale("app-v2", 0)  # canary capacity goes only after its traffic
        settle(load, "rollback")
        after = pause_measurement(load, "after rollback")
    report(title, load)
    return Rollback(load, pause, after)

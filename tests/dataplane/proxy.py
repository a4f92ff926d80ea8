"""Driving a router step by step as the engine does, and reading what the proxy applied."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment

from dataplane.loopback import Load, Tally

#: Requests per measured pause (the issue's floor for a 2-point tolerance).
PAUSE_REQUESTS = 2000


def tick_until(action: Callable[[], Any], done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Call a router method every 0.2 s until ``done()`` (the engine's ticks, level-triggered)."""
    deadline = time.monotonic() + timeout
    while True:
        action()
        if done():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{action} did not reach its goal within {timeout}s")
        time.sleep(0.2)


def weighted_share(rawdata: dict[str, Any], namespace: str, canary_service: str) -> float | None:
    """The canary's weight share in Traefik's applied weighted services for ``namespace``.

    Traefik names the weighted children after the namespace and Service: the canary is
    the child named after ``canary_service`` (Gateway API) or the one its NGINX provider
    suffixes ``-canary``. None when no such split is applied.
    """

    def is_canary(name: str) -> bool:
        return canary_service in name or name.split("@")[0].endswith("-canary")

    for service in (rawdata.get("services") or {}).values():
        children = (service.get("weighted") or {}).get("services") or []
        if not any(namespace in c["name"] for c in children):
            continue
        total = sum(int(c.get("weight", 1)) for c in children)
        canary = sum(int(c.get("weight", 1)) for c in children if is_canary(c["name"]))
        if total:
            return canary / total
    return None


def wait_proxy_weight(
    api: str, namespace: str, canary_service: str, weight: int, timeout: float = 30.0
) -> float:
    """Wait until Traefik's applied configuration carries ``weight`` percent on the canary.

    No weighted service at all counts as 0% (Traefik drops the split when one side has no
    weight left). Returns the seconds it took.
    """
    started = time.monotonic()
    last: float | None = None
    while time.monotonic() - started < timeout:
        raw = httpx.get(f"{api}/api/rawdata", timeout=2.0).json()
        last = weighted_share(raw, namespace, canary_service)
        if (last if last is not None else 0.0) * 100 == weight:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"Traefik did not apply {weight}% within {timeout}s (last: {last})")


def pause_measurement(load: Load, phase: str, n: int = PAUSE_REQUESTS) -> Tally:
    """Count the background load's next ``n`` requests as ``phase`` and return them."""
    load.phase = phase
    deadline = time.monotonic() + 120
    while load.phases.get(phase, Tally()).total < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"{phase}: fewer than {n} requests within 120 s")
        time.sleep(0.05)
    load.phase = f"after {phase}"
    return load.phases[phase]


def settle(load: Load, phase: str, seconds: float = 2.0) -> None:
    """Keep counting ``phase`` a little longer: the proxy's reaction to the last change."""
    load.phase = phase
    time.sleep(seconds)


def report(title: str, load: Load) -> None:
    """Print every phase's answers by version and failures (shown with pytest -s / -rA)."""
    print(f"\n{title}:")
    for phase, tally in load.phases.items():
        versions = ", ".join(f"{v}={n}" for v, n in sorted(tally.versions.items()))
        failures = ", ".join(f"{k}={n}" for k, n in sorted(tally.failures.items())) or "none"
        seconds = max(tally.last - tally.first, 1e-9)
        print(
            f"  {phase:<22} {tally.total:>6} requests in {seconds:5.1f} s  {versions:<20} "
            f"failed: {failures}"
        )


def deployment_exists(kube: Client, namespace: str, name: str) -> bool:
    """True while the Deployment exists (promotion deletes the old stable)."""
    try:
        kube.get(Deployment, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise
    return True

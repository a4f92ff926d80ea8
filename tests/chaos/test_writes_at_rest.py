"""Writes at rest: a rollout holding a pause writes nothing to the objects that route its
traffic (Deployments, Services, Ingresses, VirtualService, DestinationRule, HTTPRoute),
for every router and option, measured with watches on the real API server.

In a mesh each write of a VirtualService or HTTPRoute is a configuration push to every
proxy; before the fix, `--mirror 20` replaced the VirtualService route on every tick
(`20.0` written, `20` stored). The short holds run in `make test`; `make chaos` holds each
pause for 20 s across every option.
"""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Namespace, Service, ServiceAccount
from lightkube.resources.networking_v1 import Ingress

from canaryctl.core.models import Phase, parse_spec
from canaryctl.routers._patch import DestinationRule, HTTPRoute, VirtualService
from canaryctl.testenv import crds
from chaos.writelog import WriteLog
from helpers import app_deployment, app_service, route_objects, wait_until
from integration.test_routers_rollout import ROUTER_SPECS, Rollout, Scene

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("installed_crds")]


@pytest.fixture(scope="module")
def installed_crds(kube: Client) -> list[str]:
    """The routing CRDs (Istio, Gateway API) installed on the session's cluster."""
    return crds.install(kube, progress=lambda _: None)


#: Every kind a router writes: replica counts, Services, and the routing objects.
ROUTING_KINDS = [Deployment, Service, Ingress, VirtualService, DestinationRule, HTTPRoute]
#: Steps with a pause at weight 0 with canary capacity (tester routes, mirror) and one at 20%.
DARK_THEN_WEIGHTED = [
    {"setCanaryScale": 50},
    {"pause": {}},
    {"setWeight": 20},
    {"pause": {}},
    {"setWeight": 100},
]
WEIGHTED = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]


@dataclass(frozen=True)
class Case:
    """One router with its options."""

    id: str
    kind: str  # replicas, nginx, istio, gateway
    options: dict[str, Any]

    def steps(self) -> list[dict[str, Any]]:
        return WEIGHTED if self.kind == "replicas" else DARK_THEN_WEIGHTED

    def router(self) -> dict[str, Any] | None:
        if self.kind == "replicas":
            return None
        return {**ROUTER_SPECS[self.kind], **self.options}


HEADER = {"header": {"X-Track": "canary"}}
COOKIE = {"cookie": "canary"}
#: Short: one case per router with every option it has (in `make test`).
SHORT = [
    Case("replicas", "replicas", {}),
    Case("nginx-header-cookie", "nginx", {**HEADER, **COOKIE}),
    Case("istio-subsets-header-cookie-mirror", "istio", {**HEADER, **COOKIE, "mirror": 20}),
    Case("gateway-header-cookie", "gateway", {**HEADER, **COOKIE}),
]
#: Long (`make chaos`): each option alone, and Istio with two Services instead of subsets.
LONG = [
    *SHORT,
    *(Case(f"{kind}-plain", kind, {}) for kind in ("nginx", "istio", "gateway")),
    *(Case(f"{kind}-header", kind, HEADER) for kind in ("nginx", "istio", "gateway")),
    *(Case(f"{kind}-cookie", kind, COOKIE) for kind in ("nginx", "istio", "gateway")),
    Case("istio-subsets-mirror", "istio", {"mirror": 20}),
    Case("istio-services-mirror", "istio", {"destinationRule": None, "mirror": 12.5}),
]


def _scene(kube: Client, namespace: str, kind: str, subsets: bool = True) -> Scene:
    docs = [app_service(), app_deployment("app-v1", "v1", 2), app_deployment("app-v2", "v2", 0)]
    if kind != "replicas":
        docs += route_objects(kind)
    if kind == "istio" and not subsets:
        # Two Services: the main route leads to Service `app` itself, no DestinationRule.
        docs = [d for d in docs if d["kind"] != "DestinationRule"]
        for route in next(d for d in docs if d["kind"] == "VirtualService")["spec"]["http"]:
            if route["name"] == "main":
                route["route"] = [{"destination": {"host": "app"}}]
    for doc in docs:
        kube.create(codecs.from_dict(doc), namespace=namespace)
    scene = Scene(kube, namespace, kind)
    wait_until(lambda: scene.replicas("app-v1") == (2, 2), timeout=60)
    return scene


def _versions(kube: Client, namespace: str) -> dict[str, str]:
    """resourceVersion of every routing object in the namespace."""
    out = {}
    for res in ROUTING_KINDS:
        for obj in kube.list(res, namespace=namespace):
            out[f"{res.__name__}/{obj.metadata.name}"] = obj.metadata.resourceVersion
    return out


def _settled(kube: Client, namespace: str, quiet: float = 1.0, timeout: float = 30) -> None:
    """Wait until no routing object changed for `quiet` seconds (the step's last writes,
    e.g. tester routes once EndpointSlices list the canary). A router writing on every
    tick never settles, and fails here."""
    import time

    seen, since = _versions(kube, namespace), time.monotonic()
    deadline = since + timeout
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"routing objects still changing after {timeout}s"
        time.sleep(0.1)
        now = _versions(kube, namespace)
        if now != seen:
            seen, since = now, time.monotonic()


def hold_and_count(
    case: Case, kube: Client, namespace: str, hold: float, min_ticks: int, *, end: str
) -> list[dict[str, Any]]:
    """Run the case's rollout, hold each pause for `hold` seconds and at least `min_ticks`
    engine ticks, and return one row per pause; then `end` it (promote or abort)."""
    subsets = case.options.get("destinationRule", "") is not None
    scene = _scene(kube, namespace, case.kind, subsets)
    spec = {
        "name": "app",
        "namespace": namespace,
        "stable": "app-v1",
        "canary": "app-v2",
        "service": "app",
        "steps": case.steps(),
        "health": {"readyDeadline": "30s"},
    }
    if case.router() is not None:
        spec["router"] = {k: v for k, v in case.router().items() if v is not None}
    rollout = Rollout(scene, parse_spec(spec))
    # The engine ticks every 0.2 s here (the CLI: 1 s), so a hold sees many ticks.
    rows = []
    pauses = sum(1 for s in case.steps() if "pause" in s)
    for index in range(pauses):
        status = rollout.wait(
            lambda st, i=index: st.phase is Phase.PAUSED and st.step_index >= 2 * i + 1
        )
        _settled(kube, namespace)
        # Hold by ticks, not only seconds (counted in the engine), so a loaded machine
        # still shows the router at least `min_ticks` chances to write.
        writes: Counter[str] = Counter()
        bumps: Counter[str] = Counter()
        records, held, first_tick = 0, 0.0, rollout.ticks
        while rollout.ticks - first_tick < min_ticks or held < hold:
            window = max(1.0, hold - held) if held < hold else 1.0
            with (
                WriteLog(kube, namespace, ROUTING_KINDS, window) as routing,
                WriteLog(kube, namespace, [ConfigMap], window) as store,
            ):
                pass
            writes.update(routing.counts())
            bumps.update(routing.generation_bumps())
            records += sum(store.counts().values())
            held += window
            assert held < hold + 60, f"fewer than {min_ticks} ticks in {held:.0f}s"
        rows.append(
            {
                "case": case.id,
                "weight": status.weight,
                "seconds": held,
                "ticks": rollout.ticks - first_tick,
                "record_writes": records,  # lease renewals only (see test_lease_at_rest)
                "writes": dict(writes),
                "generation_bumps": dict(bumps),
            }
        )
        if index + 1 < pauses or end == "promote":
            rollout.command("promote")  # approves the pause step
    if end == "abort":
        rollout.command("abort")
    final = rollout.finish()
    expected = Phase.SUCCEEDED if end == "promote" else Phase.ROLLED_BACK
    assert final.phase is expected, final.message
    rollout.cleanup()
    return rows


def _check(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print(row)  # the measured figures (pytest -s)
    moving = [r for r in rows if r["writes"] or r["generation_bumps"]]
    assert not moving, f"writes during a held pause: {moving}"


def test_a_held_pause_writes_nothing_to_the_routing_objects_of_any_router(kube: Client) -> None:
    """The short version: one case per router with all its options, run side by side."""
    names = [f"rest-{uuid.uuid4().hex[:6]}-{i}" for i in range(len(SHORT))]
    for name in names:
        kube.create(Namespace(metadata=ObjectMeta(name=name)))
    try:
        for name in names:
            wait_until(lambda n=name: list(kube.list(ServiceAccount, namespace=n)), timeout=30)
        with ThreadPoolExecutor(len(SHORT)) as pool:
            runs = [
                pool.submit(hold_and_count, case, kube, ns, 2, 5, end="abort")
                for case, ns in zip(SHORT, names, strict=True)
            ]
            rows = [row for run in runs for row in run.result()]
    finally:
        for name in names:
            kube.delete(Namespace, name)
    assert len(rows) == 1 + 2 * 3, "each weight router held at weight 0 and at 20%"
    _check(rows)


@pytest.mark.chaos
@pytest.mark.parametrize("case", LONG, ids=lambda c: c.id)
def test_a_long_pause_writes_nothing_for_every_router_option(
    case: Case, kube: Client, namespace: str
) -> None:
    _check(hold_and_count(case, kube, namespace, 20, 40, end="promote"))

"""Concurrent actors: a GitOps tool re-applying the user's manifests (the VirtualService
with all traffic on the stable, the stable Deployment's old replica count) every 2 s while
canaryctl holds a step. Counted from watches: no flapping beyond the other actor's own
rate (at most one restoring write of canaryctl per foreign change), and quiet again as
soon as the other actor stops."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event

from canaryctl.core.models import Phase
from canaryctl.routers._patch import VirtualService
from canaryctl.testenv import crds
from chaos.writelog import WriteLog
from helpers import app_deployment, route_objects
from integration.test_routers_rollout import Rollout, Scene

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
SECONDS, EVERY = 30, 2.0


@pytest.fixture(scope="module")
def installed_crds(kube: Client) -> list[str]:
    """The routing CRDs (Istio, Gateway API) installed on the session's cluster."""
    return crds.install(kube, progress=lambda _: None)


def _gitops(kube: Client, namespace: str, doc: dict[str, Any], stop: threading.Event) -> list:
    """Server-side apply `doc` (forced, as a self-healing GitOps tool) every EVERY seconds;
    returns the generation each apply left (a change when it moved)."""
    left: list[int] = []
    while not stop.wait(EVERY):
        obj = kube.apply(
            codecs.from_dict(doc), namespace=namespace, field_manager="gitops", force=True
        )
        left.append(obj.metadata.generation)
    return left


def _run(kube: Client, namespace: str, kind: str, res: Any, doc: dict[str, Any]) -> dict:
    scene = Scene.create(kube, namespace, kind)
    steps = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    rollout = Rollout(scene, scene.spec(steps, header=False))
    rollout.engine.record_events = True  # the reports are part of what is measured
    rollout.wait(lambda st: st.phase is Phase.PAUSED and st.weight == 50)
    time.sleep(2)
    name = doc["metadata"]["name"]
    before = kube.get(res, name, namespace=namespace).metadata.generation
    stop = threading.Event()
    applied: list[int] = []
    actor = threading.Thread(
        target=lambda: applied.extend(_gitops(kube, namespace, doc, stop)), daemon=True
    )
    with WriteLog(kube, namespace, [res], SECONDS):
        actor.start()
        time.sleep(SECONDS - 3)
        stop.set()
        actor.join(10)
    with WriteLog(kube, namespace, [res], 6) as after:
        pass
    final = kube.get(res, name, namespace=namespace).metadata.generation
    # Each apply that moved the generation is a foreign change; the rest are canaryctl's.
    foreign = sum(1 for prev, gen in zip([before, *applied], applied, strict=False) if gen > prev)
    total = final - before
    status = rollout.status()
    rollout.command("abort")
    rollout.finish()
    row = {
        "router": kind,
        "object": f"{res.__name__.lower()}/{name}",
        "applies": len(applied),
        "foreign changes": foreign,
        "canaryctl writes": total - foreign,
        "canaryctl writes per minute": round((total - foreign) * 60 / SECONDS, 1),
        "writes after the actor stopped": sum(after.counts().values()),
        "reported": sum(
            (e.count or 1)
            for e in kube.list(Event, namespace=namespace)
            if e.reason == "RoutingChangedByAnotherActor"
        ),
        "phase": status.phase.value if status else None,
    }
    print(row)
    return row


@pytest.mark.usefixtures("installed_crds")
def test_gitops_reapplying_the_virtual_service_is_answered_once_per_change(
    kube: Client, namespace: str
) -> None:
    vs = next(d for d in route_objects("istio") if d["kind"] == "VirtualService")
    row = _run(kube, namespace, "istio", VirtualService, vs)
    assert row["foreign changes"] >= 5, "the actor really undid canaryctl's weights"
    assert row["canaryctl writes"] <= row["foreign changes"] + 1, "no flapping beyond theirs"
    assert row["writes after the actor stopped"] == 0
    # Reported as Warning events on the canary, not silently undone (changes that come
    # back to back before canaryctl's next tick count as one), and never more than made.
    assert 1 <= row["reported"] <= row["foreign changes"]


def test_gitops_reapplying_the_stable_manifest_is_answered_once_per_change(
    kube: Client, namespace: str
) -> None:
    row = _run(kube, namespace, "replicas", Deployment, app_deployment("app-v1", "v1", 2))
    assert row["canaryctl writes"] <= row["foreign changes"] + 1, "no flapping beyond theirs"

"""The lease at rest: a rollout holding a pause writes its record only to renew the lease,
once every RENEW_AFTER (a third of the lease), instead of on every tick, and the lease is
as strong as before: never older than RENEW_AFTER plus a tick, so nobody else may take it.

Measured with a watch on the record's ConfigMap on the real API server, with the CLI's
1 s interval: the default against the old behaviour (a write per tick, RENEW_AFTER = 0) in
the same process, on the same held pause.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import ConfigMap

from canaryctl.core.models import Phase
from canaryctl.driver import engine as engine_module
from canaryctl.driver.engine import Engine, LeaseHeld
from canaryctl.kube.store import LEASE_SECONDS, RENEW_AFTER, Store
from chaos.writelog import WriteLog
from integration.test_routers_rollout import Rollout, Scene

pytestmark = pytest.mark.integration

#: Seconds the held pause is watched (the old behaviour, a write per tick: BASELINE).
WINDOW = 12.0
BASELINE = 6.0
#: The CLI's default interval between ticks.
INTERVAL = 1.0


def _rollout(kube: Client, namespace: str) -> Rollout:
    scene = Scene.create(kube, namespace, "replicas")
    spec = scene.spec([{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}])
    rollout = Rollout(scene, spec, INTERVAL)
    rollout.wait(lambda st: st.phase is Phase.PAUSED)
    return rollout


def _hold(
    kube: Client, namespace: str, rollout: Rollout, seconds: float
) -> tuple[list[float], int, float]:
    """Watch the record for `seconds`; (times of its writes, ticks, oldest lease seen).

    Meanwhile the lease's age is sampled every 0.1 s from the stored record, and another
    identity tries to take the rollout over: it must always find the lease held."""
    store = Store(kube)
    other = Engine(kube, rollout.spec, identity="elsewhere/1", record_events=False)
    oldest, refused, stop = 0.0, 0, threading.Event()
    errors: list[str] = []

    def sample() -> None:
        nonlocal oldest, refused
        while not stop.is_set():
            record = store.get("app", namespace)
            if record is None or record.holder != rollout.engine.me:
                errors.append(f"the record's holder changed: {record}")
                return
            oldest = max(oldest, time.time() - record.renewed)
            try:
                other.tick()
            except LeaseHeld:
                refused += 1
            else:
                errors.append("another process took a lease that was renewed at rest")
                return
            time.sleep(0.1)

    first = rollout.ticks
    sampler = threading.Thread(target=sample, daemon=True)
    with WriteLog(kube, namespace, [ConfigMap], seconds) as log:
        sampler.start()
    stop.set()
    sampler.join(10)
    assert not errors, errors
    assert refused > 0
    writes = [w.at for w in log.writes if w.name == "canaryctl-app"]
    return writes, rollout.ticks - first, oldest


def test_a_held_pause_renews_the_lease_every_third_of_it_and_the_lease_holds(
    kube: Client, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rollout = _rollout(kube, namespace)
    writes, ticks, oldest = _hold(kube, namespace, rollout, WINDOW)
    # The old behaviour as a baseline, same rollout, same pause: a write on every tick.
    monkeypatch.setattr(engine_module, "RENEW_AFTER", 0.0)
    every_tick, base_ticks, _ = _hold(kube, namespace, rollout, BASELINE)
    monkeypatch.undo()
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(writes)]
    print(
        {
            "at rest: record writes": len(writes),
            "in seconds": WINDOW,
            "per minute": len(writes) * 60 / WINDOW,
            "seconds between renewals": gaps,
            "ticks": ticks,
            "oldest lease seen (s)": round(oldest, 2),
            "before (a write per tick), per minute": len(every_tick) * 60 / BASELINE,
            "ticks before": base_ticks,
        }
    )
    assert ticks >= 5 and base_ticks >= 3, "the engine kept ticking"
    # One renewal per RENEW_AFTER (5 s): 2 or 3 in a 12 s window, whatever the ticks.
    assert 2 <= len(writes) <= WINDOW / RENEW_AFTER + 1, f"{writes} record writes in {WINDOW}s"
    assert all(RENEW_AFTER - 0.5 < gap < RENEW_AFTER + INTERVAL + 2.0 for gap in gaps), gaps
    assert len(every_tick) >= base_ticks - 2, "the baseline wrote on every tick"
    # The lease never got older than RENEW_AFTER plus one tick and its request time.
    assert oldest < RENEW_AFTER + INTERVAL + 2.0 < LEASE_SECONDS
    # A command still acts at once: the next tick stores it.
    rollout.command("promote")
    assert rollout.finish().phase is Phase.SUCCEEDED

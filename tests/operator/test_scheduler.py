"""The operator's scheduler: one reconcile at a time per canary, reactions to a change
before the ticks of running rollouts, and workers kept free for reactions. Pure: the
reconcile is a function of this test that records and holds its calls (no cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

from canaryctl.operator.controller import Scheduler, _user_change
from canaryctl.operator.metrics import Metrics


class Held:
    """A reconcile that records the keys it is called with and holds until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, key: tuple[str, str]) -> None:
        with self.lock:
            self.calls.append(key)
        self.release.wait(10)
        return None


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _running(scheduler: Scheduler, held: Held) -> AsyncIterator[None]:
    """The scheduler's loop runs for the block; after it (passed or failed) the held calls
    are released, the loop is cancelled and the workers are shut down."""
    runner = asyncio.create_task(scheduler.run())
    try:
        yield
    finally:
        held.release.set()
        runner.cancel()
        scheduler.shutdown()


def _queued(metrics: Metrics, lane: str) -> float:
    value = metrics.registry.get_sample_value(
        "canaryctl_reconcile_queue_seconds_count", {"lane": lane}
    )
    return value or 0.0


def test_reactions_go_before_ticks_and_ticks_leave_reserved_workers_free() -> None:
    async def scenario() -> None:
        held, metrics = Held(), Metrics()
        scheduler = Scheduler(held, acting=lambda: True, metrics=metrics, workers=4, reserve=1)
        async with _running(scheduler, held):
            ticks = [("ns", f"tick-{i}") for i in range(6)]
            for key in ticks:
                scheduler.wake(key)
            # Ticks take at most workers - reserve = 3 workers, however many are due.
            await _until(lambda: len(held.calls) == 3)
            await asyncio.sleep(0.1)
            assert len(held.calls) == 3
            scheduler.wake(("ns", "bumped"), urgent=True)
            await _until(lambda: len(held.calls) == 4)
            assert held.calls[-1] == ("ns", "bumped")  # the reserved worker took it
            held.release.set()
            await _until(lambda: len(held.calls) == 7)
            assert sorted(held.calls[:3] + held.calls[4:]) == sorted(ticks)
            assert _queued(metrics, "react") == 1
            assert _queued(metrics, "tick") == 6

    asyncio.run(scenario())


def test_a_waiting_tick_woken_by_a_change_moves_to_the_react_lane() -> None:
    async def scenario() -> None:
        held, metrics = Held(), Metrics()
        scheduler = Scheduler(held, acting=lambda: True, metrics=metrics, workers=2, reserve=1)
        async with _running(scheduler, held):
            for key in [("ns", "a"), ("ns", "b"), ("ns", "c")]:
                scheduler.wake(key)
            await _until(lambda: len(held.calls) == 1)  # one tick worker; b, c wait
            scheduler.wake(("ns", "c"), urgent=True)
            await _until(lambda: len(held.calls) == 2)
            assert held.calls == [("ns", "a"), ("ns", "c")]
            held.release.set()
            await _until(lambda: len(held.calls) == 3)
            await asyncio.sleep(0.1)
            assert held.calls[2] == ("ns", "b")
            assert len(held.calls) == 3  # c ran once: its old place in the tick lane is void

    asyncio.run(scenario())


def test_one_reconcile_at_a_time_per_canary_and_a_standby_parks_wakes_until_it_acts() -> None:
    async def scenario() -> None:
        held, metrics = Held(), Metrics()
        acting = {"now": True}
        scheduler = Scheduler(held, acting=lambda: acting["now"], metrics=metrics, workers=4)
        async with _running(scheduler, held):
            scheduler.wake(("ns", "a"))
            await _until(lambda: len(held.calls) == 1)
            scheduler.wake(("ns", "a"), urgent=True)  # running: runs again once done
            await asyncio.sleep(0.1)
            assert len(held.calls) == 1
            held.release.set()
            await _until(lambda: len(held.calls) == 2)
            acting["now"] = False  # a standby, or a leader whose renewal is late
            await asyncio.sleep(0.1)
            scheduler.wake(("ns", "b"), urgent=True)
            await asyncio.sleep(0.2)
            assert held.calls == [("ns", "a"), ("ns", "a")]
            acting["now"] = True  # acting again, with no change of leadership seen
            scheduler.wake(("ns", "c"))
            await _until(lambda: len(held.calls) == 4)  # the parked wake was kept
            assert sorted(held.calls[2:]) == [("ns", "b"), ("ns", "c")]

    asyncio.run(scenario())


def test_a_status_only_change_is_not_a_user_change() -> None:
    meta = {"name": "a", "generation": 3, "annotations": {"x": "1"}, "resourceVersion": "7"}
    before = {"metadata": meta, "status": {"phase": "Progressing"}}
    echo = {"metadata": {**meta, "resourceVersion": "8"}, "status": {"phase": "Paused"}}
    assert not _user_change(before, echo)
    command = {"metadata": {**meta, "annotations": {"x": "1", "cmd": "abort"}}}
    assert _user_change(before, command)
    assert _user_change(before, {"metadata": {**meta, "generation": 4}})
    assert _user_change(before, {"metadata": {**meta, "deletionTimestamp": "2026-11-30T10:00Z"}})
    assert _user_change(None, echo)

"""The operator's Event queue: a reconcile never waits for the API, a full queue drops and
counts, and everything queued is posted in order (flush). The API client here is a
stand-in that records and can hold requests: this tests the queue, not Kubernetes (the
operator's integration tests count the real Events)."""

from __future__ import annotations

import threading
import time
from typing import Any

from canaryctl.operator.events import Recorder
from canaryctl.operator.metrics import Metrics

CANARY = {"metadata": {"name": "app", "namespace": "ns", "uid": "u"}}


class HeldClient:
    """Records created objects; holds every request until `release` is set."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def create(self, obj: Any, namespace: str) -> None:
        self.entered.set()
        self.release.wait(10)
        self.created.append(obj.reason)


def _count(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("canaryctl_events_total", {"result": result}) or 0


def test_emit_never_waits_for_the_api_and_a_full_queue_drops_and_counts() -> None:
    metrics, client = Metrics(), HeldClient()
    recorder = Recorder(client, counter=metrics.events, maxsize=2)  # type: ignore[arg-type]
    started = time.monotonic()
    recorder.emit(CANARY, "Normal", "First", "m")
    assert client.entered.wait(5)  # the worker holds "First" in a request
    for reason in ("Second", "Third", "Fourth"):  # two fit in the queue, one does not
        recorder.emit(CANARY, "Normal", reason, "m")
    assert time.monotonic() - started < 1.0
    assert _count(metrics, "dropped") == 1 and client.created == []
    client.release.set()
    assert recorder.flush(5)
    assert client.created == ["First", "Second", "Third"]
    assert _count(metrics, "posted") == 3
    recorder.close()


def test_close_posts_what_is_queued() -> None:
    metrics, client = Metrics(), HeldClient()
    client.release.set()
    recorder = Recorder(client, counter=metrics.events)  # type: ignore[arg-type]
    for i in range(20):
        recorder.emit(CANARY, "Normal", f"R{i}", "m")
    recorder.close()
    assert client.created == [f"R{i}" for i in range(20)]
    assert _count(metrics, "posted") == 20 and _count(metrics, "dropped") == 0


def test_a_finalizer_waits_for_its_own_event_not_for_the_queue() -> None:
    """An urgent Event is posted next, ahead of everything queued, and its own handle says
    when it is out: waiting on it never waits for everyone else's Events."""
    client = HeldClient()
    recorder = Recorder(client)  # type: ignore[arg-type]
    recorder.emit(CANARY, "Normal", "Busy", "m")
    assert client.entered.wait(5)  # the worker holds "Busy" in a request
    for i in range(50):
        recorder.emit(CANARY, "Normal", f"Other{i}", "m")
    mine = recorder.emit(CANARY, "Normal", "Finalized", "m", urgent=True)
    assert not mine.wait(0.2)  # bounded: the request ahead of it is still held
    client.release.set()
    assert mine.wait(5) and mine.result == "posted"
    assert client.created[:2] == ["Busy", "Finalized"]
    recorder.close()


def test_an_urgent_event_is_not_dropped_by_a_full_queue() -> None:
    metrics, client = Metrics(), HeldClient()
    recorder = Recorder(client, counter=metrics.events, maxsize=1)  # type: ignore[arg-type]
    recorder.emit(CANARY, "Normal", "First", "m")
    assert client.entered.wait(5)
    recorder.emit(CANARY, "Normal", "Second", "m")
    dropped = recorder.emit(CANARY, "Normal", "Third", "m")
    assert dropped.wait(0) and dropped.result == "dropped"
    mine = recorder.emit(CANARY, "Normal", "Finalized", "m", urgent=True)
    client.release.set()
    assert mine.wait(5) and mine.result == "posted"
    recorder.close()
    assert client.created == ["First", "Finalized", "Second"]

"""The demo's attribution of requests to the weight they were sent under."""

from __future__ import annotations

from canaryctl.cli.demo_dataplane import Traffic
from canaryctl.core.traffic import Outcome
from canaryctl.driver.report import Snapshot, VersionState


def snap(weight: int, effective: float | None, stage: str | None = None) -> Snapshot:
    side = VersionState("d", 1, 1)
    return Snapshot("c", "ns", "Progressing", 0, 3, weight, effective, side, side, "", 0.0, stage)


def test_requests_count_for_the_pause_they_were_sent_in() -> None:
    traffic = Traffic("http://127.0.0.1:1/", {}, "v2", remote=False)
    traffic.timeline = [
        (0.0, 0, 0.0, True),
        (1.0, 10, 0.0, False),  # shifting: not counted
        (2.0, 10, 10.0, True),
        (4.0, 50, 10.0, False),
        (5.0, 50, 50.0, True),
        (7.0, 100, 50.0, False),
    ]
    sent = [(0.5, "v1"), (1.5, "v2"), (2.5, "v2"), (3.0, "v1"), (3.5, "v1"), (5.5, "v2"),
            (6.0, "v1"), (6.5, None), (7.5, "v2")]  # fmt: skip
    for t, version in sent:
        status = 200 if version else None
        traffic.outcomes.append(Outcome(t, 0.01, status, version))
    steps = {s.weight: s for s in traffic.steps(settle=0)}
    assert set(steps) == {10, 50}
    assert (steps[10].canary, steps[10].total, steps[10].expected) == (1, 3, 10.0)
    assert (steps[50].canary, steps[50].total, steps[50].failed) == (1, 3, 1)
    # The first second of each pause is left out (the proxies apply the weight late).
    settled = {s.weight: s.total for s in traffic.steps(settle=1.0)}
    assert settled == {10: 2, 50: 2}


def test_a_pause_is_a_step_with_no_sub_stage_and_an_observed_weight() -> None:
    traffic = Traffic("http://127.0.0.1:1/", {}, "v2", remote=False)
    traffic.started = 0.0
    traffic.record(snap(10, 10.0))
    traffic.record(snap(50, 10.0, stage="scale-canary"))
    traffic.record(snap(50, None))
    assert [mark[3] for mark in traffic.timeline] == [True, False, False]

"""The kill campaign's invariant checks find what they look for (they can fail)."""

from __future__ import annotations

import json
import random
import threading
import time

from chaos_kills import (
    MAX_WEIGHT,
    N,
    Run,
    _check_writes,
    draw,
    replay_hint,
    run_seeds,
    schedule,
    summary,
)


def _status(step: int, weight: int, phase: str = "Progressing") -> dict:
    status = {"stepIndex": step, "weight": weight, "phase": phase}
    return {"event": "MODIFIED", "kind": "ConfigMap", "name": "canaryctl-app",
            "data": {"status": json.dumps(status)}}  # fmt: skip


def test_a_clean_history_passes() -> None:
    events = [_status(0, 0), _status(0, 30), _status(1, 60), _status(2, 100, "Promoting"),
              _status(2, 100, "Succeeded")]  # fmt: skip
    assert _check_writes(events, bad=False) == []


def test_each_kind_of_breach_is_reported() -> None:
    deploy = {"event": "MODIFIED", "kind": "Deployment", "name": "app-v2", "replicas": N + 1}
    cases = {
        "replicas": [deploy],
        "weight 80": [_status(0, MAX_WEIGHT + 10)],
        "skipped": [_status(0, 30), _status(2, 60)],
        "repeated": [_status(1, 30), _status(0, 30)],
        "fell": [_status(0, 60), _status(1, 30)],
        "promoted": [_status(2, 100, "Succeeded")],
    }
    for says, events in cases.items():
        found = _check_writes(events, bad=says == "promoted")
        assert any(says in f for f in found), (says, found)


# --- the campaign's seeds and its runs side by side -------------------------------------


def test_each_run_seed_depends_only_on_the_campaign_seed_and_the_index() -> None:
    assert run_seeds(7, 100) == run_seeds(7, 100)
    assert run_seeds(7, 10) == run_seeds(7, 100)[:10]
    assert run_seeds(7, 100) != run_seeds(8, 100)
    assert len(set(run_seeds(7, 100))) == 100


def test_a_run_seed_and_horizon_replay_the_same_scenario_and_kill_instant() -> None:
    for run_seed in run_seeds(1, 50):
        bad, kill_at = draw(random.Random(run_seed), 20.0)
        assert draw(random.Random(run_seed), 20.0) == (bad, kill_at)
        assert kill_at is not None and 0 <= kill_at < 20.0
        assert draw(random.Random(run_seed), None) == (bad, None)
    run = Run("bad", seed=12, horizon=0.1 + 0.2)
    assert replay_hint(run) == f"CANARYCTL_CHAOS_RUN_SEED=12 CANARYCTL_CHAOS_HORIZON={0.1 + 0.2!r}"
    assert float(replay_hint(run).rsplit("=", 1)[1]) == run.horizon
    assert replay_hint(Run("good", seed=12)) == "CANARYCTL_CHAOS_RUN_SEED=12"


class _Fake:
    """Runs that take a little time, recording their horizon and how many overlap."""

    def __init__(self, scenarios: dict[int, str] | None = None) -> None:
        self.scenarios = scenarios or {}
        self.horizons: dict[int, float | None] = {}
        self.running = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, index: int, horizon: float | None) -> Run:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.02)
        with self.lock:
            self.running -= 1
            self.horizons[index] = horizon
        return Run(self.scenarios.get(index, "good"), duration=10.0 + index)


def test_sequential_campaign_kills_every_run_after_the_first_over_its_length() -> None:
    fake = _Fake()
    results = schedule(6, 1, fake)
    assert [r.duration for r in results] == [10.0 + i for i in range(6)]
    assert fake.horizons == {0: None, 1: 10.0, 2: 10.0, 3: 10.0, 4: 10.0, 5: 10.0}
    assert fake.most == 1


def test_concurrent_campaign_measures_the_horizon_under_the_same_load() -> None:
    # Run 1 crash-loops and run 2 breaks an invariant: neither sets the horizon.
    fake = _Fake({1: "bad"})
    broken = Run("good", duration=99.0, violations=["x"])
    results = schedule(12, 4, lambda i, h: broken if i == 2 else fake(i, h))
    assert [fake.horizons[i] for i in (0, 1, 3)] == [None, None, None]
    assert {fake.horizons[i] for i in range(4, 12)} == {(10.0 + 13.0) / 2}
    assert fake.most == 4
    assert len(results) == 12 and results[2] is broken


def test_calibration_goes_on_until_a_healthy_clean_run() -> None:
    fake = _Fake({0: "bad", 1: "bad", 2: "good"})
    schedule(5, 2, fake)
    assert [fake.horizons[i] for i in range(4)] == [None, None, None, None]
    assert fake.horizons[4] == (12.0 + 13.0) / 2


def test_the_summary_counts_runs_kills_violations_and_harness_errors() -> None:
    runs = [
        Run("good", killed=True, duration=12.0, max_gap=0.25, horizon=11.0),
        Run("bad", killed=True, duration=40.0, violations=["a", "b"]),
        Run("good", duration=10.0),
        Run("?", error="TimeoutError()"),
    ]
    line = summary(runs, "nginx", 5, 4, 40.0)
    assert "seed 5: 4 runs (1 crash-looping), 2 kills, 2 violations, 1 harness errors" in line
    assert "4 at a time, 40 s in all (10.0 s per run)" in line
    assert "run length 10.0-40.0 s (median 12.0), horizon 11.0 s" in line
    assert "longest sample gap 250 ms" in line


def test_no_run_starts_after_the_time_budget() -> None:
    fake = _Fake()
    now = [0.0]

    def execute(index: int, horizon: float | None) -> Run:
        now[0] += 10.0  # each run takes 10 s of the clock
        return fake(index, horizon)

    results = schedule(100, 1, execute, deadline=35.0, clock=lambda: now[0])
    assert len(results) == 4 and sorted(fake.horizons) == [0, 1, 2, 3]
    assert schedule(5, 2, fake, deadline=0.0, clock=lambda: 1.0) == []

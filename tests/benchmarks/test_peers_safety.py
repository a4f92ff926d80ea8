"""The failure benchmark's pure half: what "safe" means on samples of the cluster, and the
side-by-side table it prints (no cluster, no peer)."""

from __future__ import annotations

import pytest

from helpers import load_benchmark

safety = load_benchmark("peers/safety.py", "peers_safety")


def s(at: float, stable: int, new: int, pods_new: int, target: int = 2, primary: int = 2,
      phase: str = "Progressing"):  # fmt: skip
    return safety.Sample(at, phase, stable, new, pods_new, target, primary)


def test_safe_needs_full_stable_capacity_no_canary_traffic_and_the_canary_withdrawn():
    samples = [
        s(100.0, 2, 0, 0, target=0),  # before the failure: not counted
        s(101.0, 2, 1, 1),  # a canary pod serves: not even traffic-safe
        s(102.0, 1, 0, 2),  # canary out of the endpoints, stable short of capacity
        s(103.0, 2, 0, 2),  # traffic-safe, but crash-looping pods still held up
        s(104.0, 2, 0, 0, target=0),  # safe
        s(105.0, 2, 0, 1),  # lost again: a state that does not last does not count
        s(106.0, 2, 0, 0, target=0, phase="RolledBack"),
        s(108.0, 2, 0, 0, target=0, phase="RolledBack"),
    ]
    assert safety.settles_at(samples, 100.5, safety.safe(2)) == pytest.approx(5.5)
    assert safety.settles_at(samples, 100.5, safety.traffic_safe(2)) == pytest.approx(2.5)
    assert safety.settles_at(samples[:-2], 100.5, safety.safe(2)) is None  # not at the end
    assert safety.settles_at(samples, 200.0, safety.safe(2)) is None  # no sample after
    unsafe = safety.traffic_safe(2)
    assert safety.seconds_where(samples, 100.5, lambda x: not unsafe(x)) == pytest.approx(2.0)
    assert safety.max_new_share(samples, 100.5) == pytest.approx(1 / 3)
    assert safety.min_serving(samples, 100.5) == 1
    assert safety.phase_timeline(samples, 100.0) == [(0.0, "Progressing"), (6.0, "RolledBack")]


def test_promoted_means_the_new_version_alone_at_the_count_with_the_target_at_zero():
    done = safety.promoted(4)
    assert done(s(0, 0, 4, 4, target=0, primary=4))
    assert not done(s(0, 0, 4, 4, target=2, primary=4))  # the canary Deployment still up
    assert not done(s(0, 1, 4, 4, target=0, primary=4))  # an old pod still serves
    assert not done(s(0, 0, 2, 2, target=0, primary=2))  # the count of 4 was lost


def test_the_table_puts_tools_side_by_side_and_never_invents_a_missing_figure():
    runs = [
        {
            "tool": "canaryctl",
            "scenario": "crashloop",
            "final_phase": "RolledBack",
            "figures": {"safe_s": 6.24, "safe_within_bound": True, "min_serving": 2},
            "events": [
                {"type": "Warning", "reason": "HealthGateFailed", "message": "crash", "count": 1},
                {"type": "Normal", "reason": "RolledBack", "message": "back", "count": 1},
            ],
        },
        {
            "tool": "flagger",
            "scenario": "crashloop",
            "final_phase": "Failed",
            "figures": {"safe_s": 612.0, "safe_within_bound": False, "min_serving": 2},
            "events": [{"type": "Normal", "reason": "Synced", "message": "wait\n x", "count": 57}],
        },
        {"tool": "flagger", "scenario": "kill", "error": "not initialised", "figures": {}},
        {
            "tool": "canaryctl",
            "scenario": "kill",
            "bound_s": 660.0,
            "figures": {"resume_s": 20.5, "done_s": None, "completed": False},
        },
    ]
    out = safety.table(runs)
    assert "| scenario | figure | canaryctl | flagger |" in out
    assert "| (a) canary crash-looping | bump -> safe (s) | 6.2 | 612.0 |" in out
    assert "|  | safe within 600 s | yes | no |" in out
    assert "|  | final phase (the tool's word) | RolledBack | Failed |" in out
    assert "|  | Event reasons (count) | HealthGateFailed, RolledBack | Synced x57 |" in out
    assert "|  | time not traffic-safe (s) | - | - |" in out  # not measured: not made up
    assert (
        "| (d) operator SIGKILLed mid-rollout | restart -> first write (s) | 20.5 | error |" in out
    )
    assert "|  | kill -> promoted (s) | never (660.0 s) | error |" in out  # measured: never
    assert "|  | completed correctly | no | error |" in out
    assert "(b) canary never ready" not in out  # no run of it
    said = safety.messages(runs)
    assert "  - Event Normal Synced x57: wait x" in said

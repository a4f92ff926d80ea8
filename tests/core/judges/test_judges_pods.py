"""Per-pod evidence: a bad canary pod on its own, stable pods that burst, pod counts in batches."""

from __future__ import annotations

import json
import math
import random

import pytest

from canaryctl.core.judges import Batch, Panel, PodOutlierJudge, SequentialJudge
from canaryctl.core.judges._dispersion import DispersionEstimate
from canaryctl.errors import SpecError
from core.judges.sampling import poisson


def look(rng: random.Random, *, bad_pod: float | None = None, burst: int = 0) -> Batch:
    """5 canary pods x 20 requests and 9 stable pods x 100 requests at 1% errors."""
    canary = [
        (f"c{i}", 20.0, float(poisson(20 * (bad_pod if bad_pod and i == 0 else 0.01), rng)))
        for i in range(5)
    ]
    stable = [(f"s{i}", 100.0, float(poisson(1.0, rng))) for i in range(9)]
    if burst:
        stable[0] = ("s0", 100.0, min(100.0, stable[0][2] + burst))
    return Batch(
        sum(n for _, n, _ in canary), sum(e for *_, e in canary),
        sum(n for _, n, _ in stable), sum(e for *_, e in stable),
        canary_pods=tuple(canary), stable_pods=tuple(stable),
    )  # fmt: skip


def test_a_pod_failing_twenty_percent_is_caught_on_its_own_and_named():
    rng = random.Random(11)
    judge = PodOutlierJudge(0.05)
    for _ in range(30):
        verdict = judge.observe(look(rng, bad_pod=0.2))
        if verdict.final:
            break
    assert verdict.decision == "rollback"
    assert verdict.look <= 12
    assert "canary pod c0" in verdict.message


def test_pod_judge_never_promotes_and_is_veto_only_in_a_panel():
    rng = random.Random(2)
    judge = PodOutlierJudge(0.05)
    assert {judge.observe(look(rng)).decision for _ in range(200)} == {"continue"}
    panel = Panel(0.05, {"errors": lambda a: SequentialJudge(a), "pods": PodOutlierJudge})
    assert panel.veto_only == {"pods"}


def test_healthy_pods_keep_false_rollbacks_under_alpha():
    runs, rollbacks = 100, 0
    for seed in range(runs):
        rng = random.Random(seed)
        judge = PodOutlierJudge(0.05)
        rollbacks += any(judge.observe(look(rng)).final for _ in range(60))
    assert rollbacks <= 0.05 * runs


def test_pods_beyond_the_budget_are_not_tested_one_by_one():
    judge = PodOutlierJudge(0.05, max_pods=2)
    judge.observe(look(random.Random(0)))
    assert sorted(judge.pods) == ["c0", "c1"]
    assert judge.rollback_threshold == pytest.approx(40.0)


def test_a_look_without_pods_adds_nothing():
    verdict = PodOutlierJudge().observe(Batch(100, 1, 900, 9))
    assert verdict.reason == "no-pod-data"


def test_stable_pod_spread_raises_the_dispersion_at_once():
    clean, bursty = DispersionEstimate(1.0, 0), DispersionEstimate(1.0, 0)
    pods = [(f"s{i}", 100.0, 1.0) for i in range(9)]
    clean.add_pods(pods)
    bursty.add_pods([("s0", 100.0, 21.0), *pods[1:]])
    assert clean.value() == 1.0
    assert bursty.value() > 5


def test_a_stable_pod_burst_does_not_roll_back_the_canary():
    rng = random.Random(4)
    judge = SequentialJudge()
    verdicts = [judge.observe(look(rng, burst=20 if i == 3 else 0)) for i in range(40)]
    assert all(v.decision != "rollback" for v in verdicts)


@pytest.mark.parametrize(
    "pods",
    [(("c0", -1.0, 0.0),), (("c0", 10.0, 11.0),), (("c0", math.nan, 0.0),)],
)
def test_bad_pod_counts_void_only_the_pod_evidence(pods):
    # Dropping a look for what its pods show would let the data choose the evidence.
    batch = Batch(10, 0, 10, 0, canary_pods=pods)
    assert batch.problem() is None
    assert batch.pod_problem() is not None
    assert batch.pods() is None


def test_adding_batches_drops_pod_counts():
    rng = random.Random(0)
    total = look(rng) + look(rng)
    assert total.canary_pods == () and total.stable_pods == ()


def test_invalid_pod_budget_is_a_spec_error():
    with pytest.raises(SpecError):
        PodOutlierJudge(max_pods=0)


def test_state_round_trip_continues_the_same_tests():
    rng = random.Random(9)
    looks = [look(rng, bad_pod=0.04) for _ in range(8)]
    whole, resumed = PodOutlierJudge(), PodOutlierJudge()
    for b in looks[:4]:
        whole.observe(b)
        resumed.observe(b)
    fresh = PodOutlierJudge()
    fresh.load_state(json.loads(json.dumps(resumed.state())))
    for b in looks[4:]:
        a, c = whole.observe(b), fresh.observe(b)
    assert not a.final
    assert a.rollback_evalue == pytest.approx(c.rollback_evalue)
    assert whole.evidence() == pytest.approx(fresh.evidence())

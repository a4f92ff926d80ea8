"""Benchmark baselines behave like the tools they stand for."""

from __future__ import annotations

import pytest

from canaryctl.core.judges import Batch
from canaryctl.core.judges.baselines import (
    ArgoLikeJudge,
    MannWhitneyJudge,
    ZTestJudge,
    mann_whitney_greater,
    two_proportion_z,
)

GOOD = Batch(1000, 5, 9000, 45)
BAD = Batch(1000, 50, 9000, 45)


def test_argo_failure_limit_zero_fails_on_the_first_failed_measurement() -> None:
    judge = ArgoLikeJudge(0.99, failure_limit=0, count=10)
    assert judge.observe(GOOD).decision == "continue"
    assert judge.observe(BAD).decision == "rollback"


def test_argo_failure_limit_three_tolerates_three_failures_and_promotes_after_count() -> None:
    judge = ArgoLikeJudge(0.99, failure_limit=3, count=5)
    decisions = [judge.observe(b).decision for b in (BAD, BAD, BAD, GOOD, GOOD)]
    assert decisions == ["continue"] * 4 + ["promote"]
    judge = ArgoLikeJudge(0.99, failure_limit=3, count=10)
    assert [judge.observe(BAD).decision for _ in range(4)][-1] == "rollback"


def test_z_statistic_matches_a_hand_computation() -> None:
    # canary 2%, stable 1%, pooled 1.1%; se = sqrt(.011 * .989 * (1/1000 + 1/9000))
    z = two_proportion_z(Batch(1000, 20, 9000, 90))
    assert z == pytest.approx(0.01 / (0.011 * 0.989 * (1 / 1000 + 1 / 9000)) ** 0.5)
    assert two_proportion_z(Batch(1000, 0, 9000, 0)) == 0.0


def test_z_test_rolls_back_a_clear_regression_and_promotes_after_its_looks() -> None:
    assert ZTestJudge(0.05, looks=10).observe(BAD).decision == "rollback"
    judge = ZTestJudge(0.05, looks=3)
    assert [judge.observe(GOOD).decision for _ in range(3)] == ["continue", "continue", "promote"]


def test_mann_whitney_p_values() -> None:
    assert mann_whitney_greater([0.0] * 6, [0.0] * 6) == 1.0
    separated = mann_whitney_greater([0.05, 0.06, 0.07, 0.08], [0.01, 0.02, 0.03, 0.04])
    assert separated < 0.05
    assert mann_whitney_greater([0.01, 0.02, 0.03, 0.04], [0.05, 0.06, 0.07, 0.08]) > 0.95
    # Exact one-sided p for complete separation of 4 vs 4 is 1/70; the approximation is close.
    assert separated == pytest.approx(1 / 70, abs=0.01)


def test_mann_whitney_judge_fails_a_canary_whose_sub_intervals_are_all_worse() -> None:
    judge = MannWhitneyJudge(alpha=0.05, intervals=10)
    worse = [Batch(100, 10 + k, 900, 9 + k % 2) for k in range(6)]
    assert judge.observe(worse).decision == "rollback"
    same = [Batch(100, 1, 900, 9) for _ in range(6)]
    assert MannWhitneyJudge(intervals=1).observe(same).decision == "promote"

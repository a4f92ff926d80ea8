"""Panel: several metrics decided together under one false-rollback budget."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canaryctl.core.judges import Batch, Panel, SequentialJudge, split_alpha
from canaryctl.core.judges.panel import combine
from canaryctl.errors import SpecError
from core.judges.sampling import PLAIN, poisson


def test_alpha_is_split_in_proportion_to_the_weights():
    shares = split_alpha(0.05, {"errors": 2, "latency": 1, "saturation": 1})
    assert shares == pytest.approx({"errors": 0.025, "latency": 0.0125, "saturation": 0.0125})


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0.01, 100), min_size=1))
def test_shares_always_sum_to_alpha(weights):
    assert math.fsum(split_alpha(0.05, weights).values()) == pytest.approx(0.05)


@pytest.mark.parametrize("weights", [{}, {"errors": 0.0}, {"errors": math.inf}])
def test_bad_weights_are_spec_errors(weights):
    with pytest.raises(SpecError):
        split_alpha(0.05, weights)


def test_each_judge_gets_its_share_as_rollback_threshold():
    panel = Panel(0.05, {m: lambda a: SequentialJudge(alpha=a) for m in ("e", "l", "u")})
    assert [j.rollback_threshold for j in panel.judges.values()] == pytest.approx([60.0] * 3)


def _judge(alpha: float) -> SequentialJudge:
    return SequentialJudge(alpha=alpha, **{**PLAIN, "promote_warmup_looks": 5})


def test_a_regression_on_one_metric_rolls_back_and_names_it():
    rng = random.Random(3)
    panel = Panel(0.05, {"errors": _judge, "latency": _judge})
    for _ in range(300):
        verdict = panel.observe(
            {
                "errors": Batch(100, poisson(1, rng), 900, poisson(9, rng)),
                "latency": Batch(100, poisson(5, rng), 900, poisson(9, rng)),
            }
        )
        if verdict.final:
            break
    assert verdict.decision == "rollback"
    assert verdict.message.startswith("latency:")


def test_promotion_needs_every_metric_and_missing_data_holds_it():
    rng = random.Random(5)
    panel = Panel(0.05, {"errors": _judge, "latency": _judge})
    decisions = set()
    for _ in range(400):
        # Latency has no data at all: the panel must never promote.
        verdict = panel.observe({"errors": Batch(500, poisson(2, rng), 500, poisson(8, rng))})
        decisions.add(verdict.decision)
    assert decisions == {"continue"}
    assert verdict.verdicts["errors"].decision == "promote"
    assert "latency" in verdict.message


def test_combine_rollback_wins_over_promotion():
    promote = _judge(0.05)
    rollback = _judge(0.05)
    rng = random.Random(1)
    a = b = None
    for _ in range(400):
        a = promote.observe(Batch(500, poisson(1, rng), 500, poisson(8, rng)))
        b = rollback.observe(Batch(500, poisson(30, rng), 500, poisson(3, rng)))
    assert (a.decision, b.decision) == ("promote", "rollback")
    assert combine({"a": a, "b": b}).decision == "rollback"


def test_family_wise_false_rollbacks_stay_under_alpha_with_three_correlated_metrics():
    # Three metrics of the same requests: the second is the first plus noise, the third
    # independent. Union bound: at most alpha over all, whatever the dependence.
    rollbacks, runs = 0, 200
    for seed in range(runs):
        rng = random.Random(seed)
        panel = Panel(0.05, {"e": _judge, "l": _judge, "u": _judge})
        for _ in range(100):
            c, s = poisson(2, rng), poisson(18, rng)
            verdict = panel.observe(
                {
                    "e": Batch(200, c, 1800, s),
                    "l": Batch(200, c + poisson(1, rng), 1800, s + poisson(9, rng)),
                    "u": Batch(200, poisson(3, rng), 1800, poisson(27, rng)),
                }
            )
            if verdict.final:
                break
        rollbacks += verdict.decision == "rollback"
    assert rollbacks <= 0.05 * runs

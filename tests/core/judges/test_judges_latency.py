"""Relative latency: the canary's tail above the stable's quantile bound, chosen from the past."""

from __future__ import annotations

import random

import pytest

from canaryctl.core.judges.latency import Histogram, RelativeLatencyJudge, tail_bound
from canaryctl.errors import SpecError
from core.judges.sampling import PLAIN

BOUNDS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def sample(n: int, rng: random.Random, slow: float = 1.0) -> Histogram:
    """n log-normal durations (median 0.1 s); `slow` multiplies the slowest 10%."""
    counts = [0.0] * len(BOUNDS)
    for _ in range(n):
        u = rng.random()
        d = 0.1 * pow(2.718281828, 0.6 * rng.gauss(0, 1))
        if u > 0.9:
            d *= slow
        for i, b in enumerate(BOUNDS):
            if d <= b:
                counts[i] += 1
    return Histogram(BOUNDS, tuple(counts), float(n))


def test_tail_bound_is_the_largest_bound_at_or_below_the_quantile():
    stable = Histogram(BOUNDS, (100, 500, 850, 940, 990, 1000), 1000)
    # 15% above 0.2, 6% above 0.3, 1% above 0.5
    assert tail_bound(stable, 0.95) == 0.3
    assert tail_bound(stable, 0.90) == 0.2
    assert tail_bound(stable, 0.99, min_tail_requests=5) == 0.5


def test_tail_bound_needs_enough_tail_requests():
    stable = Histogram(BOUNDS, (1, 5, 8, 9, 10, 10), 10)
    assert tail_bound(stable, 0.95, min_tail_requests=20) is None


def test_first_look_has_no_boundary_and_moves_nothing():
    judge = RelativeLatencyJudge(**PLAIN)
    rng = random.Random(0)
    verdict = judge.observe(sample(100, rng), sample(900, rng))
    assert verdict.reason == "no-boundary"
    assert verdict.rollback_evalue == 1.0


def test_boundary_comes_from_earlier_looks_only():
    judge = RelativeLatencyJudge(0.95, **PLAIN)
    # Earlier looks put the stable's p95 at 0.3 s; the current look's own stable counts
    # (every request above 0.5 s) would say 0.5 s.
    judge.observe(Histogram(BOUNDS, (0, 0, 900, 990, 1000, 1000), 1000),
                  Histogram(BOUNDS, (0, 100, 850, 950, 1000, 1000), 1000))  # fmt: skip
    judge.observe(Histogram(BOUNDS, (0, 0, 90, 99, 100, 100), 100),
                  Histogram(BOUNDS, (0, 0, 0, 0, 0, 1000), 1000))  # fmt: skip
    assert judge.bound == 0.3


def test_tail_regression_rolls_back_and_same_distribution_does_not():
    rng = random.Random(7)
    slow = RelativeLatencyJudge(0.95, **PLAIN)
    same = RelativeLatencyJudge(0.95, **PLAIN)
    for _ in range(60):
        a = slow.observe(sample(100, rng, slow=2.0), sample(900, rng))
        b = same.observe(sample(100, rng), sample(900, rng))
    assert a.decision == "rollback"
    assert b.decision != "rollback"


def test_fixed_threshold_skips_the_choice():
    judge = RelativeLatencyJudge(fixed_bound=0.3, **PLAIN)
    rng = random.Random(1)
    judge.observe(sample(100, rng), sample(900, rng))
    assert judge.bound == 0.3
    assert judge.judge.state()["totals"]["canaryRequests"] == 100


def test_mismatched_buckets_give_no_data():
    judge = RelativeLatencyJudge(fixed_bound=0.3, **PLAIN)
    verdict = judge.observe(Histogram((0.1, 0.3), (1, 2), 3), Histogram(BOUNDS, (1,) * 6, 3))
    assert verdict.reason == "invalid-counts"


def test_bad_quantile_is_a_spec_error():
    with pytest.raises(SpecError):
        RelativeLatencyJudge(1.5)

"""Batch validation: bad data is described, never raised."""

from __future__ import annotations

import math

import pytest

from canaryctl.core.judges import Batch


def test_valid_batch_has_no_problem_and_knows_the_canary_share() -> None:
    batch = Batch(100, 1, 300, 3)
    assert batch.problem() is None
    assert batch.canary_share == 0.25


@pytest.mark.parametrize(
    ("batch", "fragment"),
    [
        (Batch(0, 0, 900, 9), "no requests"),
        (Batch(math.nan, 0, 900, 9), "NaN"),
        (Batch(100, math.inf, 900, 9), "NaN or infinite"),
        (Batch(100, -1, 900, 9), "negative"),
        (Batch(100, 1, -900, 9), "negative"),
        (Batch(100, 101, 900, 9), "more errors than requests"),
        (Batch(100, 1, 900, 901), "more errors than requests"),
    ],
)
def test_unusable_batches_are_described(batch: Batch, fragment: str) -> None:
    problem = batch.problem()
    assert problem is not None
    assert fragment in problem


def test_latency_batch_counts_slow_requests_as_errors() -> None:
    batch = Batch.from_latency(
        canary_requests=50, canary_slow=5, stable_requests=450, stable_slow=9
    )
    assert batch == Batch(50, 5, 450, 9)


def test_batches_add_up_to_totals() -> None:
    assert Batch(1, 0, 2, 1) + Batch(3, 1, 4, 0) == Batch(4, 1, 6, 1)
    assert Batch(1, 0, 2, 1).to_dict() == {
        "canaryRequests": 1,
        "canaryErrors": 0,
        "stableRequests": 2,
        "stableErrors": 1,
    }

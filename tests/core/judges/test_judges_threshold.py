"""ThresholdJudge: Flagger/Argo check counting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canaryctl.core.judges import Batch, ThresholdJudge
from canaryctl.errors import SpecError

GOOD = Batch(1000, 5, 9000, 45)  # 99.5% success
BAD = Batch(1000, 50, 9000, 45)  # 95% success
GREY = Batch(1000, 15, 9000, 45)  # 98.5% success
EMPTY = Batch(0, 0, 9000, 45)


def test_rolls_back_when_failed_checks_reach_the_failure_limit() -> None:
    judge = ThresholdJudge(min_success_rate=0.99, failure_limit=3, promote_after=10)
    first, second = judge.observe(BAD), judge.observe(BAD)
    assert (first.decision, first.failed_checks) == ("continue", 1)
    assert (second.decision, second.failed_checks) == ("continue", 2)
    third = judge.observe(BAD)
    assert third.decision == "rollback"
    assert third.reason == "failure-limit"
    assert third.failed_checks == 3


def test_failures_are_counted_over_the_whole_analysis_not_consecutively() -> None:
    judge = ThresholdJudge(failure_limit=2, promote_after=10)
    decisions = [judge.observe(b).decision for b in (BAD, GOOD, GOOD, BAD)]
    assert decisions == ["continue", "continue", "continue", "rollback"]


def test_promotes_after_enough_successful_checks() -> None:
    judge = ThresholdJudge(failure_limit=5, promote_after=3)
    verdicts = [judge.observe(b) for b in (GOOD, BAD, GOOD, GOOD)]
    assert [v.decision for v in verdicts] == ["continue", "continue", "continue", "promote"]
    assert verdicts[-1].successful_checks == 3
    assert verdicts[-1].success_rate == pytest.approx(0.995)


def test_inconclusive_band_continues_with_the_flag_and_counts_nothing() -> None:
    judge = ThresholdJudge(0.99, failure_limit=1, promote_after=1, inconclusive_floor=0.98)
    verdict = judge.observe(GREY)
    assert verdict.decision == "continue"
    assert verdict.inconclusive
    assert (verdict.failed_checks, verdict.successful_checks) == (0, 0)
    assert judge.observe(BAD).decision == "rollback"  # below the floor is a failure


def test_missing_data_counts_as_measurement_errors_not_failures() -> None:
    judge = ThresholdJudge(failure_limit=1, consecutive_error_limit=2)
    first, second = judge.observe(EMPTY), judge.observe(Batch(100, math.nan, 900, 9))
    assert [first.decision, second.decision] == ["continue", "continue"]
    assert second.message == "no data"
    assert (second.failed_checks, second.consecutive_errors) == (0, 2)
    third = judge.observe(EMPTY)
    assert third.decision == "rollback"
    assert third.reason == "consecutive-errors"


def test_a_check_with_data_resets_the_error_run() -> None:
    judge = ThresholdJudge(failure_limit=5, consecutive_error_limit=1)
    judge.observe(EMPTY)
    assert judge.observe(GOOD).consecutive_errors == 0
    assert judge.observe(EMPTY).decision == "continue"


def test_min_requests_turns_thin_checks_into_measurement_errors() -> None:
    judge = ThresholdJudge(min_requests=50)
    verdict = judge.observe(Batch(10, 5, 900, 9))
    assert verdict.decision == "continue"
    assert verdict.reason == "too-few-requests"
    assert verdict.failed_checks == 0
    assert verdict.consecutive_errors == 1


@settings(max_examples=40, deadline=None)
@given(later=st.lists(st.sampled_from([GOOD, BAD, GREY, EMPTY]), max_size=15))
def test_verdicts_are_absorbing(later: list[Batch]) -> None:
    judge = ThresholdJudge(failure_limit=1)
    decided = judge.observe(BAD)
    assert decided.decision == "rollback"
    for batch in later:
        assert judge.observe(batch) == decided


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_success_rate": 1.5},
        {"failure_limit": 0},
        {"promote_after": 0},
        {"consecutive_error_limit": -1},
        {"inconclusive_floor": 0.995},
        {"min_requests": 0},
    ],
)
def test_invalid_parameters_are_spec_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(SpecError):
        ThresholdJudge(**kwargs)  # type: ignore[arg-type]

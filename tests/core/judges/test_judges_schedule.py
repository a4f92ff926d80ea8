"""LookSchedule: looks sized to the evidence rate, always within their bounds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canaryctl.core.judges import LookSchedule
from canaryctl.errors import SpecError


def test_first_look_is_the_shortest():
    assert LookSchedule(min_interval=2, max_interval=30).next_interval(0, 0) == 2


def test_looks_double_until_errors_appear():
    schedule = LookSchedule(min_interval=1, max_interval=10)
    elapsed, lengths = 0.0, []
    for _ in range(6):
        step = schedule.next_interval(elapsed, 0)
        lengths.append(step)
        elapsed += step
    assert lengths == [1, 1, 2, 4, 8, 10]


def test_look_holds_about_the_target_number_of_errors():
    # 55 errors per second (1000 req/s, 5%): the shortest look; 1 per second: 20 s.
    schedule = LookSchedule(target_errors=20, min_interval=1, max_interval=60)
    assert schedule.next_interval(10, 550) == 1
    assert schedule.next_interval(30, 30) == pytest.approx(20)


def test_rare_errors_get_the_longest_look():
    assert LookSchedule(max_interval=10).next_interval(600, 1) == 10


@pytest.mark.parametrize("elapsed, errors", [(-1, 3), (math.nan, 3), (10, math.nan), (10, -2)])
def test_bad_inputs_fall_back_to_the_shortest_look(elapsed, errors):
    assert LookSchedule(min_interval=3).next_interval(elapsed, errors) == 3


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"target_errors": 0}, "targetErrors"),
        ({"min_interval": 0}, "minInterval"),
        ({"min_interval": 5, "max_interval": 4}, "maxInterval"),
        ({"max_interval": math.inf}, "maxInterval"),
    ],
)
def test_invalid_schedule_names_the_field(kwargs, field):
    with pytest.raises(SpecError) as info:
        LookSchedule(**kwargs)
    assert field in str(info.value)


@given(
    target=st.floats(0.1, 1000),
    low=st.floats(0.5, 30),
    span=st.floats(0, 300),
    elapsed=st.floats(0, 1e6),
    errors=st.floats(0, 1e7),
)
def test_every_look_stays_within_its_bounds(target, low, span, elapsed, errors):
    schedule = LookSchedule(target, low, low + span)
    assert low <= schedule.next_interval(elapsed, errors) <= low + span


def test_defaults_are_a_rollouts_defaults_5_to_60_s_of_about_10_errors():
    schedule = LookSchedule()
    assert (schedule.target_errors, schedule.min_interval, schedule.max_interval) == (10, 5, 60)
    # 1000 req/s at 1% errors: 10 errors take a second, so the shortest look.
    assert schedule.next_interval(60, 660) == 5
    # 100 req/s at 1%: about 10 s; 10 req/s at 0.1%: the longest look.
    assert schedule.next_interval(60, 60) == pytest.approx(10)
    assert schedule.next_interval(600, 6) == 60

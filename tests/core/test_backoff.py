"""The retry schedule of an API outage (pure: times and random numbers are passed in)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from canaryctl.core.backoff import Outage


def test_delays_double_up_to_the_cap_with_jitter_between_half_and_whole() -> None:
    outage = Outage(timeout=1000, base=0.5, cap=5.0)
    low = [outage.failed(0.0, 0.0) for _ in range(6)]
    outage.recovered()
    high = [outage.failed(0.0, 0.999999) for _ in range(6)]
    assert low == [0.25, 0.5, 1.0, 2.0, 2.5, 2.5]
    assert [round(d, 3) for d in high] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_gives_up_at_the_timeout_and_the_last_wait_ends_there() -> None:
    outage = Outage(timeout=10, base=1.0, cap=8.0)
    assert outage.failed(100.0, 0.5) == 0.75
    assert outage.failed(104.0, 0.5) == 1.5
    assert outage.failed(108.0, 0.5) == 2.0  # 3 s would overshoot the timeout: 2 s left
    assert outage.failed(110.0, 0.5) is None
    assert outage.down_for(110.0) == 10.0


def test_a_success_ends_the_outage_and_the_next_one_starts_short_again() -> None:
    outage = Outage(timeout=10, base=1.0, cap=8.0)
    for now in range(5):
        outage.failed(float(now), 0.0)
    outage.recovered()
    assert outage.down_for(50.0) == 0.0
    assert outage.failed(50.0, 0.0) == 0.5  # the first delay again, timed from 50
    assert outage.failed(59.0, 0.0) == 1.0
    assert outage.attempts == 2


@given(
    timeout=st.floats(0.1, 600),
    gaps=st.lists(st.floats(0, 30), min_size=1, max_size=60),
    rands=st.lists(st.floats(0, 1, exclude_max=True), min_size=60, max_size=60),
)
def test_never_spins_never_overshoots_and_always_gives_up(
    timeout: float, gaps: list[float], rands: list[float]
) -> None:
    outage = Outage(timeout=timeout)
    now = 0.0
    for gap, rand in zip(gaps, rands, strict=False):
        now += gap
        delay = outage.failed(now, rand)
        if now - outage.since >= timeout:
            assert delay is None
            return
        assert delay is not None
        assert 0 < delay <= outage.cap
        assert now + delay <= outage.since + timeout + 1e-9
    # Waiting for every delay reaches the timeout after a bounded number of tries.
    for _ in range(10_000):
        delay = outage.failed(now, 0.5)
        if delay is None:
            return
        now += delay
    raise AssertionError("never gave up")

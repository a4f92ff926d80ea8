"""The probe's bookkeeping: versions read from answers, the schedule, and the split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canaryctl.core.traffic import (
    MAX_RATE,
    UNKNOWN,
    Outcome,
    Schedule,
    SplitMeter,
    quantile,
    version_of,
)
from canaryctl.errors import SpecError


@pytest.mark.parametrize(
    ("headers", "body", "version"),
    [
        ({"X-App-Version": "v2.0.0"}, b"anything", "v2.0.0"),
        ({"x-app-version": " v2 "}, b"", "v2"),
        ({}, b'{"version": "v1.0.0", "pod": "p"}', "v1.0.0"),
        ({}, b'{"version": 3}', "3"),
        ({}, b"Host: pulpocon-app-v1-x, Version: v1.0.0\n", "v1.0.0"),
        ({}, "2018-01-28T00:22:04+01:00 - Host: host-1, Version: v1.0.0", "v1.0.0"),
        ({}, b"<html>502 Bad Gateway</html>", None),
        ({}, b'{"pod": "p"}', None),
        ({}, b"{not json, version: v9}", "v9"),
        ({}, b"", None),
    ],
)
def test_version_is_read_from_header_json_or_the_seeds_text(headers, body, version) -> None:
    assert version_of(headers, body) == version


def test_header_wins_over_the_body() -> None:
    assert version_of({"X-App-Version": "v2"}, b'{"version": "v1"}') == "v2"


def test_quantile_is_an_observed_value_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) == 50.0
    assert quantile(values, 0.99) == 99.0
    assert quantile(values, 1.0) == 100.0
    assert quantile([7.0], 0.99) == 7.0
    assert quantile([], 0.5) is None


def test_schedule_sends_rate_times_duration_requests_evenly() -> None:
    schedule = Schedule(rate=10, duration=10)
    assert schedule.total == 100
    assert [schedule.due(n) for n in (0, 1, 99)] == [0.0, 0.1, 9.9]
    assert Schedule(rate=10, duration=10, count=25).total == 25
    assert Schedule(rate=3, duration=1.1).total == 4  # due at 0, 1/3, 2/3, 1
    assert Schedule(rate=0.5, duration=1).total == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": 0, "duration": 1}, "--rate"),
        ({"rate": MAX_RATE + 1, "duration": 1}, "--rate"),
        ({"rate": float("nan"), "duration": 1}, "--rate"),
        ({"rate": 1, "duration": 0}, "--duration"),
        ({"rate": 1, "duration": 7200}, "--duration"),
        ({"rate": 1, "duration": 1, "count": 0}, "--count"),
    ],
)
def test_schedule_refuses_unbounded_or_empty_runs(kwargs, field) -> None:
    with pytest.raises(SpecError) as err:
        Schedule(**kwargs)
    assert err.value.field == field


def ok(sent: float, version: str | None, status: int | None = 200, latency: float = 0.01):
    return Outcome(sent, latency, status, version, None if status else "ConnectError")


def test_meter_counts_failures_codes_and_latency_by_version() -> None:
    meter = SplitMeter(window=5)
    for n in range(9):
        meter.add(ok(n * 0.1, "v1", latency=0.001 * (n + 1)))
    meter.add(ok(0.95, "v2", status=500, latency=0.2))
    meter.add(ok(1.0, None, status=None, latency=1.0))
    meter.add(ok(1.1, None, status=502))
    report = meter.report(now=1.2)
    assert report["requests"] == 12 and report["failed"] == 3
    v1, v2, unknown = (report["versions"][v] for v in ("v1", "v2", UNKNOWN))
    assert (v1["requests"], v1["failed"], v1["codes"]) == (9, 0, {"200": 9})
    assert v1["p50"] == pytest.approx(0.005) and v1["p99"] == pytest.approx(0.009)
    assert (v2["failed"], v2["errorRate"], v2["codes"]) == (1, 1.0, {"500": 1})
    assert unknown["codes"] == {"502": 1, "ConnectError": 1}
    assert v1["share"] == pytest.approx(9 / 12)


def test_window_split_shows_the_recent_traffic_only() -> None:
    meter = SplitMeter(window=2)
    for n in range(100):  # 10 s at 10/s: v1 alone, then 50/50 from 8 s on
        version = "v1" if n < 80 or n % 2 else "v2"
        meter.add(ok(n / 10, version))
    assert meter.window_shares(now=9.95) == {"v1": 0.5, "v2": 0.5}
    assert meter.shares() == {"v1": 0.9, "v2": 0.1}
    assert meter.window_shares(now=30) == {}


@given(st.lists(st.tuples(st.sampled_from(["v1", "v2", None]), st.sampled_from([200, 500, None]))))
def test_meter_totals_add_up(outcomes) -> None:
    meter = SplitMeter()
    for n, (version, status) in enumerate(outcomes):
        meter.add(ok(n * 0.01, version, status))
    report = meter.report(now=len(outcomes) * 0.01)
    versions = report["versions"].values()
    assert sum(v["requests"] for v in versions) == report["requests"] == len(outcomes)
    assert sum(v["failed"] for v in versions) == report["failed"]
    assert report["failed"] == sum(1 for _, s in outcomes if s != 200)
    if outcomes:
        assert sum(v["share"] for v in versions) == pytest.approx(1.0)
        assert sum(v["windowShare"] for v in versions) == pytest.approx(1.0)

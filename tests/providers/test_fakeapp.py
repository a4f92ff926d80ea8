"""The fake seed app: simulated traffic by the clock, deterministic per seed."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from canaryctl.errors import SpecError
from canaryctl.testenv.fakeapp import FakeApp, Traffic, load_traffic


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def samples(app: FakeApp) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    text = app.metrics().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def requests_of(app: FakeApp, version: str, code: str) -> float:
    key = ("http_requests_total", (("code", code), ("method", "GET"), ("version", version)))
    return samples(app)[key]


def test_requests_arrive_at_the_configured_rate_by_the_clock() -> None:
    clock = Clock()
    app = FakeApp({"v1": Traffic(rate=50), "v2": Traffic(rate=2.5)}, clock=clock)
    clock.now += 10
    assert app.totals("v1") == (500, 0) and app.totals("v2") == (25, 0)
    clock.now += 0.3  # fractions carry over instead of being lost
    clock.now += 0.3
    assert app.totals("v2")[0] == 26
    assert requests_of(app, "v1", "200") == 530


def test_same_seed_gives_the_same_metrics_whatever_the_read_pattern() -> None:
    traffic = {"v2": Traffic(rate=100, error_rate=0.1, latency_median=0.2, latency_sigma=1.0)}
    clock_a, clock_b = Clock(), Clock()
    app_a = FakeApp(traffic, seed=3, clock=clock_a)
    app_b = FakeApp(traffic, seed=3, clock=clock_b)
    clock_a.now += 20
    for _ in range(20):
        clock_b.now += 1
        samples(app_b)
    assert samples(app_a) == samples(app_b)
    other = FakeApp(traffic, seed=4, clock=clock_a)
    clock_a.now += 20
    assert samples(other) != samples(app_a)


def test_error_share_and_latency_follow_the_configuration() -> None:
    clock = Clock()
    traffic = Traffic(rate=1000, error_rate=0.1, latency_median=0.1, latency_sigma=0.8)
    app = FakeApp({"v2": traffic}, clock=clock)
    clock.now += 20  # 20000 requests
    requests, errors = app.totals("v2")
    assert requests == 20000
    assert abs(errors / requests - 0.1) < 4 * math.sqrt(0.1 * 0.9 / requests)
    assert requests_of(app, "v2", "500") == errors
    data = samples(app)
    fast = sum(
        value
        for (name, labels), value in data.items()
        if name == "request_duration_seconds_bucket" and ("le", "0.25") in labels
    )
    expected = traffic.slow_share(0.25)
    assert 0.1 < expected < 0.2
    assert abs((1 - fast / requests) - expected) < 4 * math.sqrt(expected / requests)


def test_reconfiguring_applies_from_now_on_only() -> None:
    clock = Clock()
    app = FakeApp({"v2": Traffic(rate=100)}, clock=clock)
    clock.now += 10
    app.configure("v2", error_rate=1.0)
    clock.now += 10
    assert app.totals("v2") == (2000, 1000)
    app.configure("v3", rate=10)
    clock.now += 1
    assert app.totals("v3") == (10, 0)


@pytest.mark.parametrize(
    "changes",
    [{"error_rate": 1.5}, {"rate": -1}, {"latency_median": 0}, {"colour": 1}],
)
def test_invalid_traffic_is_refused(changes: dict) -> None:
    app = FakeApp({"v2": Traffic(rate=1)})
    with pytest.raises(SpecError):
        app.configure("v2", **changes)


def test_new_version_needs_a_rate() -> None:
    with pytest.raises(SpecError, match="required"):
        FakeApp().configure("v3", error_rate=0.1)


def test_http_endpoints_serve_metrics_and_accept_new_configuration() -> None:
    with FakeApp({"v1": Traffic(rate=10), "v2": Traffic(rate=10)}) as app:
        metrics = httpx.get(f"{app.url}/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'http_requests_total{code="200",method="GET",version="v1"}' in metrics.text
        assert "request_duration_seconds_bucket" in metrics.text
        changed = httpx.post(f"{app.url}/config", json={"v2": {"error_rate": 0.5}})
        assert changed.status_code == 200 and changed.json()["v2"]["error_rate"] == 0.5
        assert app.traffic()["v2"] == Traffic(rate=10, error_rate=0.5)
        refused = httpx.post(f"{app.url}/config", json={"v2": {"error_rate": 2}})
        assert refused.status_code == 400
        assert httpx.get(f"{app.url}/config").json()["v2"]["error_rate"] == 0.5
        assert httpx.get(f"{app.url}/nope").status_code == 404


def test_traffic_file_is_read_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "traffic.yaml"
    path.write_text("v1: {rate: 90}\nv2:\n  rate: 10\n  error_rate: 0.2\n")
    assert load_traffic(str(path)) == {
        "v1": Traffic(rate=90),
        "v2": Traffic(rate=10, error_rate=0.2),
    }

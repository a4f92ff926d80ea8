"""The seed app's binary on the host: its three ports, injected errors and latency, and a
graceful shutdown, all checked with real HTTP requests on loopback."""

from __future__ import annotations

import math
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from canaryctl.testenv.fakeapp import FakeApp
from helpers import wait_until
from seedapp import SOURCE, SeedApp

JSON = {"Accept": "application/json"}


def samples(metrics_url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of /metrics by sample name."""
    text = httpx.get(f"{metrics_url}/metrics", timeout=5).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def requests_total(metrics_url: str, version: str) -> dict[str, float]:
    """http_requests_total of `version` by code."""
    return {
        labels["code"]: value
        for labels, value in samples(metrics_url)["http_requests_total"]
        if labels["version"] == version
    }


def test_http_port_answers_version_and_pod(seed_app_binary: Path) -> None:
    env = {"VERSION": "v1.0.0", "POD_NAME": "pulpocon-app-v1-abcde"}
    with SeedApp(seed_app_binary, env) as app, httpx.Client(timeout=5) as http:
        answer = http.get(app.url, headers=JSON)
        assert answer.status_code == 200
        assert answer.json() == {"version": "v1.0.0", "pod": "pulpocon-app-v1-abcde"}
        assert answer.headers["x-app-version"] == "v1.0.0"
        text = http.get(f"{app.url}/some/path")
        assert text.text == "Host: pulpocon-app-v1-abcde, Version: v1.0.0\n"


def test_probe_port_serves_live_and_ready(seed_app_binary: Path) -> None:
    with SeedApp(seed_app_binary, {"VERSION": "v1"}) as app, httpx.Client(timeout=5) as http:
        assert http.get(f"{app.probe_url}/live").status_code == 200
        assert http.get(f"{app.probe_url}/ready").text == "ready\n"
        assert http.get(f"{app.probe_url}/nope").status_code == 404


def test_metrics_port_counts_requests_with_the_fake_apps_names_and_labels(
    seed_app_binary: Path,
) -> None:
    """The built-in PromQL templates read these names; the fake app must stay the same."""
    with SeedApp(seed_app_binary, {"VERSION": "v1"}) as app, httpx.Client(timeout=5) as http:
        for _ in range(7):
            assert http.get(app.url).status_code == 200
        http.post(app.url)
        seen = samples(app.metrics_url)
    counted = {(lb["code"], lb["method"]): v for lb, v in seen["http_requests_total"]}
    assert counted == {("200", "GET"): 7.0, ("500", "GET"): 0.0, ("200", "POST"): 1.0}
    buckets = {lb["le"] for lb, _ in seen["request_duration_seconds_bucket"] if lb["code"] == "200"}
    assert {"0.05", "0.1", "0.25", "0.5", "1", "+Inf"} <= buckets
    count = [v for lb, v in seen["request_duration_seconds_count"] if lb["method"] == "GET"]
    assert sorted(count) == [0.0, 7.0]

    with FakeApp() as fake:
        fake_seen = samples(fake.url)
    for name in ("http_requests_total", "request_duration_seconds_bucket"):
        assert {frozenset(lb) for lb, _ in seen[name]} == {
            frozenset(lb) for lb, _ in fake_seen[name]
        }, name


def test_error_rate_fails_that_share_and_the_metrics_count_each_failure(
    seed_app_binary: Path,
) -> None:
    env = {"VERSION": "v2", "ERROR_RATE": "0.2"}
    n = 1000
    codes: list[int] = []
    with SeedApp(seed_app_binary, env) as app, httpx.Client(timeout=5) as http:
        for _ in range(n):
            answer = http.get(app.url, headers=JSON)
            assert answer.json()["version"] == "v2"
            codes.append(answer.status_code)
        counted = requests_total(app.metrics_url, "v2")
    failed = codes.count(500)
    assert codes.count(200) + failed == n
    # Binomial(1000, 0.2): sd 12.6; 5 sd either side.
    assert abs(failed - 0.2 * n) < 5 * math.sqrt(n * 0.2 * 0.8), failed
    assert counted == {"200": n - failed, "500": failed}


def test_extra_latency_slows_every_answer(seed_app_binary: Path) -> None:
    env = {"VERSION": "v2", "EXTRA_LATENCY": "80ms"}
    with SeedApp(seed_app_binary, env) as app, httpx.Client(timeout=5) as http:
        http.get(app.url)  # the connection is open: time the answers only
        took = []
        for _ in range(5):
            start = time.perf_counter()
            http.get(app.url)
            took.append(time.perf_counter() - start)
        seen = samples(app.metrics_url)
    assert min(took) >= 0.08
    fast = [v for lb, v in seen["request_duration_seconds_bucket"] if lb["le"] == "0.05"]
    slow = [v for lb, v in seen["request_duration_seconds_bucket"] if lb["le"] == "0.1"]
    assert sum(fast) == 0 and sum(slow) == 6


def test_sigterm_fails_ready_keeps_serving_then_exits_after_in_flight_requests(
    seed_app_binary: Path,
) -> None:
    # Generous delays: the assertions hold on a machine too busy to run the test promptly.
    env = {"VERSION": "v1", "EXTRA_LATENCY": "1s", "SHUTDOWN_DELAY": "4s"}
    results: list[int | str] = []

    def slow_request(url: str) -> None:
        try:
            results.append(httpx.get(url, timeout=10).status_code)
        except httpx.HTTPError as exc:
            results.append(type(exc).__name__)

    with SeedApp(seed_app_binary, env) as app, httpx.Client(timeout=5) as http:
        in_flight = [threading.Thread(target=slow_request, args=(app.url,)) for _ in range(5)]
        for thread in in_flight:
            thread.start()
        wait_until(lambda: _in_flight(app.metrics_url) == 5, timeout=10, interval=0.05)
        terminated = time.monotonic()
        app.terminate()
        time.sleep(0.1)
        assert http.get(f"{app.probe_url}/ready").status_code == 503
        # New requests during the delay are served, and told to reconnect elsewhere.
        during = httpx.get(app.url, timeout=5)
        assert during.status_code == 200 and during.headers["connection"] == "close"
        for thread in in_flight:
            thread.join(timeout=10)
        assert results == [200] * 5
        assert app.wait(timeout=10) == 0
        stopped = time.monotonic() - terminated
        with pytest.raises(httpx.ConnectError):
            httpx.get(app.url, timeout=2)
    assert 4.0 <= stopped < 15.0, f"exited {stopped:.2f}s after SIGTERM with a 4s delay"
    assert [line["msg"] for line in app.lines[-3:]] == ["signal", "draining", "stopped"]


def _in_flight(metrics_url: str) -> float:
    return sum(v for _, v in samples(metrics_url).get("in_flight_requests", []))


def test_invalid_setting_exits_2_naming_the_variable(seed_app_binary: Path) -> None:
    result = subprocess.run(
        [str(seed_app_binary)],
        env={"ERROR_RATE": "lots"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert "ERROR_RATE" in result.stdout and "lots" in result.stdout


def test_go_unit_tests_pass(seed_app_binary: Path) -> None:
    """`go test ./...` of the app, so `make test` runs them too (the build cache is warm)."""
    result = subprocess.run(
        ["go", "test", "-count=1", "./..."],
        cwd=SOURCE,
        env={**os.environ, "CGO_ENABLED": "0"},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout + result.stderr

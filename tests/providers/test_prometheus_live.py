"""The provider against a real Prometheus scraping the fake seed apps every second."""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import httpx
import pytest

from canaryctl.errors import AnalysisError, TestenvError
from canaryctl.providers.prometheus import Auth, PrometheusClient
from canaryctl.providers.templates import (
    Target,
    builtin_check,
    error_batch,
    fetch_histograms,
    latency_batch,
    run_check,
    variables,
)
from canaryctl.testenv.prometheus import PrometheusServer, ScrapeTarget, find_prometheus
from helpers import wait_until
from providers.scenarios import FAKE_APPS, NAMESPACE, TOKEN, Live

pytestmark = pytest.mark.prometheus

WINDOW = 10  # seconds per look


@pytest.fixture(scope="module")
def live(prometheus: Live) -> Live:
    """The session Prometheus, once it holds a full look window of samples."""
    prometheus.wait_for_history(WINDOW + 1)
    return prometheus


def target(app: str) -> Target:
    return Target(namespace=NAMESPACE, app=app, canary="v2", stable="v1")


def test_error_batch_counts_match_the_configured_traffic(live: Live) -> None:
    with live.client() as prom:
        batch = error_batch(prom, target("steady"), f"{WINDOW}s")
    assert batch is not None
    steady = FAKE_APPS["steady"]
    for requests, errors, traffic in (
        (batch.canary_requests, batch.canary_errors, steady["v2"]),
        (batch.stable_requests, batch.stable_errors, steady["v1"]),
    ):
        expected = traffic.rate * WINDOW
        assert abs(requests - expected) < 0.15 * expected
        share_sd = math.sqrt(traffic.error_rate * (1 - traffic.error_rate) / requests)
        assert abs(errors / requests - traffic.error_rate) < 5 * share_sd


def test_canary_with_twice_the_error_rate_shows_it(live: Live) -> None:
    with live.client() as prom:
        batch = error_batch(prom, target("regress"), f"{WINDOW}s")
    assert batch is not None
    canary = batch.canary_errors / batch.canary_requests
    stable = batch.stable_errors / batch.stable_requests
    # True ratio 2; the bounds sit more than 4 standard errors away.
    assert 1.3 < canary / stable < 3.0


def test_latency_batch_counts_requests_slower_than_a_bucket_bound(live: Live) -> None:
    traffic = FAKE_APPS["steady"]["v2"]
    with live.client() as prom:
        batch = latency_batch(prom, target("steady"), f"{WINDOW}s", 0.25)
        whole_bound = latency_batch(prom, target("steady"), f"{WINDOW}s", 1)
        with pytest.raises(AnalysisError, match="bucket bounds"):
            latency_batch(prom, target("steady"), f"{WINDOW}s", 0.3)
    assert batch is not None and whole_bound is not None
    expected = traffic.slow_share(0.25)
    share_sd = math.sqrt(expected * (1 - expected) / batch.canary_requests)
    assert abs(batch.canary_errors / batch.canary_requests - expected) < 5 * share_sd
    assert whole_bound.canary_errors < batch.canary_errors  # "1.0" bucket was matched


def test_histograms_by_le_give_both_versions_the_same_buckets_and_true_shares(
    live: Live,
) -> None:
    with live.client() as prom:
        pair = fetch_histograms(prom, target("steady"), f"{WINDOW}s")
        batch = latency_batch(prom, target("steady"), f"{WINDOW}s", 0.25)
    assert pair is not None and batch is not None
    canary, stable = pair
    assert canary.bounds == stable.bounds and 0.25 in canary.bounds
    assert list(canary.cumulative) == sorted(canary.cumulative)
    # The +Inf bucket counts the requests; the slow share above 0.25 s is the seed's.
    expected = FAKE_APPS["steady"]["v2"].slow_share(0.25)
    share_sd = math.sqrt(expected * (1 - expected) / canary.count)
    assert abs(canary.above(0.25) / canary.count - expected) < 5 * share_sd
    assert abs(canary.count - batch.canary_requests) <= 0.05 * batch.canary_requests


def test_builtin_checks_judge_real_values(live: Live) -> None:
    with live.client() as prom:
        steady = variables(target("steady"), f"{WINDOW}s")
        regress = variables(target("regress"), f"{WINDOW}s")
        ok = run_check(prom, builtin_check("request-success-rate", minimum=95), steady)
        bad = run_check(prom, builtin_check("request-success-rate", minimum=95), regress)
        p99 = run_check(prom, builtin_check("request-duration", maximum=5000), steady)
    assert ok.passed and 96 < ok.value < 100
    assert not bad.passed and 85 < bad.value < 95 and "below min 95" in bad.reason
    assert p99.passed and 100 < p99.value < 5000


def test_missing_series_and_nan_or_infinite_results_are_no_data(live: Live) -> None:
    with live.client() as prom:
        assert prom.query('sum(http_requests_total{app="no-such-app"})') is None
        assert prom.query("0/0") is None
        assert prom.query("1/0") is None
        assert prom.query("-1/0") is None
        assert prom.query("vector(0) / 0") is None
        assert error_batch(prom, Target(NAMESPACE, "no-such-app"), "5s") is None
        assert prom.query(f'count(up{{namespace="{NAMESPACE}"}})') == len(FAKE_APPS)


def test_unaggregated_bad_and_range_queries_are_errors(live: Live) -> None:
    with live.client() as prom:
        with pytest.raises(AnalysisError, match=r"series .* aggregate the query, e\.g\. sum"):
            prom.query('http_requests_total{app="steady"}')
        with pytest.raises(AnalysisError, match="bad_data"):
            prom.query("sum(")
        with pytest.raises(AnalysisError, match="range vector"):
            prom.query("up[5s]")


def test_canary_that_starts_failing_is_seen_within_a_few_scrapes(live: Live) -> None:
    switch = target("switch")

    def canary_error_share() -> float:
        batch = error_batch(prom, switch, "3s")
        assert batch is not None and batch.stable_errors == 0
        return batch.canary_errors / max(1, batch.canary_requests)

    with live.client() as prom:
        assert canary_error_share() == 0
        httpx.post(f"{live.apps['switch'].url}/config", json={"v2": {"error_rate": 0.5}})
        # Once the window holds only post-switch scrapes, the share is near 0.5.
        share = wait_until(lambda: (s := canary_error_share()) > 0.4 and s, timeout=15)
    assert share < 0.6


def test_unreachable_prometheus_raises_after_retries_quickly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prom = PrometheusClient(f"http://127.0.0.1:{port}", retries=2, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(AnalysisError, match=rf"unreachable at http://127.0.0.1:{port}.*3 attempts"):
        prom.query("up")
    assert time.monotonic() - started < 2


def test_silent_prometheus_times_out_then_raises() -> None:
    with socket.socket() as sock:  # listens but never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        prom = PrometheusClient(f"http://127.0.0.1:{port}", timeout=0.2, retries=1, backoff=0)
        with pytest.raises(AnalysisError, match=r"ReadTimeout.*2 attempts"):
            prom.query("up")


def test_bearer_token_from_file_reaches_prometheus_and_never_leaks(
    live: Live, auth_proxy: str, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(TOKEN + "\n")
    bad.write_text("wrong-token-value")
    with PrometheusClient(auth_proxy, auth=Auth(bearer_token_file=str(good))) as prom:
        assert prom.query(f'count(up{{namespace="{NAMESPACE}"}})') == len(FAKE_APPS)
    rejected = pytest.raises(AnalysisError, match=r"credentials rejected \(HTTP 401\)")
    with (
        PrometheusClient(auth_proxy, auth=Auth(bearer_token_file=str(bad))) as prom,
        rejected as err,
    ):
        prom.query("up")
    assert "wrong-token-value" not in str(err.value) and TOKEN not in str(err.value)
    with PrometheusClient(auth_proxy) as anonymous, pytest.raises(AnalysisError):
        anonymous.query("up")


@pytest.mark.skipif(find_prometheus() is None, reason="needs the prometheus binary")
def test_server_that_never_scrapes_its_target_fails_start_and_cleans_up() -> None:
    server = PrometheusServer([ScrapeTarget("127.0.0.1:1")])
    with pytest.raises(TestenvError, match="not ready in time"):
        server.start(timeout=1.5)
    assert server.pid is None and server.workdir is None


def test_missing_binary_is_reported_with_the_install_hint() -> None:
    with pytest.raises(TestenvError, match="apt-get install prometheus"):
        PrometheusServer([], binary="/nonexistent/prometheus").start()


def test_generated_config_scrapes_every_target_each_interval_with_its_labels() -> None:
    server = PrometheusServer(
        [ScrapeTarget("127.0.0.1:9101", {"app": "a"}), ScrapeTarget("127.0.0.1:9102")],
        scrape_interval="2s",
    )
    (job,) = server.config()["scrape_configs"]
    assert job["scrape_interval"] == "2s" and job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [
        {"targets": ["127.0.0.1:9101"], "labels": {"app": "a"}},
        {"targets": ["127.0.0.1:9102"], "labels": {}},
    ]

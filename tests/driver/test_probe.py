"""The probe against the seed app's real binary on loopback: counts and error accounting
must match what the app itself counted, request for request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from canaryctl.core.traffic import UNKNOWN, Outcome, Schedule, SplitMeter
from canaryctl.driver.probe import ProbeSettings, check_target, parse_header, run_probe
from canaryctl.errors import SpecError
from roundrobin import RoundRobin
from seedapp import SeedApp


def served(app: SeedApp) -> dict[str, int]:
    """The app's own http_requests_total by code (all methods and versions)."""
    text = httpx.get(f"{app.metrics_url}/metrics", timeout=5).text
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                code = sample.labels["code"]
                counts[code] = counts.get(code, 0) + int(sample.value)
    return {code: n for code, n in counts.items() if n}


def backend(app: SeedApp) -> tuple[str, int]:
    parts = urlsplit(app.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


@pytest.fixture
def v1_v2(seed_app_binary: Path) -> Iterator[tuple[SeedApp, SeedApp]]:
    """v1 healthy; v2 failing 30% of its requests (a fixed seed)."""
    with (
        SeedApp(seed_app_binary, {"VERSION": "v1.0.0", "POD_NAME": "app-v1"}) as v1,
        SeedApp(
            seed_app_binary, {"VERSION": "v2.0.0", "ERROR_RATE": "0.3", "ERROR_SEED": "11"}
        ) as v2,
    ):
        yield v1, v2


def test_split_and_errors_behind_a_connection_balancer_are_exact(
    v1_v2: tuple[SeedApp, SeedApp],
) -> None:
    v1, v2 = v1_v2
    meter = SplitMeter()
    with RoundRobin([backend(v1), backend(v2)]) as balancer:
        run_probe(ProbeSettings(balancer.url, Schedule(rate=100, duration=6)), meter)
        accepted = balancer.accepted
    # One connection per request, and the balancer alternates: the split is exact.
    # (A machine too busy to keep the pace sends fewer than 600; the accounting holds.)
    assert meter.requests == accepted and 300 <= accepted <= 600
    stats = meter.versions
    n1, n2 = (accepted + 1) // 2, accepted // 2
    assert set(stats) == {"v1.0.0", "v2.0.0"}
    assert (stats["v1.0.0"].requests, stats["v2.0.0"].requests) == (n1, n2)
    # Every failure the probe counted is one the app served, and no other.
    failed = stats["v2.0.0"].failed
    assert served(v1) == {"200": n1}
    assert served(v2) == {"200": n2 - failed, "500": failed}
    assert stats["v1.0.0"].failed == 0 and meter.failed == failed
    # Binomial(n2, 0.3): 5 standard deviations either side.
    assert abs(failed - 0.3 * n2) < 5 * (n2 * 0.3 * 0.7) ** 0.5
    assert stats["v2.0.0"].codes == {"200": n2 - failed, "500": failed}


def test_two_versions_in_sequence_are_counted_apart(v1_v2: tuple[SeedApp, SeedApp]) -> None:
    meter = SplitMeter()
    seen: list[Outcome] = []
    for app in v1_v2:
        run_probe(ProbeSettings(app.url, Schedule(50, 1)), meter, on_outcome=seen.append)
    assert {v: s.requests for v, s in meter.versions.items()} == {"v1.0.0": 50, "v2.0.0": 50}
    assert served(v1_v2[0]) == {"200": 50}
    assert sum(served(v1_v2[1]).values()) == 50
    assert meter.versions["v2.0.0"].failed == served(v1_v2[1]).get("500", 0)
    assert len(seen) == 100 and all(o.latency > 0 for o in seen)


def test_steady_rate_runs_its_duration_and_ticks(seed_app_binary: Path) -> None:
    ticks: list[float] = []
    with SeedApp(seed_app_binary, {"VERSION": "v1"}) as app:
        started = time.monotonic()
        meter = run_probe(
            ProbeSettings(app.url, Schedule(rate=40, duration=2)),
            SplitMeter(),
            on_tick=ticks.append,
            tick_every=0.5,
        )
        took = time.monotonic() - started
        assert served(app) == {"200": 80}
    assert meter.requests == 80
    # The last request is due at 79/40 s: the run can be late, never early.
    assert took >= 79 / 40
    assert len(ticks) >= 4 and ticks[-1] >= 79 / 40


def test_headers_reach_the_app_and_keep_alive_reuses_connections(
    seed_app_binary: Path,
) -> None:
    with SeedApp(seed_app_binary, {"VERSION": "v1"}) as app, RoundRobin([backend(app)]) as lb:
        settings = ProbeSettings(
            lb.url, Schedule(100, 1), headers=(("Accept", "text/plain"),), keep_alive=True
        )
        meter = run_probe(settings, SplitMeter())
        # Text answers are read too; a handful of connections carried 100 requests.
        assert meter.versions["v1"].requests == 100
        assert lb.accepted <= 16


def test_no_answer_is_a_failure_of_unknown_version(seed_app_binary: Path) -> None:
    with SeedApp(seed_app_binary, {"VERSION": "v1"}) as app:
        url = app.url
    meter = run_probe(ProbeSettings(url, Schedule(20, 0.5)), SplitMeter())
    assert meter.requests == meter.failed == 10
    assert meter.versions[UNKNOWN].codes == {"ConnectError": 10}


def test_only_loopback_targets_unless_allowed() -> None:
    def resolver(answers: list[str]):
        return lambda host, port: answers

    check_target("http://localhost:8080/", False, resolver(["127.0.0.1", "::1"]))
    for remote in (["10.96.0.1"], ["127.0.0.1", "192.168.1.2"], []):
        with pytest.raises(SpecError) as err:
            check_target("http://app.example/", False, resolver(remote))
        assert err.value.field == "URL" and "--allow-remote" in err.value.reason
    assert check_target("https://app.example/", True, resolver([])).host == "app.example"
    for bad in ("ftp://127.0.0.1/", "127.0.0.1:8080", "http:///path"):
        with pytest.raises(SpecError):
            check_target(bad, False, resolver(["127.0.0.1"]))
    with pytest.raises(SpecError, match="not a loopback"):
        run_probe(ProbeSettings("http://10.1.2.3/", Schedule(1, 1)), SplitMeter())


def test_header_arguments() -> None:
    assert parse_header("X-Track=canary") == ("X-Track", "canary")
    assert parse_header("Host: app.local:8080") == ("Host", "app.local:8080")
    assert parse_header("X-Track=a:b") == ("X-Track", "a:b")
    assert parse_header("X-Empty=") == ("X-Empty", "")
    for bad in ("X-Track", "=v", "bad name=v"):
        with pytest.raises(SpecError) as err:
            parse_header(bad)
        assert err.value.field == "--header"


def test_stop_ends_the_run_early_after_the_answers_in_flight(seed_app_binary: Path) -> None:
    stop = threading.Event()
    with SeedApp(seed_app_binary, {"VERSION": "v1"}) as app:
        timer = threading.Timer(1.0, stop.set)
        timer.start()
        started = time.monotonic()
        meter = run_probe(ProbeSettings(app.url, Schedule(50, 60)), SplitMeter(), stop=stop)
        took = time.monotonic() - started
        timer.cancel()
        assert served(app) == {"200": meter.requests}
    assert took < 5 and 10 <= meter.requests <= 150 and meter.failed == 0

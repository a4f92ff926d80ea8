"""The Grafana dashboard: generated from typed builders, and every app panel's PromQL
answers for both versions on a real Prometheus scraping the seed app's metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from canaryctl.dashboards import DASHBOARD
from canaryctl.dashboards.generate import PANELS, REPO_COPY, render
from canaryctl.testenv.fakeapp import FakeApp, Traffic
from canaryctl.testenv.prometheus import PrometheusServer, ScrapeTarget
from helpers import wait_until

NS, APP = "shop", "pulpocon-app"
V1, V2 = "v1.0.0", "v2.0.0"


def test_committed_dashboards_equal_the_generated_one() -> None:
    text = render()
    assert DASHBOARD.read_text() == text, "run python -m canaryctl.dashboards.generate"
    assert REPO_COPY.read_text() == text, "run python -m canaryctl.dashboards.generate"


def test_the_seed_panel_comes_first_then_traffic_then_operator_panels() -> None:
    board = json.loads(DASHBOARD.read_text())
    first = board["panels"][0]["targets"][0]["expr"]
    assert first == 'sum(rate(http_requests_total{app="$app"}[2m])) by (version)'
    titles = [p["title"] for p in board["panels"]]
    assert titles == [p.title for p in PANELS]
    variables = [v["name"] for v in board["templating"]["list"]]
    assert {"namespace", "app", "datasource"} <= set(variables)
    sources = [p.source for p in PANELS]
    assert sources == sorted(sources), "app panels first, then the operator's"


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    # v2 fails 5% and v1 never: a ratio of 0 must still be a series, not a gap.
    app = FakeApp({V1: Traffic(200, 0.0), V2: Traffic(200, 0.05)}, seed=3).start()
    server = PrometheusServer([ScrapeTarget(app.address, {"namespace": NS, "app": APP})]).start()
    yield server
    server.stop()
    app.stop()


def instant(url: str, expr: str) -> dict[str, float]:
    """{version label (or the whole label set): value} of an instant query."""
    body = httpx.post(f"{url}/api/v1/query", data={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    return {
        s["metric"].get("version") or json.dumps(s["metric"], sort_keys=True): float(s["value"][1])
        for s in body["data"]["result"]
    }


@pytest.mark.prometheus
@pytest.mark.parametrize("panel", [p for p in PANELS if p.source == "app"], ids=lambda p: p.title)
def test_every_app_panel_returns_a_series_for_each_version(prometheus, panel) -> None:
    for query in panel.queries:
        expr = query.expr.replace("$namespace", NS).replace("$app", APP)
        # rate() over 2m needs two scrapes of each counter first.
        got = wait_until(lambda e=expr: (lambda r: r if {V1, V2} <= set(r) else None)(
            instant(prometheus.url, e)), timeout=60, interval=1)  # fmt: skip
        assert all(v == v for v in got.values()), f"NaN in {panel.title}: {got}"
        if panel.title.startswith("Error ratio"):
            assert got[V1] == 0 and 0.01 < got[V2] < 0.15, got
        if panel.title.startswith("Requests"):
            # rate() over 2m of a few seconds of data is small but never zero.
            assert got[V1] > 0 and got[V2] > 0, got

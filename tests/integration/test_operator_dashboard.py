"""The dashboard's operator panels against a live operator whose Canary runs a sequential
judge: a real Prometheus scrapes the operator's /metrics and the seed app's metrics (served
by the fake app), and every operator panel, the judges' e-values included, answers with a
series for the Canary while it rolls out."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta

from canaryctl.dashboards.generate import PANELS
from canaryctl.kube import manifests
from canaryctl.kube.canary import Canary
from canaryctl.testenv.fakeapp import FakeApp, Traffic
from canaryctl.testenv.prometheus import PrometheusServer, ScrapeTarget
from helpers import EXAMPLES, replicas, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]
SEED = EXAMPLES / "pulpocon-app"
APP = "pulpocon-app"
# Version labels of the seed's Deployments; the built-in queries select series by them.
V1, V2 = "v1.0.0", "v2.0.0"


def query(url: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.post(f"{url}/api/v1/query", data={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_every_operator_panel_answers_for_a_canary_under_sequential_analysis(
    kube: Client, namespace: str, start_operator
) -> None:
    manifests.apply(
        kube,
        manifests.load([SEED / "service.yaml", SEED / "app-v1.yaml", SEED / "app-v2.yaml"]),
        namespace,
    )
    wait_until(lambda: (replicas(kube, namespace, f"{APP}-v1") or (0, 0))[1] == 10, timeout=60)
    op = start_operator(namespace)
    # Equal error rates: the judge gathers evidence for a while (its e-values move) before
    # it promotes; a long last pause keeps the Canary's series alive while we look.
    traffic = {V1: Traffic(500, 0.01), V2: Traffic(500, 0.01)}
    with FakeApp(traffic, seed=7) as app:
        targets = [
            ScrapeTarget(app.address, {"namespace": namespace, "app": APP}),
            ScrapeTarget(f"127.0.0.1:{op.metrics_port}", {"job": "canaryctl"}),
        ]
        with PrometheusServer(targets) as prom:
            spec = {
                "stable": f"{APP}-v1",
                "canary": f"{APP}-v2",
                "service": APP,
                "steps": [{"setWeight": 20}, {"setWeight": 50}, {"pause": {"duration": "5m"}}],
                "health": {"readyDeadline": "30s"},
                "analysis": {"prometheus": {"url": prom.url, "timeout": 2}, "interval": "2s"},
            }
            kube.create(
                Canary(metadata=ObjectMeta(name=APP, namespace=namespace), spec=spec),
                namespace=namespace,
            )
            started = time.monotonic()
            for panel in (p for p in PANELS if p.source == "operator"):
                for q in panel.queries:
                    expr = q.expr.replace("$namespace", namespace).replace("$canary", APP)
                    result = wait_until(lambda e=expr: query(prom.url, e), timeout=90, interval=1)
                    assert all(r["value"][1] not in ("NaN", "+Inf") for r in result), result
                    if "e-values" in panel.title:
                        metrics = {r["metric"].get("metric") for r in result}
                        assert "errors" in metrics, result
                        assert all(float(r["value"][1]) >= 0 for r in result), result
            assert time.monotonic() - started < 120

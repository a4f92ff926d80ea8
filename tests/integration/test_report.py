"""`canaryctl report` drawn from a real rollout: the engine runs on the real cluster with
its judge reading a real Prometheus that scrapes the fake seed app, then the report is
rendered from the stored record and Prometheus, and its content is checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from html import escape
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from canaryctl.cli import rollout_report
from canaryctl.core.models import Phase, parse_spec
from canaryctl.driver.engine import Engine
from canaryctl.kube import manifests
from canaryctl.testenv import ClusterState
from canaryctl.testenv.fakeapp import FakeApp, Traffic
from canaryctl.testenv.prometheus import PrometheusServer, ScrapeTarget
from helpers import EXAMPLES, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]
SEED = EXAMPLES / "pulpocon-app"
CLI = str(Path(sys.executable).with_name("canaryctl"))
NS = "report-healthy"
V1, V2 = "v1.0.0", "v2.0.0"


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    app = FakeApp({V1: Traffic(500, 0.01), V2: Traffic(500, 0.01)}, seed=5).start()
    server = PrometheusServer(
        [ScrapeTarget(app.address, {"namespace": NS, "app": "pulpocon-app"})]
    ).start()
    yield server
    server.stop()
    app.stop()


def canaries_served(kube: Client) -> bool:
    """A Canary CRD installed moments ago answers 503 until its storage is ready."""
    from lightkube.core.exceptions import ApiError

    from canaryctl.kube.canary import Canary

    try:
        list(kube.list(Canary, namespace=NS))
        return True
    except ApiError:
        return False


def ready(kube: Client, name: str) -> int | None:
    deps = {d.metadata.name: d for d in kube.list(Deployment, namespace=NS)}
    return (deps[name].status.readyReplicas or 0) if name in deps else None


def test_report_of_a_promoted_rollout_shows_weights_traffic_evidence_and_verdict(
    kube: Client, local_cluster: ClusterState, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    kube.create(Namespace(metadata=ObjectMeta(name=NS)))
    wait_until(lambda: list(kube.list(ServiceAccount, namespace=NS)), timeout=30)
    files = [SEED / "service.yaml", SEED / "app-v1.yaml", SEED / "app-v2.yaml"]
    manifests.apply(kube, manifests.load(files), NS)
    wait_until(lambda: ready(kube, "pulpocon-app-v1") == 10, timeout=60)
    wait_until(lambda: canaries_served(kube), timeout=60)
    time.sleep(5)  # a few scrapes of both versions before the first look
    spec = parse_spec({
        "name": "pulpocon-app", "namespace": NS, "stable": "pulpocon-app-v1",
        "canary": "pulpocon-app-v2", "service": "pulpocon-app",
        "steps": [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}],
        "analysis": {"prometheus": {"url": prometheus.url, "timeout": 1}, "interval": "2s"},
    })  # fmt: skip
    deadline = time.monotonic() + 240
    status = Engine(kube, spec, record_events=False).run(
        0.5, should_stop=lambda: time.monotonic() > deadline
    )
    assert status.phase is Phase.SUCCEEDED, status.message

    html_file, png_file = tmp_path / "r.html", tmp_path / "r.png"
    env = {**os.environ, "KUBECONFIG": str(local_cluster.kubeconfig)}
    out = subprocess.run(
        [CLI, "report", "pulpocon-app", "-n", NS, "--html", html_file, "--png", png_file],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"report written to {html_file}" in out.stderr

    # The data drawn: weight steps, requests and errors by version, evidence, verdict.
    data = rollout_report.load("pulpocon-app", NS, local_cluster.kubeconfig)
    expected = [w for _, w in data.weights["expected"]]
    assert expected[0] == 0 and 10 in expected and expected[-1] == 100
    assert sorted(data.requests) == [V1, V2], data.prometheus_note
    for version in (V1, V2):
        rps = [y for _, y in data.requests[version] if y > 0]
        assert len(rps) >= 5, f"{version}: too few points"
        assert 300 < sorted(rps)[len(rps) // 2] < 700  # the fake app serves 500 req/s
        errors = sorted(y for _, y in data.error_ratio[version])
        assert 0.002 < errors[len(errors) // 2] < 0.03  # and fails 1% of them
    (judge,) = [k for k in data.evidence if k.startswith("errors")]
    assert len(data.evidence[judge]) >= 2, "one record per look"
    assert all(r["threshold"] for r in data.evidence[judge])

    html = html_file.read_text()
    assert f"Succeeded ({status.reason})" in html and escape(status.message) in html
    for title in ("canary weight (%)", "requests per second by version",
                  "error ratio by version (5xx / all)", f"evidence: {judge}"):  # fmt: skip
        assert f'aria-label="{title}"' in html, title
    for version in (V1, V2):
        points = re.findall(rf'data-series="{re.escape(version)}"', html)
        assert len(points) >= 2 * 5, f"{version}: points drawn in both traffic charts"
    assert "-- rollback threshold 20" in html and "-- promote threshold 20" in html
    assert "<script" not in html

    png = png_file.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == 900 and height > 600, (width, height)  # weight, 2 traffic, 1+ evidence

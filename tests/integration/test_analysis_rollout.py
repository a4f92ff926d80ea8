"""Metric analysis end to end: the engine runs real PromQL against a real Prometheus that
scrapes the seed app's metrics, while the replica router moves pods on the real cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace

from canaryctl.core.models import CanaryStatus, Phase, parse_spec
from canaryctl.driver.engine import Engine
from canaryctl.kube import manifests
from canaryctl.kube.store import Store
from canaryctl.testenv.fakeapp import FakeApp, Traffic
from canaryctl.testenv.prometheus import PrometheusServer, ScrapeTarget
from helpers import EXAMPLES, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]
SEED = EXAMPLES / "pulpocon-app"
# Version labels of the seed's Deployments; the queries select series by them.
V1, V2 = "v1.0.0", "v2.0.0"
SCENARIOS = {
    "analysis-healthy": {V1: Traffic(1000, 0.01), V2: Traffic(1000, 0.01)},
    "analysis-regress": {V1: Traffic(1000, 0.01), V2: Traffic(1000, 0.02)},
    # Same errors and median; the canary's tail is heavier (19% above 100 ms vs 8%).
    "analysis-slow-tail": {V1: Traffic(1000, 0.01), V2: Traffic(1000, 0.01, latency_sigma=0.8)},
}


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    """One fake seed app per scenario, scraped every second by a real Prometheus."""
    apps = {ns: FakeApp(traffic, seed=11).start() for ns, traffic in SCENARIOS.items()}
    targets = [
        ScrapeTarget(app.address, {"namespace": ns, "app": "pulpocon-app"})
        for ns, app in apps.items()
    ]
    server = PrometheusServer(targets).start()
    yield server
    server.stop()
    for app in apps.values():
        app.stop()


def _namespace(kube: Client, name: str) -> str:
    try:
        kube.delete(Namespace, name)
        wait_until(lambda: not _exists(kube, name), timeout=60)
    except ApiError:
        pass
    kube.create(Namespace(metadata=ObjectMeta(name=name)))
    wait_until(lambda: _has_default_sa(kube, name), timeout=30)
    files = [SEED / "service.yaml", SEED / "app-v1.yaml", SEED / "app-v2.yaml"]
    manifests.apply(kube, manifests.load(files), name)
    wait_until(lambda: _ready(kube, name, "pulpocon-app-v1") == 10, timeout=60)
    return name


def _exists(kube: Client, name: str) -> bool:
    try:
        kube.get(Namespace, name)
        return True
    except ApiError:
        return False


def _has_default_sa(kube: Client, ns: str) -> bool:
    from lightkube.resources.core_v1 import ServiceAccount

    return bool(list(kube.list(ServiceAccount, namespace=ns)))


def _ready(kube: Client, ns: str, name: str) -> int | None:
    try:
        return kube.get(Deployment, name, namespace=ns).status.readyReplicas or 0
    except ApiError:
        return None


def _spec(ns: str, url: str, **analysis: object):
    return parse_spec(
        {
            "name": "pulpocon-app",
            "namespace": ns,
            "stable": "pulpocon-app-v1",
            "canary": "pulpocon-app-v2",
            "service": "pulpocon-app",
            "steps": [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}],
            "analysis": {"prometheus": {"url": url, "timeout": 1}, "interval": "2s", **analysis},
        }
    )


def _run(kube: Client, spec, budget: float) -> CanaryStatus:
    deadline = time.monotonic() + budget
    return Engine(kube, spec, record_events=False).run(
        0.5, should_stop=lambda: time.monotonic() > deadline
    )


def test_healthy_canary_is_promoted_on_evidence_from_real_promql(
    kube: Client, prometheus: PrometheusServer
) -> None:
    ns = _namespace(kube, "analysis-healthy")
    status = _run(kube, _spec(ns, prometheus.url), budget=240)
    assert status.phase is Phase.SUCCEEDED, status.message
    assert status.reason == "AnalysisPromoted", status.reason
    verdict = status.last_verdict["errors"]
    assert verdict["decision"] == "promote"
    assert verdict["promoteEvalue"] >= verdict["promoteThreshold"] == 20
    assert verdict["totals"]["canaryRequests"] > 1000, "counts came from Prometheus"
    assert any(c.name.startswith("errors") for c in status.history), "verdict is explained"
    assert _ready(kube, ns, "pulpocon-app-v2") == 10
    assert _ready(kube, ns, "pulpocon-app-v1") is None


def test_canary_with_twice_the_stable_error_rate_is_rolled_back(
    kube: Client, prometheus: PrometheusServer
) -> None:
    ns = _namespace(kube, "analysis-regress")
    status = _run(kube, _spec(ns, prometheus.url), budget=150)
    assert status.phase is Phase.ROLLED_BACK, status.message
    assert status.reason == "AnalysisFailed"
    verdict = status.last_verdict["errors"]
    assert verdict["decision"] == "rollback"
    assert verdict["rollbackEvalue"] >= 20
    assert _ready(kube, ns, "pulpocon-app-v1") == 10
    assert kube.get(Deployment, "pulpocon-app-v2", namespace=ns).spec.replicas == 0


def test_canary_with_a_heavier_latency_tail_is_rolled_back_against_the_stable_p95(
    kube: Client, prometheus: PrometheusServer
) -> None:
    ns = _namespace(kube, "analysis-slow-tail")
    spec = _spec(ns, prometheus.url, latencyQuantile=0.95, perPod=True)
    status = _run(kube, spec, budget=150)
    assert status.phase is Phase.ROLLED_BACK, status.message
    verdict = status.last_verdict["latency p95"]
    assert verdict["decision"] == "rollback"
    assert verdict["tailBound"] == 0.1, "the bucket bound at the stable's p95"
    # One budget: errors, latency p95 and the per-pod test each at alpha / 3.
    assert verdict["rollbackThreshold"] == pytest.approx(60)
    assert status.last_verdict["errors"]["decision"] != "rollback"
    # The fake app's series carry no pod label: the per-pod test says so and vetoes nothing.
    assert (
        "pods" not in status.last_verdict or status.last_verdict["pods"]["decision"] != "rollback"
    )


def test_unreachable_prometheus_never_promotes(kube: Client) -> None:
    ns = _namespace(kube, "analysis-unreachable")
    spec = _spec(ns, "http://127.0.0.1:9")  # nothing listens on the discard port
    status = _run(kube, spec, budget=25)
    assert status.phase is not Phase.SUCCEEDED
    assert status.step_index >= spec.plan_length, "steps done, waiting for a verdict"
    assert "unreachable" in status.last_verdict["warning"]
    assert _ready(kube, ns, "pulpocon-app-v1") is not None, "v1 still serves"
    Store(kube).send_command("pulpocon-app", ns, "abort")
    final = _run(kube, spec, budget=60)
    assert final.phase is Phase.ROLLED_BACK
    assert _ready(kube, ns, "pulpocon-app-v1") == 10

"""Analysis on real data: the sequential judge reads what the real Prometheus scraped off
the seed app's real pods (found through the API server, as `kubernetes_sd_configs` finds
them), while the probe's requests reach those pods through Traefik.

Two rollouts side by side, driven by the engine through the NGINX router at 50%: an A/A
canary (the stable's error rate) is promoted, a canary failing twice as often as the
stable is rolled back. The error rates are high (30%, 60%) so that few requests carry
much evidence and the test stays short; the kill switch is raised out of reach (90% in one
look), so the sequential test is what decides, with its default alpha, beta, tolerance
and promotion ratio.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from lightkube.resources.apps_v1 import Deployment

from canaryctl.cli.demo_dataplane import Bed
from canaryctl.core.models import Phase
from canaryctl.testenv import ClusterState
from canaryctl.testenv.dataplane import NODE_NAME
from canaryctl.testenv.poddiscovery import PodDiscovery
from canaryctl.testenv.prometheus import PrometheusServer
from dataplane.engine_harness import (
    CANARY,
    CANARY_VERSION,
    Scenario,
    bed,
    namespace_pair,
    rollout,
    side_by_side,
)

__all__ = ["bed", "namespace_pair"]  # fixtures
pytestmark = [
    pytest.mark.integration,
    pytest.mark.dataplane,
    pytest.mark.traefik,
    pytest.mark.prometheus,
]


@pytest.fixture(scope="module")
def prometheus(dataplane_cluster: ClusterState) -> Iterator[PrometheusServer]:
    """The real Prometheus, scraping every annotated pod of the real node each second."""
    discovery = PodDiscovery.for_cluster(dataplane_cluster, node=NODE_NAME)
    with PrometheusServer(pods=discovery) as server:
        yield server


def test_sequential_judge_on_real_pods_promotes_an_aa_canary_and_rolls_back_2x_errors(
    bed: Bed, namespace_pair: tuple[str, str], prometheus: PrometheusServer
) -> None:
    # No pause: after the 50% step the engine waits for the analysis verdict.
    analysis = {"prometheus": {"url": prometheus.url}, "judge": "sequential", "interval": "2s",
                "maxCanaryErrorRate": 0.9}  # fmt: skip
    same = Scenario("nginx", [{"setWeight": 50}], error_rates=("0.3", "0.3"),
                    analysis=analysis, budget=240)  # fmt: skip
    worse = replace(same, error_rates=("0.3", "0.6"))
    aa, regress = side_by_side(
        lambda: rollout(bed, namespace_pair[0], same),
        lambda: rollout(bed, namespace_pair[1], worse),
    )

    for run in (aa, regress):
        v = run.status.last_verdict.get("errors", {})
        print(f"{v.get('decision')} at look {v.get('look')}: {v.get('totals')}, e-values "
              f"rollback {v.get('rollbackEvalue')} promote {v.get('promoteEvalue')}")  # fmt: skip
    assert aa.status.phase is Phase.SUCCEEDED, aa.status.message
    assert aa.status.reason == "AnalysisPromoted", aa.status.reason
    verdict = aa.status.last_verdict["errors"]
    assert verdict["decision"] == "promote"
    assert verdict["totals"]["canaryRequests"] >= 100, "counts came from the pods"
    assert set(aa.after) == {CANARY_VERSION}, aa.after

    assert regress.status.phase is Phase.ROLLED_BACK, regress.status.message
    assert regress.status.reason == "AnalysisFailed", regress.status.reason
    verdict = regress.status.last_verdict["errors"]
    assert verdict["decision"] == "rollback"
    assert verdict["rollbackEvalue"] >= verdict["rollbackThreshold"], verdict
    assert CANARY_VERSION not in regress.after, regress.after
    canary = bed.client.get(Deployment, CANARY, namespace=namespace_pair[1])
    assert canary.spec.replicas == 0, "the canary's pods are gone after the rollback"

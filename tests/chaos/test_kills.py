"""Kills at random instants: the short campaign (replicas router) in `make test`; 100 runs per
router (replicas, nginx, Istio, Gateway API) in `make chaos`. CANARYCTL_KILL_RUNS and
CANARYCTL_CHAOS_RUNS override the counts, CANARYCTL_CHAOS_SEED replays a seed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lightkube import Client

from canaryctl.testenv import ClusterState, crds
from chaos_kills import campaign

pytestmark = pytest.mark.integration


def _assert_clean(results) -> None:
    broken = [(i + 1, r.violations) for i, r in enumerate(results) if r.violations]
    assert not broken, f"invariant violations (run, what): {broken}"


def test_rollouts_killed_at_random_instants_resume_with_every_invariant_kept(
    kube: Client, local_cluster: ClusterState, tmp_path: Path
) -> None:
    runs = int(os.environ.get("CANARYCTL_KILL_RUNS", "3"))
    _assert_clean(campaign(kube, local_cluster, runs, tmp_path))


@pytest.mark.chaos
@pytest.mark.timeout(4 * 3600)  # 100 runs of 10-60 s each
@pytest.mark.parametrize("router", ["replicas", "nginx", "istio", "gateway"])
def test_chaos_rollouts_killed_at_random_instants(
    kube: Client, local_cluster: ClusterState, tmp_path: Path, router: str
) -> None:
    if router != "replicas":
        crds.install(kube, progress=lambda _: None)
    runs = int(os.environ.get("CANARYCTL_CHAOS_RUNS", "100"))
    _assert_clean(campaign(kube, local_cluster, runs, tmp_path, router=router))

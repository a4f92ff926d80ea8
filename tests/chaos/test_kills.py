"""Kills at random instants: the short campaign (replicas router, one run at a time) in
`make test`; 100 runs per router (replicas, nginx, Istio, Gateway API), several at a time, in
`make chaos`. CANARYCTL_KILL_RUNS and CANARYCTL_CHAOS_RUNS override the counts,
CANARYCTL_CHAOS_CONCURRENCY the runs side by side (each in its own namespace),
CANARYCTL_CHAOS_SEED replays a campaign and CANARYCTL_CHAOS_RUN_SEED (with
CANARYCTL_CHAOS_HORIZON, both printed for a failing run) one run alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lightkube import Client

from canaryctl.testenv import ClusterState, crds
from chaos_kills import campaign

pytestmark = pytest.mark.integration

#: Runs side by side in `make chaos`: most of a run is waiting (for pods, the next tick,
#: the canary's ready deadline), so a few at once share even a 2-core machine well.
CHAOS_CONCURRENCY = 4


def _assert_clean(results) -> None:
    errors = [(r.seed, r.error) for r in results if r.error]
    assert not errors, f"the harness failed (run seed, what): {errors}"
    broken = [(r.seed, r.violations) for r in results if r.violations]
    assert not broken, f"invariant violations (run seed, what): {broken}"


def test_rollouts_killed_at_random_instants_resume_with_every_invariant_kept(
    kube: Client, local_cluster: ClusterState, tmp_path: Path
) -> None:
    runs = int(os.environ.get("CANARYCTL_KILL_RUNS", "3"))
    _assert_clean(campaign(kube, local_cluster, runs, tmp_path, concurrency=1))


@pytest.mark.chaos
@pytest.mark.timeout(4 * 3600)  # 100 runs of 10-60 s each
@pytest.mark.parametrize("router", ["replicas", "nginx", "istio", "gateway"])
def test_chaos_rollouts_killed_at_random_instants(
    kube: Client, local_cluster: ClusterState, tmp_path: Path, router: str
) -> None:
    if router != "replicas":
        crds.install(kube, progress=lambda _: None)
    runs = int(os.environ.get("CANARYCTL_CHAOS_RUNS", "100"))
    concurrency = int(os.environ.get("CANARYCTL_CHAOS_CONCURRENCY", CHAOS_CONCURRENCY))
    _assert_clean(campaign(kube, local_cluster, runs, tmp_path, router=router,
                           concurrency=concurrency))  # fmt: skip

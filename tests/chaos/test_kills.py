"""Kills at random instants (replicas router): the short campaign in `make test`, 100 runs
in `make chaos` (CANARYCTL_CHAOS_RUNS overrides, CANARYCTL_CHAOS_SEED replays a seed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lightkube import Client

from canaryctl.testenv import ClusterState
from chaos_kills import campaign

pytestmark = pytest.mark.integration


def _assert_clean(results) -> None:
    broken = [(i + 1, r.violations) for i, r in enumerate(results) if r.violations]
    assert not broken, f"invariant violations (run, what): {broken}"


def test_rollouts_killed_at_random_instants_resume_with_every_invariant_kept(
    kube: Client, local_cluster: ClusterState, tmp_path: Path
) -> None:
    results = campaign(
        kube, local_cluster, int(os.environ.get("CANARYCTL_KILL_RUNS", "3")), tmp_path
    )
    _assert_clean(results)


@pytest.mark.chaos
def test_chaos_100_rollouts_killed_at_random_instants(
    kube: Client, local_cluster: ClusterState, tmp_path: Path
) -> None:
    results = campaign(
        kube, local_cluster, int(os.environ.get("CANARYCTL_CHAOS_RUNS", "100")), tmp_path
    )
    _assert_clean(results)

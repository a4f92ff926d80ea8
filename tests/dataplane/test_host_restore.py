"""`testenv down` puts the host back: rules, sysctls, mounts, interfaces, files, cgroups.

Runs its own real node from up to down. Only one real node can run on a host, so these
tests are marked ``own_node`` and the root conftest runs them before anything starts the
session's ``dataplane_cluster``.

``make test`` runs kube-proxy's iptables mode through ``down`` and its nftables mode through
the clean-up of a node whose processes died; ``make test-host`` (marker ``host_long``) adds
the nftables mode through ``down``.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from canaryctl.kube.client import make_client
from canaryctl.testenv import LocalCluster, dataplane, host
from helpers import wait_until
from realnode import apply, available, cluster_ip, deployment, load_echo, service, split

pytestmark = [pytest.mark.dataplane, pytest.mark.integration, pytest.mark.own_node]


def _diff(a: dict[str, object], b: dict[str, object]) -> dict[str, object]:
    return {k: {"before": a[k], "after": b[k]} for k in a if a[k] != b[k]}


@pytest.mark.parametrize(
    "mode", ["iptables", pytest.param("nftables", marks=pytest.mark.host_long)]
)
def test_down_restores_the_host_exactly_after_pods_ran_and_served_traffic(mode: str) -> None:
    why = dataplane.missing_requirements(mode)
    if why:
        pytest.skip("no real node on this host: " + "; ".join(why))
    before = host.observe()
    cluster = LocalCluster(
        f"pytest-{os.getpid()}-restore", nodes=1, dataplane=True, proxy_mode=mode
    )
    try:
        started = time.monotonic()
        state = cluster.up(timeout=300)
        up_s = time.monotonic() - started
        kube = make_client(state.kubeconfig)
        kube.create(Namespace(metadata=ObjectMeta(name="restore")))
        image = load_echo(state)
        apply(kube, "restore", service(), deployment("echo-v1", "v1", 2, image))
        wait_until(lambda: available(kube, "echo-v1", "restore") == 2, timeout=120)
        url = f"http://{cluster_ip(kube, 'echo', 'restore')}/"
        versions = wait_until(lambda: split(url, 5)[0], timeout=30)
        assert versions["v1"] >= 1
        during = host.observe()
        changed = _diff(before, during)
        # The comparison sees the node's changes: the bridge, netns mounts, rules.
        assert "links" in changed and "mounts" in changed, changed.keys()
    finally:
        down_started = time.monotonic()
        cluster.down()
        down_s = time.monotonic() - down_started
    after = host.observe()
    print(f"\n{mode}: up {up_s:.1f}s (real node Ready included), down {down_s:.1f}s")
    assert _diff(before, after) == {}


def test_a_real_node_whose_processes_died_is_cleaned_up_by_the_next_up() -> None:
    # The dead node runs kube-proxy in nftables mode, its successor in iptables mode: the
    # clean-up must remove the nftables tables too (``make test`` runs nftables only here).
    why = dataplane.missing_requirements("nftables") + dataplane.missing_requirements()
    if why:
        pytest.skip("no real node on this host: " + "; ".join(why))
    before = host.observe()
    dead = LocalCluster(
        f"pytest-{os.getpid()}-dead", nodes=1, dataplane=True, proxy_mode="nftables"
    )
    state = dead.up(timeout=300)
    successor = LocalCluster(f"pytest-{os.getpid()}-next", nodes=1, dataplane=True)
    try:
        kube = make_client(state.kubeconfig)
        image = load_echo(state)
        apply(kube, "default", service(), deployment("echo-v1", "v1", 2, image))
        wait_until(lambda: available(kube, "echo-v1", "default") == 2, timeout=120)
        url = f"http://{cluster_ip(kube, 'echo', 'default')}/"
        assert wait_until(lambda: split(url, 5)[0], timeout=30)["v1"] >= 1
        assert any("kube-proxy" in table for table in host.nft_tables()), host.nft_tables()
        # A reboot-like death: every process of the node gone, its pods' containers and
        # its changes to the host left behind.
        for pid in state.pids.values():
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not dead.status()["running"], timeout=10)
        successor.up(timeout=300)
        assert not dead.folder.exists(), "the dead node's folder was cleaned up"
    finally:
        successor.down()
        dead.down()
    assert _diff(before, host.observe()) == {}

"""Shared fixtures: the real local control plane for integration tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from canaryctl.kube.client import make_client
from canaryctl.testenv import ClusterState, LocalCluster
from helpers import wait_until
from seedapp import build

# CI explores the same examples on every run, so a red build is reproducible; developers'
# runs stay random and keep finding new cases.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[ClusterState]:
    """A real control plane for the whole session (built from Go modules if not cached).

    Set CANARYCTL_TESTENV_KEEP=1 to leave it running after the session (faster reruns).
    """
    cluster = LocalCluster(f"pytest-{os.getpid()}")
    state = cluster.up(timeout=120)
    try:
        yield state
    finally:
        if not os.environ.get("CANARYCTL_TESTENV_KEEP"):
            cluster.down()


@pytest.fixture(scope="session")
def dataplane_cluster() -> Iterator[ClusterState]:
    """A control plane with one real node (containerd, kubelet, kube-proxy) for the session.

    Pods run on the real node only when they select and tolerate it
    (``canaryctl.testenv.dataplane.REAL_POD_PLACEMENT``); others go to the KWOK nodes.
    Skips when the host cannot run a node (not root, missing packages or kernel features).
    At the end the host must be as it was before: a difference fails the session.
    Set CANARYCTL_PROXY_MODE=nftables to run kube-proxy in nftables mode.
    """
    from canaryctl.testenv import dataplane, host

    mode = os.environ.get("CANARYCTL_PROXY_MODE", "iptables")
    why = dataplane.missing_requirements(mode)
    if why:
        pytest.skip("no real node on this host: " + "; ".join(why))
    before = host.observe()
    cluster = LocalCluster(f"pytest-{os.getpid()}-node", dataplane=True, proxy_mode=mode)
    state = cluster.up(timeout=300)
    try:
        yield state
    finally:
        cluster.down()
    after = host.observe()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"the real node left the host changed: {changed}"


@pytest.fixture(scope="session")
def dataplane_kube(dataplane_cluster: ClusterState) -> Client:
    """A lightkube client with admin rights on the cluster with the real node."""
    return make_client(dataplane_cluster.kubeconfig)


@pytest.fixture
def dataplane_namespace(dataplane_kube: Client) -> Iterator[str]:
    """A fresh namespace per test on the cluster with the real node."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    dataplane_kube.create(Namespace(metadata=ObjectMeta(name=name)))
    wait_until(lambda: list(dataplane_kube.list(ServiceAccount, namespace=name)), timeout=30)
    yield name
    dataplane_kube.delete(Namespace, name)


@pytest.fixture(scope="session")
def kube(local_cluster: ClusterState) -> Client:
    """A lightkube client with admin rights on the local cluster."""
    return make_client(local_cluster.kubeconfig)


@pytest.fixture
def namespace(kube: Client) -> Iterator[str]:
    """A fresh namespace per test, so tests never see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create(Namespace(metadata=ObjectMeta(name=name)))
    # Pods are refused until the controller has made the namespace's default ServiceAccount.
    wait_until(lambda: list(kube.list(ServiceAccount, namespace=name)), timeout=30)
    yield name
    kube.delete(Namespace, name)


@pytest.fixture(scope="session")
def seed_app_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed app (images/pulpocon-app) compiled once per session as a static binary."""
    return build(tmp_path_factory.mktemp("pulpocon-app"))

"""Shared fixtures: the real local control plane for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import settings
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from prometheus_client.parser import text_string_to_metric_families

from canaryctl.kube.client import make_client
from canaryctl.testenv import ClusterState, LocalCluster
from helpers import wait_until
from providers.httpstub import Receiver, Recorded, Reply, serve
from seedapp import build

# CI explores the same examples on every run, so a red build is reproducible; developers'
# runs stay random and keep finding new cases.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that run a real node of their own go first.

    Only one real node can run on a host, and the session's ``dataplane_cluster`` holds it
    from the first test that asks for it to the end of the session; a test that brings its
    own node up and down must run before that (whatever the file names sort as).
    """
    own = [item for item in items if item.get_closest_marker("own_node")]
    if own:
        rest = [item for item in items if not item.get_closest_marker("own_node")]
        items[:] = own + rest


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


# --- the operator as a real process -----------------------------------------------------


@dataclass
class OperatorProcess:
    """One `canaryctl operator` process started by a test (its log in `log`)."""

    proc: subprocess.Popen
    metrics_port: int
    health_port: int
    log: Path

    def get(self, path: str, port: int | None = None) -> tuple[int, str]:
        """(status code, body) of one of its HTTP endpoints; (0, "") when it does not answer."""
        try:
            url = f"http://127.0.0.1:{port or self.metrics_port}{path}"
            response = httpx.get(url, timeout=2)
        except httpx.HTTPError:
            return 0, ""
        return response.status_code, response.text

    def metric(self, metric: str, /, **labels: str) -> float | None:
        """The value of one sample of its /metrics, None when absent."""
        _, text = self.get("/metrics")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == metric and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return sample.value
        return None

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until its watches are up (/readyz); fail with its log if it exited."""
        wait_until(
            lambda: self.get("/readyz", self.health_port)[0] == 200 or self.proc.poll() is not None,
            timeout=timeout,
        )
        assert self.proc.poll() is None, f"operator exited: {self.log.read_text()[-3000:]}"

    def leads(self) -> bool:
        """True while it reports itself as the acting leader."""
        return self.metric("canaryctl_leader") == 1.0

    def kill(self, sig: int = signal.SIGKILL, grace: float = 5.0) -> None:
        """Send a signal and reap the process (SIGKILL after `grace` seconds)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_operator(
    local_cluster: ClusterState, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start `canaryctl operator` processes watching one namespace; all stopped afterwards.

    Short lease and tick interval keep the tests quick: `start(namespace)`.
    """
    started: list[OperatorProcess] = []
    cli = str(Path(sys.executable).with_name("canaryctl"))

    def start(
        namespace: str, *extra: str, lease_seconds: float = 3.0, wait: bool = True
    ) -> OperatorProcess:
        metrics_port, health_port = _free_port(), _free_port()
        log = tmp_path / f"operator-{len(started)}.log"
        proc = subprocess.Popen(
            [cli, "operator", "--kubeconfig", str(local_cluster.kubeconfig),
             "--namespace", namespace, "--lease-namespace", namespace,
             "--metrics-port", str(metrics_port), "--health-port", str(health_port),
             "--interval", "0.5", "--lease-seconds", str(lease_seconds), *extra],
            stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        op = OperatorProcess(proc, metrics_port, health_port, log)
        started.append(op)
        if wait:
            op.wait_ready()
        return op

    yield start
    for op in started:
        op.kill(signal.SIGTERM if op.proc.poll() is None else signal.SIGKILL)


@pytest.fixture(scope="session")
def seed_app_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed app (images/pulpocon-app) compiled once per session as a static binary."""
    return build(tmp_path_factory.mktemp("pulpocon-app"))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook receiver (providers/httpstub.py); unknown paths answer 404."""
    recv = Receiver(url="")

    def handle(request: Recorded) -> Reply:
        recv.requests.append(request)
        route = recv.routes.get(request.path)
        return route(request) if route else Reply(404, b"no such hook")

    for url in serve(handle):
        recv.url = url
        yield recv

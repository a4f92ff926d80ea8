"""The real node: Ready next to the KWOK nodes, real pods of a locally built image, a
ClusterIP answering from the host through kube-proxy, `kubectl logs/exec`, and an API
server that listens on the node's address only and refuses anonymous requests."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Endpoints, Node, Pod

from canaryctl.testenv import ClusterState, LocalCluster
from canaryctl.testenv.dataplane import NODE_LABEL, NODE_NAME, NODE_TAINT, node_ip
from helpers import wait_until
from realnode import (
    apply,
    available,
    binomial_interval,
    cluster_ip,
    deployment,
    kubectl,
    load_echo,
    ready_pods,
    service,
    split,
    wait_programmed,
)

pytestmark = [pytest.mark.dataplane, pytest.mark.integration]


def _ready(node: Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def test_real_node_is_ready_labelled_and_tainted_next_to_the_kwok_nodes(
    dataplane_kube: Client,
) -> None:
    nodes = {n.metadata.name: n for n in dataplane_kube.list(Node)}
    real = nodes.pop(NODE_NAME)
    assert _ready(real)
    assert real.metadata.labels[NODE_LABEL[0]] == NODE_LABEL[1]
    assert (NODE_TAINT["key"], NODE_TAINT["value"], NODE_TAINT["effect"]) in [
        (t.key, t.value, t.effect) for t in real.spec.taints or []
    ]
    assert {a.type for a in real.status.addresses} >= {"InternalIP", "Hostname"}
    assert len(nodes) == 2 and all(_ready(n) for n in nodes.values()), "KWOK nodes still serve"
    assert all(n.metadata.labels.get("type") == "kwok" for n in nodes.values())


def test_pods_without_the_toleration_stay_on_kwok_nodes(
    dataplane_kube: Client, dataplane_namespace: str
) -> None:
    apply(
        dataplane_kube,
        dataplane_namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "simulated"},
            "spec": {"containers": [{"name": "app", "image": "example/app"}]},
        },
    )
    pod = wait_until(
        lambda: (
            (p := dataplane_kube.get(Pod, "simulated", namespace=dataplane_namespace)).spec.nodeName
            and p
        )
    )
    assert pod.spec.nodeName != NODE_NAME


def test_ten_real_pods_become_ready_and_a_cluster_ip_splits_nine_to_one_by_pods(
    dataplane_cluster: ClusterState, dataplane_kube: Client, dataplane_namespace: str
) -> None:
    image = load_echo(dataplane_cluster)
    started = time.monotonic()
    apply(
        dataplane_kube,
        dataplane_namespace,
        service(),
        deployment("echo-v1", "v1", 9, image),
        deployment("echo-v2", "v2", 1, image),
    )
    wait_until(
        lambda: (
            available(dataplane_kube, "echo-v1", dataplane_namespace) == 9
            and available(dataplane_kube, "echo-v2", dataplane_namespace) == 1
        ),
        timeout=120,
    )
    ready_s = time.monotonic() - started
    pods = ready_pods(dataplane_kube, dataplane_namespace)
    assert len(pods) == 10
    assert {p.spec.nodeName for p in pods} == {NODE_NAME}
    assert len({p.status.podIP for p in pods}) == 10

    url = f"http://{cluster_ip(dataplane_kube, 'echo', dataplane_namespace)}/"
    # kube-proxy programs the Service once its EndpointSlice lists the 10 pods: measured
    # before that, the split is over the pods programmed first (e.g. 5 + 1: 1/6 to v2).
    wait_programmed(dataplane_cluster, dataplane_kube, dataplane_namespace, "echo", 10)
    wait_until(lambda: split(url, 1)[0], timeout=30)
    versions, failed = split(url, 1000)
    low, high = binomial_interval(1000, 0.9)
    print(f"\n10 pods Ready in {ready_s:.1f}s; 1000 requests: {dict(versions)}, failed {failed}")
    assert failed == 0
    assert set(versions) == {"v1", "v2"}
    assert low <= versions["v1"] <= high, (
        f"v1 got {versions['v1']}, 99% interval {low:.0f}-{high:.0f}"
    )


def test_kubectl_logs_and_exec_reach_the_real_pod(
    dataplane_cluster: ClusterState, dataplane_kube: Client, dataplane_namespace: str
) -> None:
    image = load_echo(dataplane_cluster)
    apply(dataplane_kube, dataplane_namespace, deployment("echo-v1", "v1", 1, image))
    wait_until(lambda: available(dataplane_kube, "echo-v1", dataplane_namespace) == 1, timeout=60)
    pod = ready_pods(dataplane_kube, dataplane_namespace)[0].metadata.name
    logs = kubectl(dataplane_cluster, "-n", dataplane_namespace, "logs", pod)
    assert "echo v1 listening on :8080" in logs
    # The image holds one static binary and no shell: exec runs it inside the container,
    # where it sees the pod's environment.
    out = kubectl(
        dataplane_cluster, "-n", dataplane_namespace, "exec", pod, "--", "/echo", "env", "VERSION"
    )
    assert out.strip() == "v1"
    out = kubectl(
        dataplane_cluster, "-n", dataplane_namespace, "exec", pod, "--", "/echo", "env", "HOSTNAME"
    )
    assert out.strip() == pod


def test_status_shows_the_real_node_and_its_pods(
    dataplane_cluster: ClusterState, dataplane_kube: Client, dataplane_namespace: str
) -> None:
    image = load_echo(dataplane_cluster)
    apply(dataplane_kube, dataplane_namespace, deployment("echo-v1", "v1", 2, image))
    wait_until(lambda: available(dataplane_kube, "echo-v1", dataplane_namespace) == 2, timeout=60)
    info = LocalCluster(dataplane_cluster.name).status()
    assert info["running"] is True
    assert {"containerd", "kubelet", "kube-proxy"} <= set(info["components"])  # type: ignore[arg-type]
    node = info["node"]
    assert node["ready"] is True  # type: ignore[index]
    listed = {p["pod"] for p in node["pods"] if p["ready"]}  # type: ignore[index]
    assert len([p for p in listed if p.startswith(f"{dataplane_namespace}/echo-v1-")]) == 2


def test_the_api_server_listens_on_the_node_address_only_and_refuses_anonymous_requests(
    dataplane_cluster: ClusterState, dataplane_kube: Client
) -> None:
    """Not on every interface of the host (0.0.0.0): on the node's address, which pods reach
    through the `kubernetes` Service and every host client uses; no anonymous requests."""
    state = dataplane_cluster
    port = state.ports["kube-apiserver"]
    assert state.address == node_ip() and state.server == f"https://{state.address}:{port}"
    with pytest.raises(OSError):  # not on loopback, so not on every address of the host
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    ca = ssl.create_default_context(cafile=str(Path(state.folder) / "pki" / "ca.crt"))
    with httpx.Client(verify=ca, timeout=5) as anonymous:
        assert anonymous.get(f"{state.server}/readyz").status_code == 401
    endpoints = dataplane_kube.get(Endpoints, "kubernetes", namespace="default")
    assert [a.ip for s in endpoints.subsets or [] for a in s.addresses or []] == [state.address]

"""The local control plane behaves like a real cluster for the seed's manual workflow."""

from __future__ import annotations

import time

import pytest
from lightkube import Client
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.resources.discovery_v1 import EndpointSlice

from canaryctl.kube import manifests
from canaryctl.testenv import ClusterState, LocalCluster
from canaryctl.testenv.cluster import COMPONENTS, _alive
from helpers import EXAMPLES, wait_until

pytestmark = pytest.mark.integration
SEED = EXAMPLES / "pulpocon-app"


def _ready_endpoints_by_version(kube: Client, namespace: str) -> dict[str, int]:
    """Ready endpoints of the seed Service, counted by the pod's version label."""
    pods = {p.metadata.name: p for p in kube.list(Pod, namespace=namespace)}
    counts: dict[str, int] = {}
    slices = kube.list(
        EndpointSlice, namespace=namespace, labels={"kubernetes.io/service-name": "pulpocon-app"}
    )
    for eps in slices:
        for ep in eps.endpoints or []:
            if not (ep.conditions and ep.conditions.ready and ep.targetRef):
                continue
            pod = pods.get(ep.targetRef.name)
            if pod is not None:
                version = pod.metadata.labels["version"]
                counts[version] = counts.get(version, 0) + 1
    return counts


def _available(kube: Client, name: str, namespace: str) -> int:
    return kube.get(Deployment, name, namespace=namespace).status.availableReplicas or 0


def test_seed_v1_serves_with_ten_available_replicas_and_ready_endpoints(
    kube: Client, namespace: str
) -> None:
    manifests.apply(kube, manifests.load([SEED / "service.yaml", SEED / "app-v1.yaml"]), namespace)
    wait_until(lambda: _available(kube, "pulpocon-app-v1", namespace) == 10, timeout=60)
    counts = wait_until(
        lambda: (c := _ready_endpoints_by_version(kube, namespace)) == {"v1.0.0": 10} and c
    )
    assert counts == {"v1.0.0": 10}
    pods = list(kube.list(Pod, namespace=namespace, labels={"app": "pulpocon-app"}))
    assert all(p.status.podIP for p in pods), "every pod gets an IP from KWOK"
    assert len({p.spec.nodeName for p in pods}) == 2, "pods spread over both fake nodes"


def test_seed_step_two_splits_endpoints_nine_v1_one_v2(kube: Client, namespace: str) -> None:
    manifests.apply(kube, manifests.load([SEED / "service.yaml", SEED / "app-v1.yaml"]), namespace)
    wait_until(lambda: _available(kube, "pulpocon-app-v1", namespace) == 10, timeout=60)
    manifests.apply(kube, manifests.load([SEED / "app-v2.yaml"]), namespace)
    kube.patch(Deployment, "pulpocon-app-v1", {"spec": {"replicas": 9}}, namespace=namespace)
    counts = wait_until(
        lambda: (
            (c := _ready_endpoints_by_version(kube, namespace)) == {"v1.0.0": 9, "v2.0.0": 1} and c
        ),
        timeout=60,
    )
    assert counts == {"v1.0.0": 9, "v2.0.0": 1}


def _sim_pod(kube: Client, namespace: str, name: str, mode: str, delay: str | None = None) -> None:
    annotations = {"canaryctl.dev/simulate-delay": delay} if delay else None
    kube.create(
        Pod(
            metadata=ObjectMeta(
                name=name, labels={"canaryctl.dev/simulate": mode}, annotations=annotations
            ),
            spec=PodSpec(containers=[Container(name="app", image="example/app")]),
        ),
        namespace=namespace,
    )


def _pod_ready(pod: Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_simulate_crashloop_restarts_again_and_again_and_is_never_ready(
    kube: Client, namespace: str
) -> None:
    _sim_pod(kube, namespace, "crashy", "crashloop")

    def restarts() -> int:
        pod = kube.get(Pod, "crashy", namespace=namespace)
        assert not _pod_ready(pod)
        statuses = pod.status.containerStatuses or []
        return statuses[0].restartCount if statuses else 0

    first = wait_until(lambda: restarts() >= 1, timeout=30) and restarts()
    wait_until(lambda: restarts() >= first + 2, timeout=30)
    pod = kube.get(Pod, "crashy", namespace=namespace)
    assert pod.status.containerStatuses[0].state.waiting.reason == "CrashLoopBackOff"
    assert pod.status.phase == "Running"


def test_simulate_unready_runs_but_never_becomes_ready(kube: Client, namespace: str) -> None:
    _sim_pod(kube, namespace, "lazy", "unready")
    wait_until(lambda: kube.get(Pod, "lazy", namespace=namespace).status.phase == "Running")
    time.sleep(5)
    pod = kube.get(Pod, "lazy", namespace=namespace)
    assert not _pod_ready(pod)
    assert pod.status.containerStatuses[0].restartCount == 0


def test_simulate_slow_start_becomes_ready_only_after_the_annotated_delay(
    kube: Client, namespace: str
) -> None:
    started = time.monotonic()
    _sim_pod(kube, namespace, "slow", "slow-start", delay="6s")
    wait_until(lambda: kube.get(Pod, "slow", namespace=namespace).status.phase == "Running")
    assert not _pod_ready(kube.get(Pod, "slow", namespace=namespace))
    wait_until(lambda: _pod_ready(kube.get(Pod, "slow", namespace=namespace)), timeout=30)
    assert time.monotonic() - started >= 5.5


def test_unlabelled_pod_becomes_ready_in_about_a_second(kube: Client, namespace: str) -> None:
    started = time.monotonic()
    kube.create(
        Pod(
            metadata=ObjectMeta(name="plain"),
            spec=PodSpec(containers=[Container(name="app", image="example/app")]),
        ),
        namespace=namespace,
    )
    wait_until(lambda: _pod_ready(kube.get(Pod, "plain", namespace=namespace)), timeout=15)
    assert time.monotonic() - started < 5


def test_up_is_idempotent_and_reuses_the_running_cluster(local_cluster: ClusterState) -> None:
    cluster = LocalCluster(local_cluster.name)
    # The state on disk, not the fixture's copy: the outage tests restart kube-apiserver and
    # etcd of this same cluster, and a restart records the new pids there.
    before = cluster.state()
    assert before is not None
    started = time.monotonic()
    again = cluster.up()
    assert again.pids == before.pids
    assert all(_alive(pid, again.folder) for pid in again.pids.values())
    assert time.monotonic() - started < 2


def test_down_stops_every_process_and_removes_its_files(local_cluster: ClusterState) -> None:
    # A second, separate cluster, so the session's one keeps serving other tests.
    cluster = LocalCluster(f"{local_cluster.name}-down", nodes=1)
    state = cluster.up(timeout=120)
    assert all(_alive(state.pids[c], state.folder) for c in COMPONENTS)
    assert cluster.status()["running"] is True
    cluster.down()
    assert not any(_alive(pid, state.folder) for pid in state.pids.values())
    assert not cluster.folder.exists()
    assert cluster.status()["running"] is False

"""One view of the Deployments per engine tick: inside `workloads.one_view()` each
Deployment and its pods are read once, a scale or delete through `workloads` makes the next
read fresh, and outside a view (or in another thread) every read goes to the API. The
client here is a stand-in that counts requests: this tests the bookkeeping, not Kubernetes
(the operator's integration tests run the same ticks against the real API server)."""

from __future__ import annotations

import threading
from typing import Any

from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment

from canaryctl.kube import workloads


class CountingClient:
    """Answers GET of one Deployment and LIST of its (no) pods; counts every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.replicas = 1
        self.generation = 1

    def get(self, kind: Any, name: str, namespace: str) -> Deployment:
        self.requests.append(f"get {name}")
        return Deployment(
            metadata=ObjectMeta(name=name, namespace=namespace, generation=self.generation),
            spec=DeploymentSpec(
                replicas=self.replicas,
                selector=LabelSelector(matchLabels={"app": name}),
                template=PodTemplateSpec(metadata=ObjectMeta(labels={"app": name})),
            ),
        )

    def list(self, kind: Any, namespace: str, labels: Any) -> list[Any]:
        self.requests.append("list pods")
        return []

    def patch(self, kind: Any, name: str, ops: Any, namespace: str, patch_type: Any) -> None:
        self.requests.append(f"patch {name}")
        self.replicas = ops[-1]["value"]
        self.generation += 1

    def delete(self, kind: Any, name: str, namespace: str) -> None:
        self.requests.append(f"delete {name}")


def test_inside_a_view_each_deployment_is_read_once_and_afresh_after_our_own_write() -> None:
    client = CountingClient()
    with workloads.one_view():
        first = workloads.read_deployment(client, "app", "ns")  # type: ignore[arg-type]
        again = workloads.read_deployment(client, "app", "ns")  # type: ignore[arg-type]
        assert again is first
        assert client.requests == ["get app", "list pods"]
        workloads.read_deployment(client, "other", "ns")  # type: ignore[arg-type]
        assert client.requests[-2:] == ["get other", "list pods"]
        assert workloads.scale(client, "app", "ns", 3)  # type: ignore[arg-type]
        assert client.requests[-1] == "patch app"  # the view's copy decided: no re-read
        after = workloads.read_deployment(client, "app", "ns")  # type: ignore[arg-type]
        assert after.desired_replicas == 3 and after.generation == 2
        assert client.requests[-2:] == ["get app", "list pods"]
        workloads.delete_deployment(client, "other", "ns")  # type: ignore[arg-type]
        workloads.read_deployment(client, "other", "ns")  # type: ignore[arg-type]
        assert client.requests[-2:] == ["get other", "list pods"]
    client.requests.clear()
    workloads.read_deployment(client, "app", "ns")  # type: ignore[arg-type]
    workloads.read_deployment(client, "app", "ns")  # type: ignore[arg-type]
    assert client.requests == ["get app", "list pods"] * 2  # no view: always the API


def test_views_are_per_thread() -> None:
    client = CountingClient()
    seen: list[int] = []

    def other_thread() -> None:
        workloads.read_deployment(client, "app", "ns")  # type: ignore[arg-type]
        seen.append(len(client.requests))

    with workloads.one_view():
        workloads.read_deployment(client, "app", "ns")  # type: ignore[arg-type]
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert seen == [4]  # the other thread read for itself

"""Read and scale Deployments and their pods, with optimistic concurrency."""

from __future__ import annotations

from dataclasses import dataclass, field

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from canaryctl.errors import ClusterError, ConflictError


@dataclass(frozen=True)
class PodInfo:
    """What the health gates need to know about one pod."""

    name: str
    ready: bool
    restart_count: int
    waiting_reason: str | None
    ip: str | None


@dataclass(frozen=True)
class DeploymentInfo:
    """A Deployment's replica counts, conditions and pods, as read in one observation."""

    name: str
    namespace: str
    exists: bool
    generation: int = 0
    desired_replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    progress_deadline_exceeded: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    pod_labels: dict[str, str] = field(default_factory=dict)
    selector: dict[str, str] = field(default_factory=dict)
    pods: tuple[PodInfo, ...] = ()


def api_message(exc: ApiError) -> str:
    """The API server's own message for an error."""
    return exc.status.message or str(exc)


def read_deployment(client: Client, name: str, namespace: str) -> DeploymentInfo:
    """Observe one Deployment and the pods its selector matches (missing -> exists=False)."""
    try:
        dep = client.get(Deployment, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return DeploymentInfo(name=name, namespace=namespace, exists=False)
        raise ClusterError(f"reading deployment/{name} in {namespace}: {api_message(exc)}") from exc
    spec, status = dep.spec, dep.status
    selector = dict(spec.selector.matchLabels or {})
    pods = tuple(
        _pod_info(p)
        for p in client.list(Pod, namespace=namespace, labels=selector)
        if p.metadata.deletionTimestamp is None
    )
    deadline = any(
        c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"
        for c in (status.conditions if status else None) or []
    )
    return DeploymentInfo(
        name=name,
        namespace=namespace,
        exists=True,
        generation=dep.metadata.generation or 0,
        desired_replicas=spec.replicas if spec.replicas is not None else 1,
        ready_replicas=(status.readyReplicas or 0) if status else 0,
        updated_replicas=(status.updatedReplicas or 0) if status else 0,
        available_replicas=(status.availableReplicas or 0) if status else 0,
        progress_deadline_exceeded=deadline,
        labels=dict(dep.metadata.labels or {}),
        pod_labels=dict(spec.template.metadata.labels or {}) if spec.template.metadata else {},
        selector=selector,
        pods=pods,
    )


def _pod_info(pod: Pod) -> PodInfo:
    statuses = (pod.status.containerStatuses if pod.status else None) or []
    ready = any(
        c.type == "Ready" and c.status == "True"
        for c in (pod.status.conditions if pod.status else None) or []
    )
    waiting = next((s.state.waiting.reason for s in statuses if s.state and s.state.waiting), None)
    return PodInfo(
        name=pod.metadata.name,
        ready=ready,
        restart_count=sum(s.restartCount or 0 for s in statuses),
        waiting_reason=waiting,
        ip=pod.status.podIP if pod.status else None,
    )


def scale(
    client: Client, name: str, namespace: str, replicas: int, *, generation: int | None = None
) -> bool:
    """Set spec.replicas; returns False when already there.

    With `generation` (the Deployment's metadata.generation when it was observed) the
    change is applied only if nobody changed the Deployment's spec since: a JSON patch
    whose `test` op the API server checks atomically. A change by another actor in
    between raises ConflictError instead of being silently overwritten.
    """
    current = read_deployment(client, name, namespace)
    if not current.exists:
        raise ClusterError(f"deployment/{name} not found in {namespace}")
    if current.desired_replicas == replicas:
        return False
    ops: list[dict[str, object]] = [
        {"op": "test", "path": "/metadata/generation",
         "value": current.generation if generation is None else generation},
        {"op": "replace", "path": "/spec/replicas", "value": replicas},
    ]  # fmt: skip
    try:
        client.patch(Deployment, name, ops, namespace=namespace, patch_type=PatchType.JSON)
    except ApiError as exc:
        # 422 is how the API server reports a failed `test` op (the replace is valid).
        if exc.status.code in (409, 422):
            raise ConflictError(
                f"deployment/{name} in {namespace} changed while scaling it to {replicas}"
            ) from exc
        raise ClusterError(f"scaling deployment/{name} to {replicas}: {api_message(exc)}") from exc
    return True


def delete_deployment(client: Client, name: str, namespace: str) -> bool:
    """Delete a Deployment (foreground: its pods go with it); False if already gone."""
    try:
        client.delete(Deployment, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise ClusterError(f"deleting deployment/{name}: {api_message(exc)}") from exc
    return True


def read_service(client: Client, name: str, namespace: str) -> Service | None:
    """The Service, or None when it does not exist."""
    try:
        return client.get(Service, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise ClusterError(f"reading service/{name} in {namespace}: {api_message(exc)}") from exc


def ready_endpoint_ips(client: Client, service: str, namespace: str) -> set[str]:
    """IPs of the Service's endpoints that are ready, from its EndpointSlices."""
    ips: set[str] = set()
    slices = client.list(
        EndpointSlice, namespace=namespace, labels={"kubernetes.io/service-name": service}
    )
    for eps in slices:
        for ep in eps.endpoints or []:
            if ep.conditions is None or ep.conditions.ready is not False:
                ips.update(ep.addresses or [])
    return ips

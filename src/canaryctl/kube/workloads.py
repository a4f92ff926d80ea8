"""Read and scale Deployments and their pods, with optimistic concurrency."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from canaryctl.errors import ClusterError
from canaryctl.kube.client import write_error


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


#: The Deployments read in the current `one_view()` block, by (client, namespace, name).
_VIEW: contextvars.ContextVar[dict[tuple[int, str, str], DeploymentInfo] | None] = (
    contextvars.ContextVar("canaryctl_deployment_view", default=None)
)


@contextlib.contextmanager
def one_view() -> Iterator[None]:
    """Within the block, each Deployment (with its pods) is read from the API once.

    One engine tick observes, decides and acts on one view of its two Deployments; the
    router's own reads during that tick (the weight, the split to scale towards) used to
    read both again, two requests each, several times a tick. A scale or delete made
    through this module drops that Deployment from the view, so a read after our own
    write is fresh. Per thread (a context variable): concurrent ticks never share a view.
    """
    token = _VIEW.set({})
    try:
        yield
    finally:
        _VIEW.reset(token)


def _forget(client: Client, name: str, namespace: str) -> None:
    view = _VIEW.get()
    if view is not None:
        view.pop((id(client), namespace, name), None)


def read_deployment(client: Client, name: str, namespace: str) -> DeploymentInfo:
    """Observe one Deployment and the pods its selector matches (missing -> exists=False);
    inside `one_view()`, the view's copy once read."""
    view = _VIEW.get()
    key = (id(client), namespace, name)
    if view is not None and key in view:
        return view[key]
    info = _read_deployment(client, name, namespace)
    if view is not None:
        view[key] = info
    return info


def _read_deployment(client: Client, name: str, namespace: str) -> DeploymentInfo:
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
    _forget(client, name, namespace)  # written (or refused): read it afresh next time
    ops: list[dict[str, object]] = [
        {"op": "test", "path": "/metadata/generation",
         "value": current.generation if generation is None else generation},
        {"op": "replace", "path": "/spec/replicas", "value": replicas},
    ]  # fmt: skip
    try:
        client.patch(Deployment, name, ops, namespace=namespace, patch_type=PatchType.JSON)
    except ApiError as exc:
        # 422 is also how the API server reports a failed `test` op (a race, as a 409);
        # an admission policy's 422/403 is a refusal (WriteDenied), never retried at once.
        raise write_error(exc, f"deployment/{name} in {namespace} (scaling to {replicas})") from exc
    return True


def delete_deployment(client: Client, name: str, namespace: str) -> bool:
    """Delete a Deployment (foreground: its pods go with it); False if already gone."""
    _forget(client, name, namespace)
    try:
        client.delete(Deployment, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise ClusterError(f"deleting deployment/{name}: {api_message(exc)}") from exc
    return True


@dataclass(frozen=True)
class Autoscaler:
    """A HorizontalPodAutoscaler and the replica range it keeps its target in."""

    name: str
    target: str
    min_replicas: int
    max_replicas: int


def autoscalers(client: Client, namespace: str, deployments: set[str]) -> list[Autoscaler]:
    """The HPAs in `namespace` whose scale target is one of the named Deployments."""
    try:
        hpas = list(client.list(HorizontalPodAutoscaler, namespace=namespace))
    except ApiError as exc:
        raise ClusterError(
            f"listing horizontalpodautoscalers in {namespace}: {api_message(exc)}"
        ) from exc
    found = []
    for hpa in hpas:
        ref = hpa.spec.scaleTargetRef
        if ref.kind == "Deployment" and ref.name in deployments:
            found.append(
                Autoscaler(
                    name=hpa.metadata.name,
                    target=ref.name,
                    min_replicas=hpa.spec.minReplicas or 1,
                    max_replicas=hpa.spec.maxReplicas,
                )
            )
    return sorted(found, key=lambda a: a.name)


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


def serving_endpoints(client: Client, service: str, namespace: str) -> list[tuple[str, str]]:
    """(pod name, IP) of every endpoint the Service's EndpointSlices list as serving.

    Terminating endpoints count while `serving` (their pod still passes readiness), as
    proxies may still send them requests. A slice without a `serving` condition (older
    producers) falls back to `ready`; no conditions at all counts as serving.
    """
    found: list[tuple[str, str]] = []
    slices = client.list(
        EndpointSlice, namespace=namespace, labels={"kubernetes.io/service-name": service}
    )
    for eps in slices:
        for ep in eps.endpoints or []:
            cond = ep.conditions
            serving = None if cond is None else cond.serving
            if serving is None and cond is not None:
                serving = cond.ready
            if serving is False:
                continue
            pod = (
                ep.targetRef.name if ep.targetRef is not None and ep.targetRef.kind == "Pod" else ""
            )
            found.extend((pod or "", ip) for ip in ep.addresses or [])
    return found


def version_pods(
    client: Client, namespace: str, selector: dict[str, str]
) -> tuple[set[str], set[str]]:
    """Names and IPs of the pods a Deployment's selector matches, terminating ones included."""
    names: set[str] = set()
    ips: set[str] = set()
    if not selector:
        return names, ips
    for pod in client.list(Pod, namespace=namespace, labels=selector):
        names.add(pod.metadata.name)
        if pod.status is not None and pod.status.podIP:
            ips.add(pod.status.podIP)
    return names, ips


def count_serving(
    client: Client, services: list[tuple[str, str]], namespace: str, selector: dict[str, str]
) -> int:
    """How many pods matching `selector` (in `namespace`) the Services list as serving."""
    if not services:
        return 0
    names, ips = version_pods(client, namespace, selector)
    listed: set[str] = set()
    for service, service_ns in services:
        for pod, ip in serving_endpoints(client, service, service_ns):
            if service_ns == namespace and (pod in names or ip in ips):
                listed.add(pod or ip)
    return len(listed)


#: Seconds of preStop delay the graceful-shutdown warning suggests.
SUGGESTED_PRESTOP_SECONDS = 5
#: Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_SECONDS = 30


def _prestop_seconds(hook: dict[str, object]) -> float | None:
    """The delay a preStop hook gives, when it is a plain sleep; None when unknown."""
    sleep = hook.get("sleep")
    if isinstance(sleep, dict) and isinstance(sleep.get("seconds"), int | float):
        return float(sleep["seconds"])
    command = (
        (hook.get("exec") or {}).get("command") if isinstance(hook.get("exec"), dict) else None
    )
    if isinstance(command, list):
        words = " ".join(str(w) for w in command).split()
        if "sleep" in words:
            after = words[words.index("sleep") + 1 :]
            try:
                return float(after[0]) if after else None
            except ValueError:
                return None
    return None


def shutdown_gaps(name: str, template: dict[str, object]) -> list[str]:
    """What a pod template lacks for a scale-down that loses no request, with the fix.

    A removed pod stays in kube-proxy's rules and in proxies for a moment after it is
    told to stop; without a readiness probe and a preStop delay (within the grace
    period) requests reach a container that has already exited. Pure: reads the dict.
    """
    spec = template.get("spec") if isinstance(template.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    serving = [c for c in containers if c.get("ports")] or containers
    grace = spec.get("terminationGracePeriodSeconds")
    grace = DEFAULT_GRACE_SECONDS if grace is None else grace
    gaps: list[str] = []
    for c in serving:
        where = f"deployment/{name} container {c.get('name')}"
        if not c.get("readinessProbe"):
            gaps.append(
                f"{where} has no readinessProbe: its pods get traffic before they can answer "
                "and endpoints cannot tell when they stop; add one, e.g. "
                "readinessProbe.httpGet {path: /ready, port: <probe port>}"
            )
        hook = (c.get("lifecycle") or {}).get("preStop")
        if not hook:
            gaps.append(
                f"{where} has no preStop delay: a removed pod gets SIGTERM while kube-proxy "
                "and proxies still send it requests (connection refused, 502); add "
                f"lifecycle.preStop.sleep.seconds: {SUGGESTED_PRESTOP_SECONDS} (or an exec "
                f"`sleep {SUGGESTED_PRESTOP_SECONDS}` before Kubernetes 1.30)"
            )
            continue
        delay = _prestop_seconds(hook)
        if delay is not None and isinstance(grace, int | float) and grace <= delay:
            gaps.append(
                f"deployment/{name}: terminationGracePeriodSeconds {grace} does not cover "
                f"the {delay:g}s preStop delay of container {c.get('name')} plus shutdown; "
                f"set it to at least {delay + SUGGESTED_PRESTOP_SECONDS:g}"
            )
    return gaps


def graceful_shutdown_gaps(client: Client, name: str, namespace: str) -> list[str]:
    """`shutdown_gaps` of a Deployment's pod template; [] when it does not exist."""
    try:
        dep = client.get(Deployment, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return []
        raise ClusterError(f"reading deployment/{name} in {namespace}: {api_message(exc)}") from exc
    template = dep.to_dict().get("spec", {}).get("template") or {}
    return shutdown_gaps(name, template)

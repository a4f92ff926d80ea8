"""Traffic leaves before pods do, checked from the cluster's own record of events.

Real control plane, real EndpointSlice controller, KWOK pods. The old version's pods
are annotated `canaryctl.dev/simulate-termination`, so a deleted pod stays Ready for a
while (as in a preStop sleep) and the EndpointSlice controller lists it as serving and
terminating, as it would on a real node. A recorder polls EndpointSlices, pods,
Deployments and routes while the engine runs, and the tests assert the order of events:
no old pod is deleted while a Service carrying its traffic lists it as serving, and the
drain delay separates the last such listing from the removal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from canaryctl.core.models import CanaryStatus, Phase, parse_spec
from canaryctl.driver.engine import Engine
from canaryctl.driver.report import Notice
from canaryctl.kube import workloads
from canaryctl.kube.store import Store
from canaryctl.routers import make_router
from canaryctl.routers._patch import HTTPRoute
from helpers import app_deployment, app_ingress, app_service, wait_until

pytestmark = pytest.mark.integration

DRAIN = 3.0  # drainDelay of these rollouts, seconds
GRACE = "3s"  # how long a deleted stable pod keeps serving (simulated preStop)
# The recorder sees a change up to one poll (three list calls) late, and the engine may
# see it first, so a measured gap may fall short of the delay by that much. Without the
# drain the gap would be one engine tick (0.2 s plus API latency): still far below.
POLL_SLACK = 1.0


def _objects(kind: str) -> list[dict[str, Any]]:
    # Ready only when probed, and a preStop sleep: what graceful scale-down needs.
    container = {
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        "lifecycle": {"preStop": {"sleep": {"seconds": 2}}},
    }
    docs = [
        app_service(),
        app_deployment("app-v1", "v1", 2, container, {"canaryctl.dev/simulate-termination": GRACE}),
        app_deployment("app-v2", "v2", 0, container, {}),
    ]
    if kind == "nginx":
        docs.append(app_ingress())
    elif kind == "gateway":
        docs.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "app"},
                "spec": {
                    "parentRefs": [{"name": "public"}],
                    "rules": [{"backendRefs": [{"name": "app", "port": 80}]}],
                },
            }
        )
    return docs


def _router(kind: str) -> dict[str, Any]:
    return {
        "replicas": {"kind": "replicas"},
        "nginx": {"kind": "nginx", "ingress": "app"},
        "gateway": {"kind": "gateway", "httproute": "app"},
    }[kind]


# --- the recorder -------------------------------------------------------------------------


@dataclass
class Recorder:
    """Polls one namespace every 50 ms and keeps the times (monotonic) of what matters.

    Polling, not watching: a watch of lightkube never returns on its own. The simulated
    grace period keeps a deleted pod listed for seconds, far longer than one poll.
    """

    kube: Client
    namespace: str
    serving_now: dict[str, set[str]] = field(default_factory=dict)  # service -> pods
    # (service, pod) -> [(listed from, listed until)] as serving
    serving: dict[tuple[str, str], list[tuple[float, float | None]]] = field(default_factory=dict)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    deleting: dict[str, float] = field(default_factory=dict)  # pod -> deletionTimestamp seen
    pods_of: dict[str, str] = field(default_factory=dict)  # pod -> version label
    deleted: dict[str, float] = field(default_factory=dict)  # deployment -> gone
    zeroed: dict[str, float] = field(default_factory=dict)  # deployment -> spec.replicas 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _poll(self) -> None:
        seen: set[str] = set()
        while not self.stop.wait(0.05):
            slices = list(self.kube.list(EndpointSlice, namespace=self.namespace))
            pods = list(self.kube.list(Pod, namespace=self.namespace))
            deps = {
                d.metadata.name: d for d in self.kube.list(Deployment, namespace=self.namespace)
            }
            now = time.monotonic()
            with self.lock:
                self._slices(slices, now)
                for pod in pods:
                    name = pod.metadata.name
                    self.pods_of[name] = (pod.metadata.labels or {}).get("version", "")
                    if pod.metadata.deletionTimestamp is not None:
                        self.deleting.setdefault(name, now)
                for name in seen - set(deps):
                    self.deleted.setdefault(name, now)
                for name, dep in deps.items():
                    if dep.spec.replicas == 0:
                        self.zeroed.setdefault(name, now)
                seen |= set(deps)

    def _slices(self, slices: list[Any], now: float) -> None:
        listed: dict[str, set[str]] = {}
        for eps in slices:
            service = (eps.metadata.labels or {}).get("kubernetes.io/service-name", "")
            listed.setdefault(service, set())
            for ep in eps.endpoints or []:
                cond = ep.conditions
                pod = ep.targetRef.name if ep.targetRef else ""
                info = {
                    "ready": cond.ready if cond else None,
                    "serving": cond.serving if cond else None,
                    "terminating": cond.terminating if cond else None,
                }
                self.conditions.append({"service": service, "pod": pod, **info})
                if info["serving"] is not False:
                    listed[service].add(pod)
        for service in set(listed) | set(self.serving_now):
            before = self.serving_now.get(service, set())
            after = listed.get(service, set())
            for pod in after - before:
                self.serving.setdefault((service, pod), []).append((now, None))
            for pod in before - after:
                spans = self.serving[(service, pod)]
                spans[-1] = (spans[-1][0], now)
        self.serving_now = listed

    def last_serving(self, version: str, services: tuple[str, ...]) -> float:
        """When the last pod of `version` stopped being listed as serving."""
        with self.lock:
            ends = [
                end
                for (service, pod), spans in self.serving.items()
                if service in services and self.pods_of.get(pod) == version
                for _, end in spans
            ]
        assert ends, f"no pod of {version} was ever listed as serving by {services}"
        assert None not in ends, f"a pod of {version} is still listed as serving"
        return max(e for e in ends if e is not None)

    def serving_when_deleted(self, version: str, services: tuple[str, ...]) -> list[str]:
        """Pods of `version` that got their deletionTimestamp while listed as serving."""
        with self.lock:
            return [
                pod
                for (service, pod), spans in self.serving.items()
                if service in services and self.pods_of.get(pod) == version
                for start, end in spans
                if pod in self.deleting
                and start <= self.deleting[pod]
                and (end is None or self.deleting[pod] < end)
            ]


@pytest.fixture
def recorder(kube: Client, namespace: str) -> Iterator[Recorder]:
    rec = Recorder(kube, namespace)
    rec.start()
    yield rec
    rec.close()


@pytest.fixture(params=["replicas", "nginx", "gateway"])
def kind(request: pytest.FixtureRequest, installed_crds: list[str]) -> str:
    return str(request.param)


def _ready(kube: Client, namespace: str, name: str) -> int | None:
    info = workloads.read_deployment(kube, name, namespace)
    return info.ready_replicas if info.exists else None


def _spec(namespace: str, kind: str, **extra: Any) -> Any:
    return parse_spec(
        {
            "name": "app",
            "namespace": namespace,
            "stable": "app-v1",
            "canary": "app-v2",
            "service": "app",
            "router": _router(kind),
            "steps": [{"setWeight": 50}, {"setWeight": 100}],
            "drainDelay": DRAIN,
            "health": {"readyDeadline": "30s"},
            **extra,
        }
    )


def _run(kube: Client, spec: Any) -> CanaryStatus:
    return Engine(kube, spec, record_events=False).run(0.2)


def _scene(kube: Client, namespace: str, kind: str) -> None:
    for doc in _objects(kind):
        kube.create(codecs.from_dict(doc), namespace=namespace)
    wait_until(lambda: _ready(kube, namespace, "app-v1") == 2, timeout=60)


V1 = {"app": "app", "version": "v1"}


# --- tests --------------------------------------------------------------------------------


def test_a_deleted_kwok_pod_with_a_grace_period_is_listed_serving_and_terminating(
    kube: Client, namespace: str, recorder: Recorder
) -> None:
    """What the EndpointSlice controller publishes for a pod in its termination grace."""
    _scene(kube, namespace, "replicas")
    app = [("app", namespace)]
    wait_until(lambda: workloads.count_serving(kube, app, namespace, V1) == 2)
    workloads.scale(kube, "app-v1", namespace, 1)
    # The removed pod stays listed for its grace period, serving but no longer ready...
    wait_until(
        lambda: (
            workloads.count_serving(kube, app, namespace, V1) == 2
            and len(workloads.ready_endpoint_ips(kube, "app", namespace)) == 1
        ),
        timeout=10,
    )
    wait_until(lambda: any(c["terminating"] for c in recorder.conditions), timeout=5)
    terminating = {(c["ready"], c["serving"]) for c in recorder.conditions if c["terminating"]}
    assert terminating == {(False, True)}
    # ...and leaves the slice once the pod is gone.
    wait_until(lambda: workloads.count_serving(kube, app, namespace, V1) == 1, timeout=10)


SERVICES = {"replicas": ("app",), "nginx": ("app", "app-canary"), "gateway": ("app", "app-canary")}


def test_promotion_deletes_the_old_version_only_after_its_endpoints_drained(
    kube: Client, namespace: str, kind: str, recorder: Recorder
) -> None:
    _scene(kube, namespace, kind)
    # "full": the stable keeps its 2 pods until promotion (no step removes one before).
    status = _run(kube, _spec(namespace, kind, replicaMode="full"))
    assert status.phase is Phase.SUCCEEDED, status.message
    assert _ready(kube, namespace, "app-v1") is None
    wait_until(lambda: "app-v1" in recorder.deleted, timeout=5)
    assert "app-v1" not in recorder.zeroed, "the old version keeps its pods until it drained"
    services = SERVICES[kind]
    assert recorder.serving_when_deleted("v1", services) == []
    gap = recorder.deleted["app-v1"] - recorder.last_serving("v1", services)
    assert gap >= DRAIN - POLL_SLACK, f"old version removed {gap:.2f}s after it drained"
    # Cleanup gave the user's Service its own selector back (narrowed or repointed).
    svc = kube.get(Service, "app", namespace=namespace)
    assert svc.spec.selector == {"app": "app"}
    assert "canaryctl.dev/selector-added" not in (svc.metadata.annotations or {})


def _canary_weight(kube: Client, namespace: str) -> int:
    route = kube.get(HTTPRoute, "app", namespace=namespace).to_dict()
    refs = route["spec"]["rules"][0]["backendRefs"]
    return sum(r.get("weight", 1) for r in refs if r["name"] == "app-canary")


@pytest.mark.parametrize("router", ["replicas", "gateway"])
def test_rollback_scales_the_canary_down_only_after_traffic_left_it_and_the_delay(
    kube: Client, namespace: str, router: str, installed_crds: list[str], recorder: Recorder
) -> None:
    _scene(kube, namespace, router)
    spec = _spec(namespace, router, steps=[{"setWeight": 50}, {"pause": {}}])
    engine = Engine(kube, spec, record_events=False)
    engine.start()
    weights: list[tuple[float, float | None]] = []
    scaled_down: float | None = None
    aborted = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = engine.tick().status
        weights.append((time.monotonic(), make_router(kube, spec, 2).get_weight()))
        if status.phase is Phase.PAUSED and not aborted:
            Store(kube).send_command("app", namespace, "abort")
            aborted = True
        canary = kube.get(Deployment, "app-v2", namespace=namespace).spec.replicas
        if aborted and canary == 0 and scaled_down is None:
            scaled_down = time.monotonic()
        if status.phase.terminal:
            break
        time.sleep(0.2)
    assert status.phase is Phase.ROLLED_BACK, status.message
    assert scaled_down is not None
    last_share = max(t for t, w in weights if w)
    off = min(t for t, w in weights if w == 0 and t > last_share)
    assert scaled_down - off >= DRAIN - POLL_SLACK, "canary removed before the drain delay"
    if router == "replicas":
        # One Service for both versions: the canary's pods left it before any was deleted.
        assert recorder.serving_when_deleted("v2", ("app",)) == []
        gap = scaled_down - recorder.last_serving("v2", ("app",))
        assert gap >= DRAIN - POLL_SLACK, f"canary scaled down {gap:.2f}s after it drained"
    svc = kube.get(Service, "app", namespace=namespace)
    assert svc.spec.selector == {"app": "app"}, "cleanup restores the user's selector"


def test_weight_routers_send_no_weight_to_a_canary_without_ready_endpoints(
    kube: Client, namespace: str, installed_crds: list[str]
) -> None:
    _scene(kube, namespace, "gateway")
    router = make_router(kube, _spec(namespace, "gateway"), 2)
    unready = {"spec": {"replicas": 1, "template": {"metadata": {
        "labels": {"canaryctl.dev/simulate": "unready"}}}}}  # fmt: skip
    kube.patch(Deployment, "app-v2", unready, namespace=namespace)
    wait_until(lambda: len(workloads.read_deployment(kube, "app-v2", namespace).pods) == 1)
    router.set_weight(0)  # creates the canary Service
    time.sleep(1)  # its EndpointSlice lists the unready pod meanwhile
    router.set_weight(10)
    assert _canary_weight(kube, namespace) == 0, "weight sent to a canary with no ready pod"
    # A ready canary gets its weight.
    ready = [{"op": "remove", "path": "/spec/template/metadata/labels/canaryctl.dev~1simulate"}]
    kube.patch(Deployment, "app-v2", ready, namespace=namespace, patch_type=PatchType.JSON)
    wait_until(lambda: router.backends.ready("canary"), timeout=30)
    router.set_weight(10)
    assert _canary_weight(kube, namespace) == 10
    # Every canary pod turns unready mid-rollout: weight goes back to the stable.
    for pod in kube.list(Pod, namespace=namespace, labels={"version": "v2"}):
        kube.patch(
            Pod.Status, pod.metadata.name,
            {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
            namespace=namespace, patch_type=PatchType.STRATEGIC,
        )  # fmt: skip
    wait_until(lambda: not router.backends.ready("canary"), timeout=10)
    router.set_weight(10)
    assert _canary_weight(kube, namespace) == 0
    assert router.get_weight() == 0.0


class Notices:
    """A sink keeping what the engine tells the user."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []

    def notice(self, notice: Notice) -> None:
        self.notices.append(notice)

    def snapshot(self, snap: Any) -> None:
        pass


def test_rollout_warns_when_a_deployment_lacks_what_graceful_scale_down_needs(
    kube: Client, namespace: str
) -> None:
    docs = _objects("replicas")
    bare = docs[2]["spec"]["template"]["spec"]["containers"][0]
    del bare["readinessProbe"], bare["lifecycle"]  # app-v2: neither probe nor preStop
    for doc in docs:
        kube.create(codecs.from_dict(doc), namespace=namespace)
    sink = Notices()
    Engine(kube, _spec(namespace, "replicas"), sink=sink, record_events=False).validate()
    warnings = [n.message for n in sink.notices if n.reason == "UngracefulShutdown"]
    assert len(warnings) == 2
    assert warnings[0].startswith("deployment/app-v2 container app has no readinessProbe")
    assert "lifecycle.preStop.sleep.seconds: 5" in warnings[1]
    assert all(n.type == "Warning" for n in sink.notices)

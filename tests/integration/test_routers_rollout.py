"""Whole rollouts through the engine with each weight router, on the real control plane
with the real Istio and Gateway API CRDs: 10% and 50% held at manual pause steps, then
promotion; abort from another client; rollback of a crash-looping canary."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service
from lightkube.resources.networking_v1 import Ingress

from canaryctl.core.models import CanarySpec, CanaryStatus, Phase, parse_spec
from canaryctl.driver.engine import Engine
from canaryctl.kube.store import Store
from canaryctl.routers import make_router
from canaryctl.routers._patch import HTTPRoute, VirtualService
from helpers import (
    app_deployment,
    app_service,
    app_spec,
    hpa,
    replicas,
    route_objects,
    wait_until,
)

pytestmark = pytest.mark.integration
NGINX = "nginx.ingress.kubernetes.io/"
MANUAL = {"pause": {}}


ROUTER_SPECS = {
    "nginx": {"kind": "nginx", "ingress": "app"},
    "istio": {"kind": "istio", "virtualService": "app", "destinationRule": "app"},
    "gateway": {"kind": "gateway", "httproute": "app"},
}


@dataclass
class Scene:
    """One namespace with app-v1 (2 ready), app-v2 (0) and the user's routing objects
    (none when `kind` is `replicas`, the router without any)."""

    kube: Client
    namespace: str
    kind: str

    @classmethod
    def create(cls, kube: Client, namespace: str, kind: str) -> Scene:
        """Create the scene's objects in `namespace`; return once app-v1 is ready."""
        docs = [app_service(), app_deployment("app-v1", "v1", 2), app_deployment("app-v2", "v2", 0)]
        docs += route_objects(kind) if kind != "replicas" else []
        for doc in docs:
            kube.create(codecs.from_dict(doc), namespace=namespace)
        scene = cls(kube, namespace, kind)
        wait_until(lambda: scene.replicas("app-v1") == (2, 2), timeout=60)
        return scene

    def spec(self, steps: list[dict[str, Any]], header: bool = True, **extra: Any) -> CanarySpec:
        """The rollout of app-v1 to app-v2 through the scene's router, with the X-Track
        header route unless `header` is False; `extra` adds top-level fields."""
        if self.kind != "replicas":
            router = dict(ROUTER_SPECS[self.kind])
            if header:
                router["header"] = {"X-Track": "canary"}
            extra = {"router": router, **extra}
        return parse_spec(app_spec(self.namespace, steps, **extra))

    def routing(self) -> dict[str, Any] | None:
        """The routing object whose weight canaryctl stores (the canary Ingress for nginx)."""
        res, name = {
            "nginx": (Ingress, "app-canary"),
            "istio": (VirtualService, "app"),
            "gateway": (HTTPRoute, "app"),
        }[self.kind]
        try:
            return self.kube.get(res, name, namespace=self.namespace).to_dict()
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    def user_object(self) -> str:
        """The user's routing object's spec, canonical JSON."""
        res = {"nginx": Ingress, "istio": VirtualService, "gateway": HTTPRoute}[self.kind]
        spec = self.kube.get(res, "app", namespace=self.namespace).to_dict()["spec"]
        return json.dumps(spec, sort_keys=True)

    def stored_weight(self) -> int | None:
        """The canary weight as written in the object (not through the router)."""
        obj = self.routing()
        if obj is None:
            return None
        if self.kind == "nginx":
            return int(obj["metadata"]["annotations"][NGINX + "canary-weight"])
        if self.kind == "istio":
            main = next(r for r in obj["spec"]["http"] if r.get("name") == "main")
            return sum(
                e.get("weight", 100)
                for e in main["route"]
                if e["destination"].get("subset") == "v2"
            )
        main = obj["spec"]["rules"][-1]
        return sum(b["weight"] for b in main["backendRefs"] if b["name"] == "app-canary")

    def header_route(self) -> bool:
        obj = self.routing()
        if obj is None:
            return False
        if self.kind == "nginx":
            return NGINX + "canary-by-header" in obj["metadata"]["annotations"]
        routes = obj["spec"]["http" if self.kind == "istio" else "rules"]
        return any(r.get("name") == "canaryctl-app" for r in routes)

    def replicas(self, name: str) -> tuple[int, int] | None:
        return replicas(self.kube, self.namespace, name)

    def selector(self) -> dict[str, str]:
        return dict(self.kube.get(Service, "app", namespace=self.namespace).spec.selector)

    def services(self) -> list[str]:
        return sorted(s.metadata.name for s in self.kube.list(Service, namespace=self.namespace))


@pytest.fixture(params=["nginx", "istio", "gateway"])
def scene(
    request: pytest.FixtureRequest, kube: Client, namespace: str, installed_crds: list[str]
) -> Scene:
    return Scene.create(kube, namespace, request.param)


class Rollout:
    """The engine driving one rollout in a thread, as `canaryctl rollout` does."""

    def __init__(self, scene: Scene, spec: CanarySpec, interval: float = 0.2) -> None:
        self.scene, self.spec, self.interval = scene, spec, interval
        self.engine = Engine(scene.kube, spec, record_events=False)
        #: Ticks the engine has made (a held step writes its record only to renew the
        #: lease, so tests that hold a step for N ticks count them here).
        self.ticks = 0
        tick = self.engine.tick

        def counted() -> Any:
            self.ticks += 1
            return tick()

        self.engine.tick = counted  # type: ignore[method-assign]
        self.result: CanaryStatus | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.engine.run(self.interval)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def status(self) -> CanaryStatus | None:
        record = Store(self.scene.kube).get("app", self.scene.namespace)
        return CanaryStatus.from_dict(record.status) if record and record.status else None

    def wait(self, check: Callable[[CanaryStatus], bool], timeout: float = 60) -> CanaryStatus:
        def probe() -> CanaryStatus | None:
            if self.error is not None:
                raise self.error
            status = self.status()
            return status if status is not None and check(status) else None

        result = wait_until(probe, timeout=timeout, interval=0.2)
        assert result is not None
        return result

    def command(self, action: str) -> None:
        Store(self.scene.kube).send_command("app", self.scene.namespace, action)

    def finish(self, timeout: float = 60) -> CanaryStatus:
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the rollout did not finish in time"
        return self.result

    def cleanup(self) -> None:
        """What the rollout leaves to the router once it has ended (idempotent)."""
        make_router(self.scene.kube, self.spec, 2).cleanup()


def paused_at(weight: int) -> Callable[[CanaryStatus], bool]:
    return lambda st: st.phase is Phase.PAUSED and st.weight == weight


@pytest.fixture
def steps() -> list[dict[str, Any]]:
    return [{"setWeight": 10}, MANUAL, {"setWeight": 50}, MANUAL, {"setWeight": 100}]


def test_rollout_holds_each_weight_at_its_pause_then_promotes(
    scene: Scene, steps: list[dict[str, Any]]
) -> None:
    user_before = scene.user_object()
    rollout = Rollout(scene, scene.spec(steps))
    for weight in (10, 50):
        rollout.wait(paused_at(weight))
        assert scene.stored_weight() == weight
        assert rollout.engine._router(2).get_weight() == weight
        assert scene.header_route(), "testers reach the canary during the rollout"
        rollout.command("promote")
    status = rollout.finish()
    assert status.phase is Phase.SUCCEEDED, status.message
    assert scene.replicas("app-v1") is None
    assert scene.replicas("app-v2") == (2, 2)
    assert not scene.header_route(), "tester routes end with the rollout"
    rollout.cleanup()
    if scene.kind == "istio":
        vs = json.loads(scene.user_object())
        assert vs["http"][0]["name"] == "admin"
        assert vs["http"][1] == {
            "name": "main",
            "route": [{"destination": {"host": "app", "subset": "v2"}}],
        }
    else:
        # The user's Service was repointed to v2, then its added version key removed again.
        assert scene.user_object() == user_before
        assert scene.selector() == {"app": "app"}
    assert scene.routing() is not None or scene.kind == "nginx"
    assert scene.services() == ["app"], "what canaryctl created is gone"


def test_abort_at_a_pause_rolls_back_and_restores_the_routing_objects(
    scene: Scene, steps: list[dict[str, Any]]
) -> None:
    user_before = scene.user_object()
    rollout = Rollout(scene, scene.spec(steps))
    rollout.wait(paused_at(10))
    rollout.command("abort")
    status = rollout.finish()
    assert status.phase is Phase.ROLLED_BACK and status.reason == "Aborted"
    assert scene.replicas("app-v1") == (2, 2)
    assert scene.replicas("app-v2") == (0, 0)
    assert scene.stored_weight() in (0, None), "all traffic back on the stable"
    assert not scene.header_route()
    rollout.cleanup()
    assert scene.user_object() == user_before, "the user's object ends as it started"
    assert scene.selector() == {"app": "app"}
    assert scene.services() == ["app"]
    if scene.kind == "nginx":
        assert scene.routing() is None, "the canary Ingress is removed after weight 0"


@pytest.mark.parametrize("scene", ["istio"], indirect=True)
def test_failing_canary_rolls_back_and_the_unrelated_route_never_changes(scene: Scene) -> None:
    admin = json.loads(scene.user_object())["http"][0]
    user_before = scene.user_object()
    rollout = Rollout(scene, scene.spec([{"setWeight": 10}, MANUAL, {"setWeight": 100}]))
    rollout.wait(paused_at(10))
    assert json.loads(scene.user_object())["http"][0] == admin
    # A new canary pod that crash-loops (KWOK's fault stage), as a bad image would.
    labels = {"canaryctl.dev/simulate": "crashloop"}
    patch = {"spec": {"template": {"metadata": {"labels": labels}}}}
    scene.kube.patch(Deployment, "app-v2", patch, namespace=scene.namespace)
    status = rollout.finish()
    assert status.phase is Phase.ROLLED_BACK, status.message
    assert status.reason in ("CanaryCrashLoop", "CanaryRestarts"), status.reason
    assert scene.stored_weight() == 0
    assert json.loads(scene.user_object())["http"][0] == admin
    rollout.cleanup()
    assert scene.user_object() == user_before


@pytest.mark.parametrize("scene", ["istio"], indirect=True)
def test_subsets_with_an_autoscaler_on_each_version_promote_without_fighting_it(
    scene: Scene,
) -> None:
    """The seed's Istio example: DestinationRule subsets and an HPA on both Deployments."""
    for name, low in (("app-v1", 2), ("app-v2", 1)):
        scene.kube.create(codecs.from_dict(hpa(name, low, 4)), namespace=scene.namespace)
    steps = [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}]
    rollout = Rollout(scene, scene.spec(steps))
    rollout.wait(lambda st: st.weight == 50 and scene.stored_weight() == 50)
    status = rollout.finish()
    assert status.phase is Phase.SUCCEEDED, status.message
    assert scene.replicas("app-v2") == (2, 2)
    main = json.loads(scene.user_object())["http"][1]
    assert main["route"] == [{"destination": {"host": "app", "subset": "v2"}}]


def test_ab_by_header_only_sends_testers_to_the_canary_and_no_weight(scene: Scene) -> None:
    rollout = Rollout(scene, scene.spec([{"setCanaryScale": 50}, MANUAL]))
    status = rollout.wait(lambda st: st.phase is Phase.PAUSED)
    assert status.weight == 0
    assert scene.replicas("app-v2") == (1, 1), "canary capacity without weight"
    assert scene.stored_weight() in (0, None), "no weighted traffic to the canary"
    # The tester route appears once the canary's endpoints are ready (EndpointSlices lag).
    wait_until(scene.header_route, timeout=30)
    assert scene.stored_weight() in (0, None), "only requests with X-Track: canary reach it"
    rollout.command("promote")
    assert rollout.finish().phase is Phase.SUCCEEDED
    assert scene.replicas("app-v2") == (2, 2)
    assert not scene.header_route()
    rollout.cleanup()


def test_blue_green_switches_at_once_and_keeps_the_old_version_for_instant_rollback(
    scene: Scene,
) -> None:
    spec = scene.spec([{"setWeight": 100}], scaleDownDelay="1h")
    rollout = Rollout(scene, spec)
    rollout.wait(lambda st: st.full_traffic_at is not None)
    assert scene.stored_weight() == 100 or scene.kind == "nginx"
    assert scene.replicas("app-v1") == (2, 2), "the old version is kept, ready"
    rollout.command("abort")  # instant rollback inside the delay
    status = rollout.finish()
    assert status.phase is Phase.ROLLED_BACK
    assert scene.replicas("app-v1") == (2, 2)
    assert scene.stored_weight() in (0, None)
    rollout.cleanup()

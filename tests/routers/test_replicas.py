"""The replica router on the real control plane: capacity before traffic, weights from
EndpointSlices, promotion and validation."""

from __future__ import annotations

import pytest
from lightkube import Client
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service

from canaryctl.errors import SpecError
from canaryctl.kube import manifests
from canaryctl.routers import ReplicaRouter
from helpers import EXAMPLES, wait_until

pytestmark = pytest.mark.integration
SEED = EXAMPLES / "pulpocon-app"


def _replicas(kube: Client, ns: str, name: str) -> tuple[int, int]:
    dep = kube.get(Deployment, name, namespace=ns)
    return dep.spec.replicas, dep.status.readyReplicas or 0


@pytest.fixture
def seed(kube: Client, namespace: str) -> ReplicaRouter:
    files = [SEED / "service.yaml", SEED / "app-v1.yaml", SEED / "app-v2.yaml"]
    manifests.apply(kube, manifests.load(files), namespace)
    kube.patch(Deployment, "pulpocon-app-v2", {"spec": {"replicas": 0}}, namespace=namespace)
    wait_until(lambda: _replicas(kube, namespace, "pulpocon-app-v1") == (10, 10), timeout=60)
    return ReplicaRouter(
        kube,
        namespace=namespace,
        service="pulpocon-app",
        stable="pulpocon-app-v1",
        canary="pulpocon-app-v2",
        baseline=10,
    )


def _converge(router: ReplicaRouter, weight: int, timeout: float = 60) -> None:
    def done() -> bool:
        router.set_weight(weight)
        eff = router.get_weight()
        return eff is not None and abs(eff - weight) < 0.5

    wait_until(done, timeout=timeout, interval=0.5)


def test_weight_ten_means_one_canary_and_nine_stable_ready_endpoints(
    kube: Client, namespace: str, seed: ReplicaRouter
) -> None:
    seed.reconcile()
    _converge(seed, 10)
    assert _replicas(kube, namespace, "pulpocon-app-v2") == (1, 1)
    assert _replicas(kube, namespace, "pulpocon-app-v1")[0] == 9
    assert seed.get_weight() == pytest.approx(10.0)


def test_stable_shrinks_only_after_the_canary_is_ready(
    kube: Client, namespace: str, seed: ReplicaRouter
) -> None:
    changes = seed.set_weight(50)
    # First call: the canary grows; the stable must keep its 10 until canary pods are ready.
    assert [c.obj for c in changes] == ["deployment/pulpocon-app-v2"]
    assert _replicas(kube, namespace, "pulpocon-app-v1")[0] == 10
    _converge(seed, 50)
    assert _replicas(kube, namespace, "pulpocon-app-v1") == (5, 5)


def test_rollback_restores_stable_capacity_before_removing_canary(
    kube: Client, namespace: str, seed: ReplicaRouter
) -> None:
    _converge(seed, 50)
    changes = seed.set_weight(0)
    assert [c.obj for c in changes] == ["deployment/pulpocon-app-v1"]
    assert _replicas(kube, namespace, "pulpocon-app-v2")[0] == 5, "canary kept until v1 ready"
    _converge(seed, 0)
    assert _replicas(kube, namespace, "pulpocon-app-v1") == (10, 10)
    # The canary leaves the Service (narrowed to v1) with its pods still running; the
    # engine scales it down once no endpoint lists them and the drain delay has passed.
    selector = kube.get(Service, "pulpocon-app", namespace=namespace).spec.selector
    assert selector == {"app": "pulpocon-app", "version": "v1.0.0"}
    assert _replicas(kube, namespace, "pulpocon-app-v2") == (5, 5)
    wait_until(lambda: seed.serving("canary") == 0 and seed.serving("stable") == 10)
    assert [str(c) for c in seed.cleanup()] == [
        "patch service/pulpocon-app: selector keys added removed again: ['version']"
    ]
    svc = kube.get(Service, "pulpocon-app", namespace=namespace)
    assert svc.spec.selector == {"app": "pulpocon-app"}
    assert "canaryctl.dev/selector-added" not in (svc.metadata.annotations or {})


def test_promotion_deletes_the_old_stable_only_when_the_canary_has_full_capacity(
    kube: Client, namespace: str, seed: ReplicaRouter
) -> None:
    kube.patch(Deployment, "pulpocon-app-v2", {"spec": {"replicas": 10}}, namespace=namespace)
    assert seed.promote() == [] or _replicas(kube, namespace, "pulpocon-app-v2")[1] >= 10
    wait_until(lambda: _replicas(kube, namespace, "pulpocon-app-v2") == (10, 10), timeout=60)
    assert [str(c) for c in seed.promote()] == [
        "delete deployment/pulpocon-app-v1: promotion complete"
    ]
    names = [d.metadata.name for d in kube.list(Deployment, namespace=namespace)]
    assert names == ["pulpocon-app-v2"]


def test_service_not_selecting_the_canary_pods_is_a_spec_error(
    kube: Client, namespace: str, seed: ReplicaRouter
) -> None:
    kube.patch(
        Service,
        "pulpocon-app",
        {"spec": {"selector": {"app": "pulpocon-app", "version": "v1.0.0"}}},
        namespace=namespace,
    )
    with pytest.raises(SpecError) as err:
        seed.reconcile()
    assert err.value.field == "canary"
    assert "does not select the pods of deployment/pulpocon-app-v2" in err.value.reason


def test_missing_service_is_a_spec_error(kube: Client, namespace: str) -> None:
    router = ReplicaRouter(
        kube, namespace=namespace, service="nope", stable="a", canary="b", baseline=1
    )
    with pytest.raises(SpecError, match="service/nope not found"):
        router.reconcile()

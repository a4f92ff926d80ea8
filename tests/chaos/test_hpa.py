"""HorizontalPodAutoscalers on both Deployments, real HPA objects acted on by the real HPA
controller of the local control plane (min/max need no metrics): the replica router
refuses them by name; weight routers leave replicas to them and never fight them."""

from __future__ import annotations

from collections import Counter

import pytest
from lightkube import Client, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.types import PatchType

from canaryctl.core.models import Phase
from canaryctl.driver.engine import Engine
from canaryctl.errors import SpecError
from canaryctl.kube.store import Store
from canaryctl.testenv import crds
from chaos.writelog import WriteLog
from helpers import hpa, replicas, wait_until
from integration.test_routers_rollout import Rollout, Scene

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def installed_crds(kube: Client) -> list[str]:
    """The routing CRDs (Istio, Gateway API) installed on the session's cluster."""
    return crds.install(kube, progress=lambda _: None)


def test_the_replica_router_refuses_an_hpa_by_name_and_changes_nothing(
    kube: Client, namespace: str
) -> None:
    scene = Scene.create(kube, namespace, "replicas")
    kube.create(codecs.from_dict(hpa("app-v2", 1, 4)), namespace=namespace)
    engine = Engine(kube, scene.spec([{"setWeight": 50}]), record_events=False)
    with pytest.raises(SpecError) as refused:
        engine.start()
    assert refused.value.field == "router"
    message = str(refused.value)
    assert "horizontalpodautoscaler/app-v2 (on deployment/app-v2, min 1, max 4)" in message
    assert "weight router" in message
    assert Store(kube).get("app", namespace) is None, "no rollout record was created"
    assert replicas(kube, namespace, "app-v1") == (2, 2)
    assert replicas(kube, namespace, "app-v2") == (0, 0)


@pytest.mark.chaos  # 30 s; in `make test` the weight router + HPA promotion is covered by
# tests/integration/test_routers_rollout.py (subsets with an autoscaler on each version)
@pytest.mark.usefixtures("installed_crds")
def test_a_weight_router_leaves_replicas_to_the_hpas_and_never_fights_them(
    kube: Client, namespace: str
) -> None:
    scene = Scene.create(kube, namespace, "istio")
    for doc in (hpa("app-v1", 2, 4), hpa("app-v2", 1, 4)):
        kube.create(codecs.from_dict(doc), namespace=namespace)
    steps = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    rollout = Rollout(scene, scene.spec(steps, header=False))
    rollout.wait(lambda st: st.phase is Phase.PAUSED and st.weight == 50)
    wait_until(lambda: scene.stored_weight() == 50, timeout=30)
    # The HPA controller runs: raising the canary's minimum scales it (no metrics needed).
    kube.patch(
        HorizontalPodAutoscaler,
        "app-v2",
        {"spec": {"minReplicas": 3}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    wait_until(lambda: scene.replicas("app-v2") == (3, 3), timeout=60)
    # Held pause with the HPAs in charge: nobody writes the Deployments any more.
    writes: Counter[str] = Counter()
    first_tick = rollout.ticks
    while rollout.ticks - first_tick < 5:
        with WriteLog(kube, namespace, [Deployment], 2) as deployments:
            pass
        writes.update(deployments.counts())
    ticks = rollout.ticks - first_tick
    print({"hpa pause": {"ticks": ticks, "deployment writes": dict(writes)}})
    assert not writes, f"a Deployment written during the held pause: {dict(writes)}"
    assert scene.replicas("app-v2") == (3, 3), "the HPA's count was kept"
    rollout.command("promote")
    status = rollout.finish()
    assert status.phase is Phase.SUCCEEDED, status.message
    assert scene.replicas("app-v1") is None
    assert scene.replicas("app-v2")[1] >= 2, "full capacity on the new version"


@pytest.mark.usefixtures("installed_crds")
def test_a_canary_hpa_capped_below_the_stable_is_refused_by_name(
    kube: Client, namespace: str
) -> None:
    """Measured before the fix: with maxReplicas 1 on the canary (stable: 2) the rollout
    promoted, then the HPA scaled the new version to 1 pod serving all traffic."""
    scene = Scene.create(kube, namespace, "istio")
    kube.create(codecs.from_dict(hpa("app-v2", 1, 1)), namespace=namespace)
    engine = Engine(kube, scene.spec([{"setWeight": 50}], header=False), record_events=False)
    with pytest.raises(SpecError) as refused:
        engine.start()
    assert refused.value.field == "canary"
    assert "horizontalpodautoscaler/app-v2 keeps deployment/app-v2 at 1 replica(s) at most" in (
        str(refused.value)
    )
    assert "raise its maxReplicas to at least 2" in str(refused.value)
    assert Store(kube).get("app", namespace) is None

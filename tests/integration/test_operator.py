"""`canaryctl operator` as a real process on the real control plane: pair and managed mode,
rollback, deletion mid-rollout, a killed operator, two operators with one leader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import (
    Container,
    PodSpec,
    PodTemplateSpec,
    ServicePort,
    ServiceSpec,
)
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import ConfigMap, Event, Pod, Secret, Service
from lightkube.resources.networking_v1 import Ingress
from lightkube.types import PatchType

from canaryctl.kube import workloads
from canaryctl.kube.canary import Canary
from canaryctl.operator import managed
from canaryctl.routers._patch import HTTPRoute, VirtualService
from canaryctl.testenv import ClusterState
from helpers import app_ingress, found, replicas, wait_until
from providers.httpstub import Receiver, Reply

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).with_name("canaryctl"))
CRASH = {"canaryctl.dev/simulate": "crashloop"}
FAST_HEALTH = {"readyDeadline": "20s"}


# --- objects ----------------------------------------------------------------------------


def deploy(kube: Client, ns: str, name: str, replicas: int, track: str, image: str = "app:1",
           extra_labels: dict[str, str] | None = None) -> None:  # fmt: skip
    """A Deployment of the `app` Service: pods {app: app, track: <track>}."""
    selector = {"app": "app", "track": track}
    kube.create(
        Deployment(
            metadata=ObjectMeta(name=name, namespace=ns),
            spec=DeploymentSpec(
                replicas=replicas,
                selector=LabelSelector(matchLabels=selector),
                template=PodTemplateSpec(
                    metadata=ObjectMeta(labels={**selector, **(extra_labels or {})}),
                    spec=PodSpec(containers=[Container(name="app", image=image)]),
                ),
            ),
        ),
        namespace=ns,
    )


def service(kube: Client, ns: str) -> None:
    kube.create(
        Service(
            metadata=ObjectMeta(name="app", namespace=ns),
            spec=ServiceSpec(selector={"app": "app"}, ports=[ServicePort(port=80)]),
        ),
        namespace=ns,
    )


def canary(kube: Client, ns: str, spec: dict[str, Any], name: str = "app") -> None:
    kube.create(Canary(metadata=ObjectMeta(name=name, namespace=ns), spec=spec), namespace=ns)


def status(kube: Client, ns: str, name: str = "app") -> dict[str, Any]:
    obj = found(kube, Canary, name, ns)
    return {"gone": True} if obj is None else dict(obj.status or {})


def phase(kube: Client, ns: str, name: str = "app") -> str | None:
    return status(kube, ns, name).get("phase")


def canary_events(kube: Client, ns: str, name: str = "app") -> list[str]:
    """Reasons of the Events on a Canary, oldest first."""
    events = [
        e
        for e in kube.list(Event, namespace=ns)
        if e.involvedObject.kind == "Canary" and e.involvedObject.name == name
    ]
    events.sort(key=lambda e: (e.firstTimestamp, e.metadata.creationTimestamp))
    return [e.reason for e in events]


def set_image(kube: Client, ns: str, name: str, image: str,
              labels: dict[str, str] | None = None) -> None:  # fmt: skip
    """What Flux or Argo CD do: a new pod template on the Deployment."""
    patch: dict[str, Any] = {
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}
    }
    if labels:
        patch["spec"]["template"]["metadata"] = {"labels": labels}
    kube.patch(Deployment, name, patch, namespace=ns, patch_type=PatchType.STRATEGIC)


def image_of(kube: Client, ns: str, name: str) -> str:
    return kube.get(Deployment, name, namespace=ns).spec.template.spec.containers[0].image


def pair_spec(steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "stable": "app-v1",
        "canary": "app-v2",
        "service": "app",
        "steps": steps or [{"setWeight": 50}, {"pause": {"duration": "1s"}}],
        "health": FAST_HEALTH,
    }


def managed_spec(steps: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "targetRef": {"kind": "Deployment", "name": "app"},
        "service": "app",
        "steps": steps or [{"setWeight": 50}, {"pause": {"duration": "1s"}}],
        "health": FAST_HEALTH,
        **extra,
    }


def pair_setup(kube: Client, ns: str, canary_labels: dict[str, str] | None = None) -> None:
    service(kube, ns)
    deploy(kube, ns, "app-v1", 2, "v1")
    wait_until(lambda: replicas(kube, ns, "app-v1") == (2, 2), timeout=30)
    deploy(kube, ns, "app-v2", 0, "v2", "app:2", canary_labels)


def managed_setup(kube: Client, ns: str) -> None:
    """A GitOps'd app: `app` (2 replicas) behind `app`; the operator creates app-primary."""
    service(kube, ns)
    deploy(kube, ns, "app", 2, "main")


# --- pair mode --------------------------------------------------------------------------


def test_pair_mode_promotes_a_healthy_canary_with_events_metrics_and_get(
    kube: Client, namespace: str, start_operator, local_cluster: ClusterState
) -> None:
    pair_setup(kube, namespace)
    op = start_operator(namespace)
    canary(kube, namespace, pair_spec())
    wait_until(lambda: phase(kube, namespace) == "Succeeded", timeout=60)
    assert replicas(kube, namespace, "app-v2") == (2, 2)
    assert replicas(kube, namespace, "app-v1") is None  # onPromotion: delete
    st = status(kube, namespace)
    assert st["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in st["conditions"]}["Promoted"] == "True"
    reasons = wait_until(
        lambda: "Succeeded" in canary_events(kube, namespace) and canary_events(kube, namespace),
        timeout=10,
    )
    assert reasons.count("Succeeded") == 1 and "WeightSet" in reasons
    # posted by the Event worker, none dropped (its queue is far from full)
    assert (op.metric("canaryctl_events_total", result="posted") or 0) >= len(reasons)
    assert not op.metric("canaryctl_events_total", result="dropped")
    assert op.metric("canaryctl_canary_weight", namespace=namespace, name="app") == 100
    assert op.metric("canaryctl_canary_phase", namespace=namespace, phase="Succeeded") == 1
    assert op.metric("canaryctl_canary_duration_seconds_count", namespace=namespace) == 1
    assert op.get("/healthz", op.health_port)[0] == 200
    out = subprocess.run(
        [CLI, "get", "app", "-n", namespace, "-o", "json"],
        env={**os.environ, "KUBECONFIG": str(local_cluster.kubeconfig)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Succeeded" in out.stdout


def test_pair_mode_rolls_back_a_crashlooping_canary(
    kube: Client, namespace: str, start_operator
) -> None:
    pair_setup(kube, namespace, canary_labels=CRASH)
    start_operator(namespace)
    canary(kube, namespace, pair_spec())
    wait_until(lambda: phase(kube, namespace) == "RolledBack", timeout=60)
    assert replicas(kube, namespace, "app-v1") == (2, 2)
    assert replicas(kube, namespace, "app-v2") == (0, 0)
    wait_until(lambda: "RolledBack" in canary_events(kube, namespace), timeout=10)


def test_an_invalid_canary_is_refused_naming_the_field(
    kube: Client, namespace: str, start_operator
) -> None:
    with pytest.raises(ApiError) as err:  # the API server's schema
        canary(kube, namespace, {**pair_spec([{"setWeight": 0}])}, name="bad")
    assert "setWeight" in err.value.status.message
    start_operator(namespace)
    # valid for the schema, refused by the operator: the Deployments do not exist
    canary(kube, namespace, pair_spec())

    def refused() -> str:
        conditions = status(kube, namespace).get("conditions") or []
        ready = next((c for c in conditions if c["type"] == "Ready"), {})
        return ready.get("reason") == "InvalidSpec" and ready["message"]

    assert wait_until(refused, timeout=30).startswith("stable")
    assert "InvalidSpec" in canary_events(kube, namespace)


def test_a_webhook_timeout_above_the_tick_budget_is_refused_naming_the_hook(
    kube: Client, namespace: str, start_operator
) -> None:
    """The CRD keeps `analysis` free-form, so the API server takes the Canary; the operator
    refuses it before any move, naming the hook by its place (condition and Event)."""
    pair_setup(kube, namespace)
    start_operator(namespace)
    hooks = [{"name": "helm-test", "type": "pre-rollout", "url": "http://helm/", "timeout": "20s"}]
    canary(kube, namespace, {**pair_spec(), "analysis": {"webhooks": hooks}})

    def refused() -> str:
        conditions = status(kube, namespace).get("conditions") or []
        ready = next((c for c in conditions if c["type"] == "Ready"), {})
        return ready.get("reason") == "InvalidSpec" and ready["message"]

    message = wait_until(refused, timeout=30)
    assert message.startswith("analysis.webhooks[0].timeout: 20s exceeds the 7.5s"), message
    assert replicas(kube, namespace, "app-v2") == (0, 0), "nothing moved"


# --- managed mode -----------------------------------------------------------------------


def test_managed_mode_an_image_bump_rolls_out_is_copied_into_the_primary_and_handed_back(
    kube: Client, namespace: str, start_operator
) -> None:
    managed_setup(kube, namespace)
    start_operator(namespace)
    canary(kube, namespace, managed_spec())
    # initialised: the primary serves with the target's template, the target is at 0
    wait_until(lambda: replicas(kube, namespace, "app-primary") == (2, 2), timeout=30)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    assert phase(kube, namespace) is None  # nothing to roll out yet
    set_image(kube, namespace, "app", "app:2")  # no CLI: a GitOps change
    wait_until(lambda: phase(kube, namespace) in ("Progressing", "Paused", "Promoting"), 20)
    wait_until(lambda: phase(kube, namespace) == "Succeeded", timeout=60)
    wait_until(lambda: image_of(kube, namespace, "app-primary") == "app:2", timeout=30)
    wait_until(lambda: replicas(kube, namespace, "app-primary") == (2, 2), timeout=30)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    reasons = canary_events(kube, namespace)
    assert reasons.count("NewRevision") == 1 and "PrimaryUpdated" in reasons
    # deleting the Canary hands the target back: it serves at full capacity, the primary goes
    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=60)
    assert replicas(kube, namespace, "app") == (2, 2)
    wait_until(lambda: replicas(kube, namespace, "app-primary") is None, timeout=30)


def test_managed_mode_rolls_back_a_bad_image_and_keeps_the_primary(
    kube: Client, namespace: str, start_operator
) -> None:
    managed_setup(kube, namespace)
    start_operator(namespace)
    canary(kube, namespace, managed_spec())
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    set_image(kube, namespace, "app", "app:bad", labels=CRASH)
    wait_until(lambda: phase(kube, namespace) == "RolledBack", timeout=60)
    assert replicas(kube, namespace, "app-primary") == (2, 2)
    assert image_of(kube, namespace, "app-primary") == "app:1"
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    time.sleep(2)  # the failed template is not tried again
    assert phase(kube, namespace) == "RolledBack"
    assert canary_events(kube, namespace).count("NewRevision") == 1


def _holding(st: dict[str, Any]) -> list[str]:
    """Checks whose latest record failed: what `canaryctl get` shows as holding."""
    latest = {c["name"]: c["passed"] for c in st.get("history") or []}
    return sorted(name for name, passed in latest.items() if not passed)


def test_managed_mode_the_rollout_and_traffic_gates_hold_a_new_revision_until_each_says_yes(
    kube: Client, namespace: str, start_operator, receiver: Receiver
) -> None:
    """An operator rollout starts Pending: the rollout gate holds it there (and is asked
    there), then the traffic gate holds the first rise, scale-up included."""
    managed_setup(kube, namespace)
    gates = {"/start": False, "/more": False}
    for path in gates:
        receiver.route(path, lambda r: Reply(200 if gates[r.path] else 403))
    receiver.route("/events", Reply(202))
    hooks = [
        {"name": "start", "type": "confirm-rollout", "url": receiver.url + "/start"},
        {"name": "more", "type": "confirm-traffic-increase", "url": receiver.url + "/more"},
        {"name": "chat", "type": "event", "url": receiver.url + "/events"},
    ]
    start_operator(namespace)
    spec = managed_spec([{"setWeight": 50}], drainDelay="0s")
    canary(kube, namespace, {**spec, "analysis": {"interval": "1s", "webhooks": hooks}})
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    set_image(kube, namespace, "app", "app:2")

    wait_until(lambda: len(receiver.hits("/start")) >= 2, timeout=20)
    st = status(kube, namespace)
    assert (st["phase"], st.get("weight", 0), st.get("canaryReplicas", 0)) == ("Pending", 0, 0)
    assert replicas(kube, namespace, "app") == (0, 0), "no canary pod before the rollout gate"
    assert _holding(st) == ["webhook start (confirm-rollout)"], st.get("history")
    assert receiver.hits("/more") == [], "nothing else is asked before the rollout gate"
    told = [r.json()["metadata"]["eventMessage"] for r in receiver.hits("/events")]
    assert told == [], f"no event claims a rollout the gate has not allowed: {told}"

    gates["/start"] = True
    wait_until(lambda: len(receiver.hits("/more")) >= 2, timeout=20)
    st = status(kube, namespace)
    assert (st["phase"], st.get("stepIndex", 0), st.get("weight", 0)) == ("Progressing", 0, 0)
    assert st.get("canaryReplicas", 0) == 0 and replicas(kube, namespace, "app") == (0, 0)
    assert "webhook more (confirm-traffic-increase)" in _holding(st), st.get("history")
    told = [r.json()["metadata"]["eventMessage"] for r in receiver.hits("/events")]
    assert [m.split(":")[0] for m in told] == ["Started", "StepStarted"], told
    assert "waiting for the traffic gate" in told[1], "no scale-up is claimed before its yes"

    gates["/more"] = True
    wait_until(lambda: phase(kube, namespace) == "Succeeded", timeout=60)
    wait_until(lambda: image_of(kube, namespace, "app-primary") == "app:2", timeout=30)
    told = [r.json()["metadata"]["eventMessage"] for r in receiver.hits("/events")]
    reasons = [m.split(":")[0] for m in told]
    assert reasons[2:4] == ["CanaryScaling", "WeightSet"] and reasons[-1] == "Succeeded", told


def _data(kube: Client, ns: str, res: Any, name: str) -> dict[str, str] | None:
    obj = found(kube, res, name, ns)
    return None if obj is None else dict(obj.data or {})


def config_setup(kube: Client, ns: str) -> None:
    """`app` reading ConfigMap `app-config` (envFrom) and Secret `app-token` (env)."""
    service(kube, ns)
    kube.create(ConfigMap(metadata=ObjectMeta(name="app-config"), data={"MODE": "v1"}),
                namespace=ns)  # fmt: skip
    kube.create(Secret(metadata=ObjectMeta(name="app-token"), stringData={"t": "s3cret"}),
                namespace=ns)  # fmt: skip
    container = {
        "name": "app", "image": "app:1",
        "envFrom": [{"configMapRef": {"name": "app-config"}}],
        "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "app-token", "key": "t"}}}],
    }  # fmt: skip
    labels = {"app": "app", "track": "main"}
    kube.create(codecs.from_dict({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}},
    }), namespace=ns)  # fmt: skip


def primary_copies(kube: Client, ns: str) -> tuple[str, str, str]:
    """(ConfigMap copy, Secret copy) the primary's template reads, and its template hash."""
    primary = kube.get(Deployment, "app-primary", namespace=ns)
    container = primary.spec.template.spec.containers[0]
    version = primary.metadata.annotations["canaryctl.dev/template-hash"]
    return (container.envFrom[0].configMapRef.name,
            container.env[0].valueFrom.secretKeyRef.name, version)  # fmt: skip


def copies(kube: Client, ns: str) -> set[str]:
    """The config copies canaryctl keeps for the primary of `app`."""
    labels = {"app.kubernetes.io/managed-by": "canaryctl", "canaryctl.dev/primary-of": "app"}
    return {f"{res.__name__.lower()}/{obj.metadata.name}" for res in (ConfigMap, Secret)
            for obj in kube.list(res, namespace=ns, labels=labels)}  # fmt: skip


def test_managed_mode_a_config_change_reaches_only_the_canary_until_promotion(
    kube: Client, namespace: str, start_operator
) -> None:
    """The primary reads immutable copies of the target's ConfigMap and Secret for the
    version it runs. A changed ConfigMap starts a rollout and reaches the canary (which
    reads the original) during the analysis; the primary's copy is never written: a
    rolled-back change leaves it as it was, a promoted one gives the primary new copies in
    the same write as its template, and the old ones go once it runs them. The copies go
    with the Canary."""
    config_setup(kube, namespace)
    start_operator(namespace)
    canary(kube, namespace, managed_spec([{"setWeight": 50}, {"pause": {}}]))
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    cm_copy, secret_copy, version = primary_copies(kube, namespace)
    assert cm_copy == f"app-config-primary-{version[:10]}"
    assert secret_copy == f"app-token-primary-{version[:10]}"
    first = kube.get(ConfigMap, cm_copy, namespace=namespace)
    assert first.data == {"MODE": "v1"} and first.immutable
    assert _data(kube, namespace, Secret, secret_copy) == _data(
        kube, namespace, Secret, "app-token"
    )

    def analysed(mode: str) -> None:
        """A config change under analysis: the canary reads it, the primary's copy not."""
        kube.patch(ConfigMap, "app-config", {"data": {"MODE": mode}}, namespace=namespace)
        wait_until(lambda: phase(kube, namespace) == "Paused", timeout=60)
        pods = kube.list(Pod, namespace=namespace, labels=TARGET_PODS)
        refs = {p.spec.containers[0].envFrom[0].configMapRef.name for p in pods}
        assert refs == {"app-config"}, "the canary's pods read the changed ConfigMap"
        assert primary_copies(kube, namespace) == (cm_copy, secret_copy, version)
        now = kube.get(ConfigMap, cm_copy, namespace=namespace)
        assert now.metadata.resourceVersion == first.metadata.resourceVersion
        assert now.data == {"MODE": "v1"}

    analysed("v2")
    _command(kube, namespace, "abort")  # rolled back: the primary's copy never changed
    wait_until(lambda: phase(kube, namespace) == "RolledBack", timeout=60)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    assert primary_copies(kube, namespace) == (cm_copy, secret_copy, version)
    assert kube.get(ConfigMap, cm_copy, namespace=namespace).metadata.resourceVersion == (
        first.metadata.resourceVersion
    )
    assert copies(kube, namespace) == {f"configmap/{cm_copy}", f"secret/{secret_copy}"}

    analysed("v3")
    _promote(kube, namespace)
    wait_until(lambda: phase(kube, namespace) == "Succeeded", timeout=60)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    new_cm, new_secret, new_version = primary_copies(kube, namespace)
    assert new_version != version and new_cm == f"app-config-primary-{new_version[:10]}"
    assert _data(kube, namespace, ConfigMap, new_cm) == {"MODE": "v3"}
    assert replicas(kube, namespace, "app-primary") == (2, 2)
    # the earlier version's copies went once the primary ran the new one
    assert copies(kube, namespace) == {f"configmap/{new_cm}", f"secret/{new_secret}"}

    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=60)
    assert copies(kube, namespace) == set()
    assert _data(kube, namespace, ConfigMap, "app-config") == {"MODE": "v3"}


def canary_messages(kube: Client, ns: str, reason: str, name: str = "app") -> list[str]:
    """Messages of the Events of one reason on a Canary."""
    return [e.message for e in kube.list(Event, namespace=ns)
            if e.involvedObject.kind == "Canary" and e.involvedObject.name == name
            and e.reason == reason]  # fmt: skip


def test_managed_mode_never_overwrites_a_users_object_of_a_copys_name(
    kube: Client, namespace: str, start_operator
) -> None:
    """Someone else's ConfigMap under the name the primary's copy needs is refused by name
    (an Event naming it and the Canary); nothing is created, `app` keeps serving, and the
    object is neither changed nor deleted with the Canary."""
    config_setup(kube, namespace)
    start_operator(namespace)
    canary(kube, namespace, managed_spec())
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    cm_copy = primary_copies(kube, namespace)[0]  # the name the same version needs again
    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=60)
    wait_until(lambda: replicas(kube, namespace, "app-primary") is None, timeout=30)
    assert copies(kube, namespace) == set()

    mine = ConfigMap(metadata=ObjectMeta(name=cm_copy, labels={"team": "a"}), data={"k": "mine"})
    kube.create(mine, namespace=namespace)
    canary(kube, namespace, managed_spec())
    told = wait_until(lambda: canary_messages(kube, namespace, "InvalidSpec"), timeout=30)
    assert f"configmap/{cm_copy}" in told[0] and f"canary {namespace}/app" in told[0]
    time.sleep(1)  # nothing follows the refusal
    assert replicas(kube, namespace, "app-primary") is None
    assert replicas(kube, namespace, "app") == (2, 2)  # still serving, untouched
    assert copies(kube, namespace) == set()
    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=30)
    kept = kube.get(ConfigMap, cm_copy, namespace=namespace)
    assert kept.data == {"k": "mine"} and kept.metadata.labels == {"team": "a"}


# --- deletion, crashes, leadership ------------------------------------------------------


def test_deleting_a_canary_mid_rollout_restores_the_stable_then_lets_it_go(
    kube: Client, namespace: str, start_operator
) -> None:
    pair_setup(kube, namespace)
    start_operator(namespace)
    canary(kube, namespace, pair_spec([{"setWeight": 50}, {"pause": {}}]))
    wait_until(lambda: phase(kube, namespace) == "Paused", timeout=60)
    assert replicas(kube, namespace, "app-v1") == (1, 1)
    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=60)
    assert replicas(kube, namespace, "app-v1") == (2, 2)
    assert replicas(kube, namespace, "app-v2") == (0, 0)
    reasons = canary_events(kube, namespace)
    assert "Deleting" in reasons and "Finalized" in reasons  # recorded before letting go


def _steps_once(kube: Client, ns: str) -> None:
    """Every transition of the rollout was recorded exactly once (none repeated)."""
    # Events are recorded right after the decision they tell of is stored: wait for the last
    wait_until(lambda: "Succeeded" in canary_events(kube, ns), timeout=10)
    counts = Counter(canary_events(kube, ns))
    # steps [setWeight 50, pause {}]: one weight step, then the promotion's 100%
    expected = {"Started": 1, "StepStarted": 1, "WeightSet": 2, "Promoting": 1, "Succeeded": 1}
    assert {reason: counts[reason] for reason in expected} == expected, counts


def test_operator_killed_mid_rollout_resumes_where_it_was(
    kube: Client, namespace: str, start_operator
) -> None:
    pair_setup(kube, namespace)
    op = start_operator(namespace)
    canary(kube, namespace, pair_spec([{"setWeight": 50}, {"pause": {}}]))
    wait_until(lambda: phase(kube, namespace) == "Paused", timeout=60)
    op.kill(signal.SIGKILL)
    before = status(kube, namespace)
    start_operator(namespace)
    time.sleep(1)  # the new process finds the rollout paused, and leaves it so
    assert phase(kube, namespace) == "Paused"
    _promote(kube, namespace)
    wait_until(lambda: phase(kube, namespace) == "Succeeded", timeout=60)
    assert before["stepIndex"] == 1
    _steps_once(kube, namespace)


def test_a_verdict_is_acted_on_only_for_the_template_it_analysed(
    kube: Client, namespace: str, start_operator
) -> None:
    """The operator died after marking a new template as the candidate and before starting
    its rollout: the status still says Succeeded (the previous template's). It must start
    a rollout of the new template, never copy it into the primary unanalysed."""
    managed_setup(kube, namespace)
    op = start_operator(namespace)
    canary(kube, namespace, managed_spec())
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    set_image(kube, namespace, "app", "app:2")
    wait_until(lambda: image_of(kube, namespace, "app-primary") == "app:2", timeout=90)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    assert phase(kube, namespace) == "Succeeded"
    op.kill(signal.SIGKILL)

    set_image(kube, namespace, "app", "app:3")
    template = kube.get(Deployment, "app", namespace=namespace).to_dict()["spec"]["template"]
    candidate = managed.template_hash(template, {})
    patch = {"metadata": {"annotations": {managed.CANDIDATE_HASH: candidate}}}
    kube.patch(Deployment, "app-primary", patch, namespace=namespace, patch_type=PatchType.MERGE)
    start_operator(namespace)
    wait_until(lambda: status(kube, namespace).get("revision") == candidate, timeout=30)
    assert image_of(kube, namespace, "app-primary") == "app:2"  # not copied unanalysed
    wait_until(lambda: phase(kube, namespace) == "Succeeded", timeout=90)
    wait_until(lambda: image_of(kube, namespace, "app-primary") == "app:3", timeout=30)
    assert canary_events(kube, namespace).count("NewRevision") == 2


def _promote(kube: Client, ns: str) -> None:
    """`canaryctl promote` writes this annotation; written directly to stay CLI-agnostic."""
    _command(kube, ns, "promote")


def _command(kube: Client, ns: str, action: str) -> None:
    """`canaryctl <action>` writes this annotation (written directly, CLI-agnostic)."""
    command = {"action": action, "full": False, "id": f"t{time.time_ns()}"}
    patch = {"metadata": {"annotations": {"canaryctl.dev/command": json.dumps(command)}}}
    kube.patch(Canary, "app", patch, namespace=ns, patch_type=PatchType.MERGE)


def test_two_operators_exactly_one_acts_and_the_other_takes_over_when_it_is_killed(
    kube: Client, namespace: str, start_operator
) -> None:
    pair_setup(kube, namespace)
    first = start_operator(namespace, wait=False)
    second = start_operator(namespace, wait=False)
    first.wait_ready()
    second.wait_ready()
    wait_until(lambda: first.leads() or second.leads(), timeout=20)
    leader, standby = (first, second) if first.leads() else (second, first)
    assert not standby.leads()
    canary(kube, namespace, pair_spec([{"setWeight": 50}, {"pause": {}}]))
    wait_until(lambda: phase(kube, namespace) == "Paused", timeout=60)
    assert (standby.metric("canaryctl_reconcile_duration_seconds_count") or 0) == 0
    leader.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(standby.leads, timeout=20)
    assert time.monotonic() - killed_at < 3.0 + 3.0  # lease time plus one renewal round
    _promote(kube, namespace)
    wait_until(lambda: phase(kube, namespace) == "Succeeded", timeout=60)
    _steps_once(kube, namespace)


# --- managed mode with the weight routers ----------------------------------------------

WEIGHT_ROUTERS = {
    "nginx": {"kind": "nginx", "ingress": "app"},
    "istio": {"kind": "istio", "virtualService": "app"},
    "gateway": {"kind": "gateway", "httproute": "app"},
}


def route_object(kind: str) -> dict[str, Any]:
    """The user's routing object, naming the Service `app` (as Flagger users write it)."""
    if kind == "nginx":
        return app_ingress()
    if kind == "istio":
        return {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "app"},
            "spec": {"hosts": ["app"], "http": [{"name": "main",
                                                 "route": [{"destination": {"host": "app"}}]}]},
        }  # fmt: skip
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "app"},
        "spec": {"parentRefs": [{"name": "public"}],
                 "rules": [{"backendRefs": [{"name": "app", "port": 80}]}]},
    }  # fmt: skip


def backends(kube: Client, ns: str, kind: str) -> dict[str, int]:
    """Service -> percent of traffic, as the routing objects in the cluster say."""
    if kind == "nginx":
        rule = kube.get(Ingress, "app", namespace=ns).spec.rules[0]
        out = {rule.http.paths[0].backend.service.name: 100}
        can = found(kube, Ingress, "app-canary", ns)
        if can is None:
            return out
        weight = int(can.metadata.annotations["nginx.ingress.kubernetes.io/canary-weight"])
        name = can.spec.rules[0].http.paths[0].backend.service.name
        return {next(iter(out)): 100 - weight, name: weight}
    if kind == "istio":
        route = kube.get(VirtualService, "app", namespace=ns).to_dict()["spec"]["http"][-1]
        pairs = [(d["destination"]["host"].split(".")[0], d.get("weight")) for d in route["route"]]
    else:
        rule = kube.get(HTTPRoute, "app", namespace=ns).to_dict()["spec"]["rules"][-1]
        pairs = [(b["name"], b.get("weight")) for b in rule["backendRefs"]]
    if len(pairs) == 1:
        return {pairs[0][0]: 100}  # a lone backend takes everything, whatever its weight
    return {name: weight or 0 for name, weight in pairs}


def selector(kube: Client, ns: str, name: str) -> dict[str, str] | None:
    svc = found(kube, Service, name, ns)
    return None if svc is None else dict(svc.spec.selector or {})


PRIMARY_PODS = {"app": "app", "track": "main-primary"}
TARGET_PODS = {"app": "app", "track": "main"}


@pytest.mark.parametrize("kind", list(WEIGHT_ROUTERS))
def test_managed_mode_with_a_weight_router_routes_primary_and_target_at_each_step(
    kube: Client, namespace: str, start_operator, installed_crds: list[str], kind: str
) -> None:
    """A bad image rolls back, a good one is promoted, the routes name the primary's
    Service (`app`, pointed at the primary) and `app-canary` (the target) at each step."""
    managed_setup(kube, namespace)
    kube.create(codecs.from_dict(route_object(kind)), namespace=namespace)
    start_operator(namespace)
    spec = managed_spec([{"setWeight": 50}, {"pause": {}}], router=WEIGHT_ROUTERS[kind],
                        drainDelay="0s")  # fmt: skip
    canary(kube, namespace, spec)
    # initialised: `app` selects the primary's pods, the target is drained and at 0
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    assert selector(kube, namespace, "app") == PRIMARY_PODS
    assert selector(kube, namespace, "app-primary") == PRIMARY_PODS
    assert selector(kube, namespace, "app-canary") == TARGET_PODS
    assert backends(kube, namespace, kind) == {"app": 100}

    # a crash-looping image fails the health gate: back to the primary, which kept app:1
    set_image(kube, namespace, "app", "app:bad", labels=CRASH)
    wait_until(lambda: phase(kube, namespace) == "RolledBack", timeout=60)
    # the status is stored before the router's cleanup removes the canary backend
    wait_until(lambda: backends(kube, namespace, kind) == {"app": 100}, timeout=15)
    assert selector(kube, namespace, "app") == PRIMARY_PODS
    assert image_of(kube, namespace, "app-primary") == "app:1"
    assert replicas(kube, namespace, "app-primary") == (2, 2)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)

    # a good image: 50% to the target through app-canary, the rest to the primary
    set_image(kube, namespace, "app", "app:2", labels={"canaryctl.dev/simulate": None})
    wait_until(lambda: phase(kube, namespace) == "Paused", timeout=60)
    assert backends(kube, namespace, kind) == {"app": 50, "app-canary": 50}
    assert selector(kube, namespace, "app") == PRIMARY_PODS
    _promote(kube, namespace)
    wait_until(lambda: phase(kube, namespace) == "Succeeded", timeout=60)
    # promoted: the template is copied into the primary, `app` routed back to it, the
    # target drained and scaled to 0
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    assert image_of(kube, namespace, "app-primary") == "app:2"
    assert replicas(kube, namespace, "app-primary") == (2, 2)
    assert selector(kube, namespace, "app") == PRIMARY_PODS
    wait_until(lambda: backends(kube, namespace, kind) == {"app": 100}, timeout=15)
    reasons = wait_until(
        lambda: "PrimaryUpdated" in (r := canary_events(kube, namespace)) and r, timeout=10
    )
    assert reasons.count("NewRevision") == 2 and reasons.count("PrimaryUpdated") == 1

    # deleting the Canary: the target serves, `app` selects as the user wrote it
    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=60)
    assert replicas(kube, namespace, "app") == (2, 2)
    assert selector(kube, namespace, "app") == {"app": "app"}
    assert selector(kube, namespace, "app-primary") is None
    assert selector(kube, namespace, "app-canary") is None
    assert backends(kube, namespace, kind) == {"app": 100}


def test_deleting_a_canary_after_a_rollback_keeps_the_good_primary_serving(
    kube: Client, namespace: str, start_operator
) -> None:
    """A rolled-back target still carries the crash-looping template: the finalizer does
    not wait for it. The Canary goes at once, the primary (the good version) keeps serving
    behind `app` and outlives the Canary, the target stays at 0."""
    managed_setup(kube, namespace)
    start_operator(namespace)
    canary(kube, namespace, managed_spec())
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    set_image(kube, namespace, "app", "app:bad", labels=CRASH)
    wait_until(lambda: phase(kube, namespace) == "RolledBack", timeout=60)
    kube.delete(Canary, "app", namespace=namespace)
    asked = time.monotonic()
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=30)
    # well within health.readyDeadline (20s): no wait on the version known bad
    assert time.monotonic() - asked < 10
    primary = kube.get(Deployment, "app-primary", namespace=namespace)
    assert not primary.metadata.ownerReferences  # the garbage collector leaves it
    time.sleep(2)  # ... which it would have done by now
    assert replicas(kube, namespace, "app-primary") == (2, 2)
    assert image_of(kube, namespace, "app-primary") == "app:1"
    assert replicas(kube, namespace, "app") == (0, 0)
    # the user's Service serves from the good version only
    assert selector(kube, namespace, "app") == {"app": "app"}
    assert workloads.count_serving(kube, [("app", namespace)], namespace, PRIMARY_PODS) == 2
    assert workloads.count_serving(kube, [("app", namespace)], namespace, TARGET_PODS) == 0
    assert selector(kube, namespace, "app-primary") is None
    assert selector(kube, namespace, "app-canary") is None
    reasons = canary_events(kube, namespace)
    assert "PrimaryKept" in reasons and "Finalized" in reasons


def test_a_restarted_operator_keeps_the_drain_wait_of_the_target_from_the_status(
    kube: Client, namespace: str, start_operator
) -> None:
    """Managed mode, weight router: the target's drain wait before it goes back to 0 starts
    once, kept in the Canary's status; an operator killed meanwhile and started after
    drainDelay scales the target down at once instead of waiting drainDelay again."""
    drain = 15.0
    managed_setup(kube, namespace)
    kube.create(codecs.from_dict(route_object("nginx")), namespace=namespace)
    op = start_operator(namespace)
    spec = managed_spec(router=WEIGHT_ROUTERS["nginx"], drainDelay="0s")
    canary(kube, namespace, spec)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    set_image(kube, namespace, "app", "app:bad", labels=CRASH)
    wait_until(lambda: phase(kube, namespace) == "RolledBack", timeout=60)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    patch = {"spec": {"drainDelay": f"{drain:g}s"}}
    kube.patch(Canary, "app", patch, namespace=namespace, patch_type=PatchType.MERGE)
    # a GitOps tool writes the target's replicas back: the operator drains and retires it
    kube.patch(Deployment, "app", {"spec": {"replicas": 2}}, namespace=namespace)
    since = wait_until(lambda: status(kube, namespace).get("drainedSince"), timeout=30)
    op.kill(signal.SIGKILL)
    assert replicas(kube, namespace, "app")[0] == 2  # still waiting when killed
    time.sleep(max(since + drain + 1 - time.time(), 0))
    start_operator(namespace)
    restarted = time.monotonic()
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    assert time.monotonic() - restarted < drain / 2  # not a second drainDelay
    assert selector(kube, namespace, "app") == PRIMARY_PODS
    # cleared once the target is at 0 (the next retirement waits afresh)
    wait_until(lambda: "drainedSince" not in status(kube, namespace), timeout=10)


# --- deletion: what keeps serving --------------------------------------------------------


def _kept(kube: Client, ns: str) -> dict[str, str]:
    """The primary outlives the Canary: no owner reference, marked kept-for; its annotations."""
    primary = kube.get(Deployment, "app-primary", namespace=ns)
    assert not primary.metadata.ownerReferences  # the garbage collector leaves it
    annotations = dict(primary.metadata.annotations or {})
    assert annotations.get("canaryctl.dev/kept-for")
    return annotations


@pytest.mark.parametrize("on_delete", ["default", "HandOver"])
def test_deleting_a_managed_canary_mid_rollout_keeps_the_analysed_primary_unless_asked(
    kube: Client, namespace: str, start_operator, on_delete: str
) -> None:
    """The target runs a template whose analysis never ended: by default the primary (the
    last promoted version) keeps serving at full capacity and the target goes to 0; the
    annotation `canaryctl.dev/on-delete: HandOver` hands the traffic to the target."""
    managed_setup(kube, namespace)
    start_operator(namespace)
    # The hand-over waits for the target at most health.readyDeadline after the deletion
    # (the rollback's drain comes first): room for a loaded machine.
    spec = managed_spec([{"setWeight": 50}, {"pause": {}}], drainDelay="0s",
                        health={"readyDeadline": "90s"})  # fmt: skip
    canary(kube, namespace, spec)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    set_image(kube, namespace, "app", "app:2")
    wait_until(lambda: phase(kube, namespace) == "Paused", timeout=60)
    if on_delete == "HandOver":
        kube.patch(Canary, "app", {"metadata": {"annotations": {
            "canaryctl.dev/on-delete": "HandOver"}}}, namespace=namespace,
            patch_type=PatchType.MERGE)  # fmt: skip
    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=90)
    reasons = canary_events(kube, namespace)
    assert "Deleting" in reasons and "Finalized" in reasons
    if on_delete == "HandOver":
        assert "PrimaryKept" not in reasons
        assert (
            replicas(kube, namespace, "app") == (2, 2)
            and image_of(kube, namespace, "app") == "app:2"
        )
        wait_until(lambda: replicas(kube, namespace, "app-primary") is None, timeout=30)
        return
    assert "PrimaryKept" in reasons
    _kept(kube, namespace)
    time.sleep(2)  # the garbage collector would have deleted an owned primary by now
    assert replicas(kube, namespace, "app-primary") == (2, 2)
    assert image_of(kube, namespace, "app-primary") == "app:1"
    assert replicas(kube, namespace, "app") == (0, 0)
    assert workloads.count_serving(kube, [("app", namespace)], namespace, PRIMARY_PODS) == 2
    assert workloads.count_serving(kube, [("app", namespace)], namespace, TARGET_PODS) == 0


def test_deleting_a_managed_canary_with_an_invalid_spec_keeps_the_primary_serving(
    kube: Client, namespace: str, start_operator
) -> None:
    """A spec the operator refuses cannot drive the usual release; the garbage collector
    must still not take the primary (owned by the Canary) while the target is at 0."""
    managed_setup(kube, namespace)
    start_operator(namespace)
    canary(kube, namespace, managed_spec())
    wait_until(lambda: replicas(kube, namespace, "app-primary") == (2, 2), timeout=30)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    # valid for the schema, refused by the operator (managed mode has no DestinationRule)
    invalid = {"kind": "istio", "virtualService": "vs", "destinationRule": "dr"}
    kube.patch(Canary, "app", {"spec": {"router": invalid}}, namespace=namespace,
               patch_type=PatchType.MERGE)  # fmt: skip
    wait_until(lambda: "InvalidSpec" in canary_events(kube, namespace), timeout=30)
    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=30)
    _kept(kube, namespace)
    time.sleep(2)
    assert replicas(kube, namespace, "app-primary") == (2, 2)
    assert replicas(kube, namespace, "app") == (0, 0)
    assert workloads.count_serving(kube, [("app", namespace)], namespace, PRIMARY_PODS) == 2
    events = [e for e in kube.list(Event, namespace=namespace)
              if e.involvedObject.kind == "Canary" and e.reason == "PrimaryKept"]  # fmt: skip
    assert events and "router.destinationRule" in events[0].message
    assert "app-primary" in events[0].message


def _canary_routes(kube: Client, ns: str) -> tuple[bool, int | None]:
    """(service/app-canary exists, the canary Ingress's weight or None without one); the
    Service read first: once it is gone it stays gone, so a weight read after it is one
    the routes had while it was gone."""
    service_left = found(kube, Service, "app-canary", ns) is not None
    ingress = found(kube, Ingress, "app-canary", ns)
    if ingress is None:
        return service_left, None
    weight = (ingress.metadata.annotations or {}).get("nginx.ingress.kubernetes.io/canary-weight")
    return service_left, int(weight or 0)


def _replace_operator_and_invalidate(
    kube: Client, ns: str, op: Any, start_operator, routes: dict[str, Any] | None = None
) -> None:
    """SIGKILL the operator, make the spec invalid in a way the schema accepts (managed
    mode refuses DestinationRule subsets), optionally overwrite `status.routes` (with no
    operator running, which would write them back), and start a new process: it never saw
    a valid spec, so only the Canary's status can tell it which routes to reset."""
    op.kill(signal.SIGKILL)
    invalid = {"kind": "istio", "ingress": None, "virtualService": "vs", "destinationRule": "dr"}
    kube.patch(Canary, "app", {"spec": {"router": invalid}}, namespace=ns,
               patch_type=PatchType.MERGE)  # fmt: skip
    if routes is not None:
        kube.patch(Canary.Status, "app", {"status": {"routes": routes}}, namespace=ns,
                   patch_type=PatchType.MERGE)  # fmt: skip
    start_operator(ns)
    wait_until(lambda: "InvalidSpec" in canary_events(kube, ns), timeout=30)


def test_a_restarted_operator_resets_the_routes_of_a_canary_deleted_with_an_invalid_spec(
    kube: Client, namespace: str, start_operator
) -> None:
    """Managed mode, nginx, mid-rollout at 50%: the routes are kept in the status, so an
    operator that never saw the valid spec still puts them back on the primary before the
    target goes to 0 and `app-canary` goes with the Canary (no share routed to a Service
    that is gone); the primary serves with its full replicas."""
    managed_setup(kube, namespace)
    kube.create(codecs.from_dict(route_object("nginx")), namespace=namespace)
    op = start_operator(namespace)
    spec = managed_spec([{"setWeight": 50}, {"pause": {}}], router=WEIGHT_ROUTERS["nginx"],
                        drainDelay="0s")  # fmt: skip
    canary(kube, namespace, spec)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    assert status(kube, namespace)["routes"] == {
        "kind": "nginx", "ingress": "app", "service": "app", "stable": "app-primary",
        "canary": "app",
    }  # fmt: skip
    set_image(kube, namespace, "app", "app:2")
    wait_until(lambda: phase(kube, namespace) == "Paused", timeout=60)
    assert backends(kube, namespace, "nginx") == {"app": 50, "app-canary": 50}
    _replace_operator_and_invalidate(kube, namespace, op, start_operator)
    assert _canary_routes(kube, namespace) == (True, 50)  # refused: nothing changed
    # The garbage collector deletes app-canary once the Canary is gone, not before
    owners = kube.get(Service, "app-canary", namespace=namespace).metadata.ownerReferences
    assert [o.kind for o in owners or ()] == ["Canary"]

    kube.delete(Canary, "app", namespace=namespace)
    seen = []
    while not status(kube, namespace).get("gone"):
        seen.append(_canary_routes(kube, namespace))
        assert len(seen) < 200, seen[-5:]  # 30 s at most
        time.sleep(0.15)
    # never a moment with app-canary gone and a weight on it; by the time the Canary is
    # gone (and the garbage collector may take app-canary), the canary Ingress is gone
    assert all(weight in (None, 0) for left, weight in seen if not left), seen
    assert _canary_routes(kube, namespace)[1] is None
    assert backends(kube, namespace, "nginx") == {"app": 100}
    assert replicas(kube, namespace, "app-primary") == (2, 2)
    assert replicas(kube, namespace, "app") == (0, 0)
    assert workloads.count_serving(kube, [("app", namespace)], namespace, PRIMARY_PODS) == 2
    _kept(kube, namespace)
    finalized = [e.message for e in kube.list(Event, namespace=namespace)
                 if e.involvedObject.kind == "Canary" and e.reason == "Finalized"]  # fmt: skip
    assert finalized and "routes reset to the primary" in finalized[0]
    assert "router.destinationRule" in finalized[0]


def test_unreadable_routes_in_the_status_hold_the_deletion_and_name_the_field(
    kube: Client, namespace: str, start_operator
) -> None:
    """Neither the spec nor `status.routes` (edited by hand, valid for the schema) says
    which routes to reset: the Canary is kept, with a RoutesUnknown Warning naming the
    field, until the record is removed; the primary serves throughout."""
    managed_setup(kube, namespace)
    op = start_operator(namespace)
    canary(kube, namespace, managed_spec())
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    wait_until(lambda: status(kube, namespace).get("routes"), timeout=10)
    garbage = {"kind": "nginx", "ingress": None}  # the nginx router needs its Ingress
    _replace_operator_and_invalidate(kube, namespace, op, start_operator, garbage)
    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: "RoutesUnknown" in canary_events(kube, namespace), timeout=30)
    time.sleep(2)  # held, and told once
    assert not status(kube, namespace).get("gone")
    assert canary_events(kube, namespace).count("RoutesUnknown") == 1
    held = [e.message for e in kube.list(Event, namespace=namespace)
            if e.involvedObject.kind == "Canary" and e.reason == "RoutesUnknown"]  # fmt: skip
    assert "status.routes.ingress" in held[0] and "router.destinationRule" in held[0]
    assert replicas(kube, namespace, "app-primary") == (2, 2)
    assert selector(kube, namespace, "app-canary") == TARGET_PODS  # not deleted yet

    kube.patch(Canary.Status, "app", {"status": {"routes": None}}, namespace=namespace,
               patch_type=PatchType.MERGE)  # fmt: skip
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=30)
    _kept(kube, namespace)
    assert replicas(kube, namespace, "app-primary") == (2, 2)


# --- refused writes -----------------------------------------------------------------------


def test_a_failed_guard_is_a_conflict_on_the_real_api_server(kube: Client, namespace: str) -> None:
    """The 422 of a JSON-patch `test` op that does not hold is a race, not a refusal."""
    from canaryctl.errors import ConflictError

    deploy(kube, namespace, "app", 1, "main")
    with pytest.raises(ConflictError):
        workloads.scale(kube, "app", namespace, 3, generation=99)


def test_a_write_an_admission_policy_refuses_is_told_and_retried_with_backoff(
    kube: Client, namespace: str, start_operator
) -> None:
    """A real ValidatingAdmissionPolicy forbids scaling `app` to 0: the operator names the
    object and the policy's message (Event, Ready condition) and retries with a capped
    backoff, not five times a second; once the policy goes, the target goes to 0."""
    from lightkube.resources.admissionregistration_v1 import (
        ValidatingAdmissionPolicy,
        ValidatingAdmissionPolicyBinding,
    )

    name = f"keep-app-up-{namespace}"
    policy = codecs.from_dict({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"],
                "resources": ["deployments"]}]},
            "validations": [{
                "expression": "object.metadata.name != 'app' || object.spec.replicas > 0",
                "message": "app must keep a replica (team policy)"}],
        },
    })  # fmt: skip
    binding = codecs.from_dict({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}},
    })  # fmt: skip
    managed_setup(kube, namespace)
    kube.create(policy)
    kube.create(binding)
    try:

        def enforced() -> bool:
            try:
                kube.patch(Deployment, "app", {"spec": {"replicas": 0}}, namespace=namespace,
                           patch_type=PatchType.MERGE, dry_run=True)  # fmt: skip
            except ApiError as exc:
                return exc.status.code == 422
            return False

        wait_until(enforced, timeout=30)  # the API server has loaded the policy
        op = start_operator(namespace)
        assert "watches synced" in op.get("/readyz", op.health_port)[1]
        canary(kube, namespace, managed_spec())
        wait_until(lambda: replicas(kube, namespace, "app-primary") == (2, 2), timeout=30)

        def denied() -> dict[str, Any] | None:
            conditions = status(kube, namespace).get("conditions") or []
            ready = next((c for c in conditions if c["type"] == "Ready"), {})
            return ready if ready.get("reason") == "WriteDenied" else None

        ready = wait_until(denied, timeout=30)
        first = time.monotonic()
        assert "deployment/app" in ready["message"] and name in ready["message"]
        assert "team policy" in ready["message"]
        events = [e for e in kube.list(Event, namespace=namespace)
                  if e.involvedObject.kind == "Canary" and e.reason == "WriteDenied"]  # fmt: skip
        assert events and name in events[0].message and "team policy" in events[0].message
        time.sleep(8)
        refusals = op.metric("canaryctl_reconcile_errors_total", error="WriteDenied") or 0
        # backoff 2, 5, 10 s: at most 4 tries in the first 8 s (5 a second would be 40)
        assert 1 <= refusals <= 4, (refusals, time.monotonic() - first)
        assert replicas(kube, namespace, "app") == (2, 2)  # refused: still serving
    finally:
        kube.delete(ValidatingAdmissionPolicyBinding, name)
        kube.delete(ValidatingAdmissionPolicy, name)
    # the next try (backoff <= 10 s now) goes through; the condition says so again
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=40)
    wait_until(lambda: denied() is None, timeout=20)


def user_hpa(ns: str, low: int, high: int) -> HorizontalPodAutoscaler:
    """The user's HPA `app` scaling deployment/app on CPU."""
    return HorizontalPodAutoscaler.from_dict({
        "metadata": {"name": "app", "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
            "minReplicas": low, "maxReplicas": high,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 70}}}],
        },
    })  # fmt: skip


def hpa_range(kube: Client, ns: str, name: str) -> tuple[str, int, int] | None:
    """(scale target, min, max) of an HPA, None when it does not exist."""
    hpa = found(kube, HorizontalPodAutoscaler, name, ns)
    if hpa is None:
        return None
    return hpa.spec.scaleTargetRef.name, hpa.spec.minReplicas, hpa.spec.maxReplicas


def test_managed_mode_mirrors_the_targets_hpa_onto_the_primary(
    kube: Client, namespace: str, start_operator
) -> None:
    """An autoscaled target keeps its autoscaling when onboarded: `app-primary` gets the
    user's HPA as `<hpa>-primary`, kept in step, acted on by the real HPA controller, kept
    through a promotion and deleted with the Canary. The user's HPA leaves the target at 0
    alone. With the replicas router the HPA is refused by name and nothing is created."""
    managed_setup(kube, namespace)
    kube.create(codecs.from_dict(route_object("nginx")), namespace=namespace)
    kube.create(user_hpa(namespace, 2, 4), namespace=namespace)
    start_operator(namespace)
    canary(kube, namespace, managed_spec())  # the replicas router
    told = wait_until(lambda: canary_messages(kube, namespace, "InvalidSpec"), timeout=30)
    assert "router.kind" in told[0] and "horizontalpodautoscaler/app" in told[0]
    assert replicas(kube, namespace, "app-primary") is None
    assert replicas(kube, namespace, "app") == (2, 2)
    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=30)

    spec = managed_spec([{"setWeight": 50}, {"pause": {}}], router=WEIGHT_ROUTERS["nginx"],
                        drainDelay="0s")  # fmt: skip
    canary(kube, namespace, spec)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    assert wait_until(lambda: hpa_range(kube, namespace, "app-primary"), timeout=10) == (
        "app-primary",
        2,
        4,
    )
    mirror = kube.get(HorizontalPodAutoscaler, "app-primary", namespace=namespace)
    assert (
        mirror.to_dict()["spec"]["metrics"]
        == user_hpa(namespace, 2, 4).to_dict()["spec"]["metrics"]
    )
    # the user changes the HPA: the mirror follows, the HPA controller scales the primary,
    # and the user's HPA leaves the target at 0 (it would scale it to 3 otherwise)
    kube.patch(HorizontalPodAutoscaler, "app", {"spec": {"minReplicas": 3, "maxReplicas": 5}},
               namespace=namespace, patch_type=PatchType.MERGE)  # fmt: skip
    wait_until(lambda: hpa_range(kube, namespace, "app-primary") == ("app-primary", 3, 5), 10)
    wait_until(lambda: replicas(kube, namespace, "app-primary") == (3, 3), timeout=60)
    assert replicas(kube, namespace, "app") == (0, 0)
    assert hpa_range(kube, namespace, "app") == ("app", 3, 5)

    # a promotion copies the template and keeps the HPA's replica count
    set_image(kube, namespace, "app", "app:2")
    wait_until(lambda: phase(kube, namespace) == "Paused", timeout=60)
    _promote(kube, namespace)
    wait_until(lambda: phase(kube, namespace) == "Succeeded", timeout=60)
    wait_until(lambda: replicas(kube, namespace, "app") == (0, 0), timeout=30)
    assert image_of(kube, namespace, "app-primary") == "app:2"
    assert replicas(kube, namespace, "app-primary") == (3, 3)

    # deleting the Canary: the target takes over at the primary's count, the mirror goes
    kube.delete(Canary, "app", namespace=namespace)
    wait_until(lambda: status(kube, namespace).get("gone"), timeout=60)
    assert replicas(kube, namespace, "app") == (3, 3)
    assert hpa_range(kube, namespace, "app-primary") is None
    assert hpa_range(kube, namespace, "app") == ("app", 3, 5)

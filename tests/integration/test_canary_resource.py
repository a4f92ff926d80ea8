"""The Canary resource on the real API server: the generated CRD's validation, the
CanaryStore backend (status subresource with optimistic concurrency, commands, conditions),
the Engine driving a Canary, and the CLI on Canary resources."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap

from canaryctl.core.conditions import invalid_spec_conditions
from canaryctl.core.models import CanaryStatus, CheckRecord, Phase, parse_spec
from canaryctl.driver.engine import Engine
from canaryctl.errors import ConflictError, SpecError
from canaryctl.kube import manifests
from canaryctl.kube.canary import Canary, flat_spec
from canaryctl.kube.canary_store import CanaryStore
from canaryctl.kube.store import COMMAND, ConfigMapStore, Record
from canaryctl.testenv import ClusterState
from helpers import EXAMPLES, replicas, wait_until

pytestmark = pytest.mark.integration
SEED = EXAMPLES / "pulpocon-app"
CLI = str(Path(sys.executable).with_name("canaryctl"))
SEED_CANARY = yaml.safe_load((EXAMPLES / "canary-resource" / "pulpocon-app.yaml").read_text())
MANAGED = yaml.safe_load((EXAMPLES / "canary-resource" / "managed.yaml").read_text())


def cli(cluster: ClusterState, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "COLUMNS": "200"}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def canary(name: str = "pulpocon-app", **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SEED_CANARY)
    doc["metadata"] = {"name": name}
    doc["spec"].update(spec)
    return doc


def create(kube: Client, doc: dict[str, Any], ns: str) -> Any:
    return kube.create(Canary.from_dict(doc), namespace=ns)


def deploy_seed(kube: Client, ns: str) -> None:
    manifests.apply(kube, manifests.load([SEED / "service.yaml", SEED / "app-v1.yaml"]), ns)
    wait_until(lambda: replicas(kube, ns, "pulpocon-app-v1") == (10, 10), timeout=60)
    manifests.apply(kube, manifests.load([SEED / "app-v2.yaml"]), ns)


# --- the CRD -----------------------------------------------------------------------------


def test_testenv_installs_the_canary_crd(kube: Client) -> None:
    crd = kube.get(CustomResourceDefinition, "canaries.canaryctl.dev")
    assert crd.spec.names.shortNames == ["cny"]
    assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)


@pytest.mark.parametrize(
    "doc",
    [
        SEED_CANARY,
        MANAGED,
        canary(steps=[{"setWeight": 10}, {"pause": {}}, {"pause": {"duration": 30}}]),
        canary(steps=[{"setWeight": 20}, {"pause": {"duration": "500ms"}}, {"setWeight": 30}]),
        canary(
            router={"kind": "nginx", "ingress": "app", "header": {"X-Track": "canary"}},
            steps=[{"setCanaryScale": 20}, {"pause": {}}, {"setWeight": 100}],
        ),
        canary(
            router={"kind": "istio", "virtualService": "vs", "destinationRule": "dr"},
            canaryNamespace="other",
            canary="pulpocon-app-v1",
            maxWeight=50,
            steps=[{"setWeight": 25}, {"setWeight": 50}, {"setWeight": 100}],
            scaleDownDelay="10m",
            analysis={"prometheus": {"url": "http://prometheus:9090"}, "judge": "sequential"},
        ),
    ],
    ids=["seed", "managed", "pause-forms", "pause-more-forms", "nginx-ab", "istio-cross-ns"],
)
def test_valid_canaries_are_accepted_by_the_api_server_and_the_models(
    kube: Client, namespace: str, doc: dict[str, Any]
) -> None:
    created = create(kube, doc, namespace)
    parse_spec(flat_spec(created))  # what the server stored is what the models accept


# (spec changes, the field the API server names, the field parse_spec names)
INVALID = [
    ({"router": {"kind": "linkerd"}}, "spec.router.kind", "router.kind"),
    ({"steps": [{"setWeight": -5}]}, "spec.steps[0].setWeight", "steps[0].setWeight"),
    ({"steps": [{"setWeight": 101}]}, "spec.steps[0].setWeight", "steps[0].setWeight"),
    ({"steps": [{"setWeight": 50}, {"setWeight": 10}]}, "spec.steps", "steps[1].setWeight"),
    (
        {"steps": [{"setWeight": 100}, {"pause": {"duration": "1m"}}]},
        "spec.steps",
        "steps[0].setWeight",
    ),
    ({"steps": [{"setWeight": 60}], "maxWeight": 50}, "spec.steps", "steps[0].setWeight"),
    ({"steps": [{"setWeight": 10, "pause": {}}]}, "spec.steps[0]", "steps[0]"),
    (
        {"steps": [{"pause": {"duration": "3 minutes"}}]},
        "spec.steps[0].pause.duration",
        "steps[0].pause",
    ),
    ({"steps": [{"pause": {"duration": "0s"}}]}, "spec.steps[0].pause.duration", "steps[0].pause"),
    ({"steps": [{"pause": {"duration": 0}}]}, "spec.steps[0].pause.duration", "steps[0].pause"),
    ({"health": {"readyDeadline": "0s"}}, "spec.health.readyDeadline", "health.readyDeadline"),
    ({"steps": []}, "spec.steps", "steps"),
    ({"targetRef": {"kind": "Deployment", "name": "app"}}, "spec.targetRef", "targetRef"),
    ({"targetRef": {"kind": "StatefulSet", "name": "app"}}, "spec.targetRef.kind", None),
    ({"canary": "pulpocon-app-v1"}, "spec.canary", "canary"),
    ({"service": "my_svc"}, "spec.service", "service"),
    ({"router": {"kind": "nginx"}}, "spec.router.ingress", "router.ingress"),
    ({"router": {"header": {"X-Track": "canary"}}}, "spec.router.kind", "router.header"),
    ({"router": {"kind": "gateway", "httproute": "r", "mirror": 10}}, "spec.router.mirror", None),
    # Mirroring is a dark launch: without a setCanaryScale step before the first setWeight
    # it could never run (a CEL rule over two fields).
    (
        {"router": {"kind": "istio", "virtualService": "vs", "mirror": 10}},
        "spec.router.mirror",
        "router.mirror",
    ),
    ({"replicaMode": "half"}, "spec.replicaMode", "replicaMode"),
    ({"health": {"maxRestarts": -1}}, "spec.health.maxRestarts", "health.maxRestarts"),
    ({"health": {"readyDeadline": "soon"}}, "spec.health.readyDeadline", None),
    ({"steps": [{"setCanaryScale": 20}]}, "spec.steps", "steps[0].setCanaryScale"),
    ({"canaryNamespace": "other"}, "spec.canaryNamespace", "canaryNamespace"),
]


@pytest.mark.parametrize(("change", "server_field", "model_field"), INVALID)
def test_invalid_canaries_are_refused_by_the_api_server_naming_the_field(
    kube: Client, namespace: str, change: dict[str, Any], server_field: str, model_field: str | None
) -> None:
    doc = canary(**change)
    with pytest.raises(ApiError) as refused:
        create(kube, doc, namespace)
    assert refused.value.status.code == 422
    message = refused.value.status.message
    assert f"{server_field}:" in message or f"{server_field} " in message, message
    # The models refuse the same spec (as `rollout -f` and the operator do), naming the
    # field (None: the CLI names an enclosing field, e.g. the router's kind).
    with pytest.raises(SpecError) as caught:
        parse_spec(flat_spec(doc))
    if model_field is not None:
        assert caught.value.field == model_field


def test_the_short_pause_form_is_for_cli_files_only(kube: Client, namespace: str) -> None:
    doc = canary(steps=[{"setWeight": 10}, {"pause": "30s"}])
    parse_spec(flat_spec(doc))  # `rollout -f` accepts it ...
    with pytest.raises(ApiError) as refused:  # ... the resource wants {duration: 30s}
        create(kube, doc, namespace)
    assert "spec.steps[1].pause" in refused.value.status.message


def test_a_name_that_is_not_a_dns_label_is_refused(kube: Client, namespace: str) -> None:
    with pytest.raises(ApiError) as refused:
        create(kube, canary(name="app.v2"), namespace)
    assert "metadata.name must be a DNS-1123 label" in refused.value.status.message


# --- the CanaryStore backend ----------------------------------------------------------


def test_status_round_trips_through_the_status_subresource(kube: Client, namespace: str) -> None:
    create(kube, canary(), namespace)
    store = CanaryStore(kube, clock=lambda: 1_800_000_000.0)
    record = store.get("pulpocon-app", namespace)
    assert record is not None and record.status is None and record.generation == 1
    spec = parse_spec(record.spec)
    status = CanaryStatus(
        phase=Phase.PROGRESSING,
        step_index=1,
        weight=10,
        started_at=1_799_999_990.5,
        observed_spec_hash=spec.fingerprint,
        checks={"canary-ready": CheckRecord(time=1.5, name="canary-ready", passed=True)},
        history=[CheckRecord(time=1.5, name="canary-ready", passed=True, value=None)],
        analysis_state={"judge": {"logE": [0.1, -0.2], "n": 3}, "none": None},
        last_command_id="abc",
    )
    record.status = status.to_dict()
    stored = store.update(record)
    assert CanaryStatus.from_dict(stored.status) == status, "no field pruned or changed"
    raw = kube.get(Canary, "pulpocon-app", namespace=namespace).to_dict()
    assert raw["status"]["observedGeneration"] == 1
    assert raw["status"]["step"] == "2/5" and raw["status"]["weight"] == 10
    types = {c["type"]: c for c in raw["status"]["conditions"]}
    assert types["Progressing"]["status"] == "True"
    assert types["Promoted"]["status"] == "Unknown"
    assert types["Ready"]["lastTransitionTime"] == "2027-01-15T08:00:00Z"
    assert raw["spec"] == SEED_CANARY["spec"], "the store never writes the user's spec"


def test_a_status_write_from_a_stale_read_is_a_conflict(kube: Client, namespace: str) -> None:
    create(kube, canary(), namespace)
    store = CanaryStore(kube)
    first = store.get("pulpocon-app", namespace)
    second = store.get("pulpocon-app", namespace)
    assert first is not None and second is not None
    first.status = CanaryStatus(phase=Phase.PROGRESSING, weight=10).to_dict()
    store.update(first)
    second.status = CanaryStatus(phase=Phase.ROLLED_BACK, reason="Aborted").to_dict()
    with pytest.raises(ConflictError):
        store.update(second)
    assert store.get("pulpocon-app", namespace).status["weight"] == 10  # type: ignore[union-attr]


def test_commands_are_the_same_annotation_on_the_canary(kube: Client, namespace: str) -> None:
    create(kube, canary(), namespace)
    store = CanaryStore(kube)
    record = store.send_command("pulpocon-app", namespace, "promote", full=True)
    assert record.command is not None and record.command["action"] == "promote"
    assert record.command["full"] is True
    raw = kube.get(Canary, "pulpocon-app", namespace=namespace)
    assert COMMAND in raw.metadata.annotations
    assert raw.metadata.generation == 1, "a command is not a spec change"


def test_write_conditions_reports_an_invalid_spec(kube: Client, namespace: str) -> None:
    create(kube, canary(), namespace)
    store = CanaryStore(kube)
    conditions = invalid_spec_conditions("stable", "deployment/x not found", 1, 1_800_000_000.0)
    store.write_conditions("pulpocon-app", namespace, conditions, observed_generation=1)
    record = store.get("pulpocon-app", namespace)
    assert record is not None and record.status is None, "conditions alone are no rollout"
    ready = {c["type"]: c for c in record.status_extra["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"] == "stable: deployment/x not found"


def test_engine_drives_a_canary_to_promotion_with_the_status_as_its_store(
    kube: Client, namespace: str
) -> None:
    deploy_seed(kube, namespace)
    obj = create(kube, canary(steps=[{"setWeight": 10}, {"setWeight": 100}]), namespace)
    engine = Engine.for_canary(kube, obj, record_events=False)
    assert isinstance(engine.store, CanaryStore)
    status = engine.run(interval=0.2)
    assert status.phase is Phase.SUCCEEDED
    assert replicas(kube, namespace, "pulpocon-app-v2") == (10, 10)
    assert replicas(kube, namespace, "pulpocon-app-v1") is None
    raw = kube.get(Canary, "pulpocon-app", namespace=namespace).to_dict()
    assert raw["status"]["phase"] == "Succeeded"
    assert raw["status"]["observedGeneration"] == 1
    types = {c["type"]: c["status"] for c in raw["status"]["conditions"]}
    assert types == {"Progressing": "False", "Promoted": "True", "Ready": "True"}
    assert raw["status"]["verdict"] == "Promoted"
    assert not list(
        kube.list(ConfigMap, namespace=namespace, labels={"canaryctl.dev/canary": "pulpocon-app"})
    )


# --- the CLI on Canary resources -------------------------------------------------------


def test_get_lists_canaries_and_configmap_rollouts_and_shows_which_is_which(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    create(kube, canary(), namespace)
    ConfigMapStore(kube).create(
        Record(
            name="other",
            namespace=namespace,
            spec=parse_spec(flat_spec(canary(name="other", stable="a", canary="b"))).model_dump(
                mode="json", by_alias=True
            ),
        )
    )
    run = cli(local_cluster, "get", "-n", namespace, "-o", "json")
    assert run.returncode == 0, run.stderr
    rows = {r["name"]: r["source"] for r in json.loads(run.stdout)}
    assert rows == {"pulpocon-app": "canary", "other": "configmap"}
    table = cli(local_cluster, "get", "-n", namespace)
    assert "Canary" in table.stdout and "ConfigMap" in table.stdout


def test_promote_and_abort_write_the_command_on_the_canary(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    create(kube, canary(), namespace)
    run = cli(local_cluster, "abort", "pulpocon-app", "-n", namespace)
    assert run.returncode == 0, run.stderr
    assert "canary/pulpocon-app" in run.stderr
    record = CanaryStore(kube).get("pulpocon-app", namespace)
    assert record is not None and record.command is not None
    assert record.command["action"] == "abort"
    missing = cli(local_cluster, "promote", "nothing", "-n", namespace)
    assert missing.returncode == 1 and "no rollout named nothing" in missing.stderr


def test_get_one_canary_shows_its_conditions(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    deploy_seed(kube, namespace)
    obj = create(kube, canary(), namespace)
    Engine.for_canary(kube, obj, record_events=False).start()
    store = CanaryStore(kube)
    record = store.get("pulpocon-app", namespace)
    record.status = CanaryStatus(phase=Phase.PROGRESSING, weight=10).to_dict()  # type: ignore[union-attr]
    store.update(record)  # type: ignore[arg-type]
    run = cli(local_cluster, "get", "pulpocon-app", "-n", namespace)
    assert run.returncode == 0, run.stderr
    assert "Progressing" in run.stdout and "Promoted" in run.stdout and "Ready" in run.stdout
    assert "canary/pulpocon-app" in run.stdout


def test_get_and_the_canary_status_say_it_waits_for_its_missing_canary_deployment(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    """The machine's hold reaches the Canary's status and `get`; a tick held at rest with
    the same reason writes nothing more (the resourceVersion stays). The canary Deployment
    goes after the spec was checked, before the rollout's first decision."""
    deploy_seed(kube, namespace)
    engine = Engine.for_canary(kube, create(kube, canary(), namespace), record_events=False)
    engine.start()
    kube.delete(Deployment, "pulpocon-app-v2", namespace=namespace)
    engine.tick()
    why = "canary Deployment pulpocon-app-v2 not found"
    raw = kube.get(Canary, "pulpocon-app", namespace=namespace)
    status = raw.to_dict()["status"]
    assert (status["phase"], status["holdReason"]) == ("Pending", why)
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["message"] == f"step 1, weight 0%: {why}"
    engine.tick()
    again = kube.get(Canary, "pulpocon-app", namespace=namespace)
    assert again.metadata.resourceVersion == raw.metadata.resourceVersion
    shown = cli(local_cluster, "get", "pulpocon-app", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    assert f"waiting  {why}" in shown.stdout
    assert why in cli(local_cluster, "get", "-n", namespace).stdout


def test_rollout_refuses_a_canary_that_a_canary_resource_owns(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    deploy_seed(kube, namespace)
    create(kube, canary(name="owner"), namespace)
    run = cli(local_cluster, "rollout", "--stable", "deploy/pulpocon-app-v1", "--canary",
              "deploy/pulpocon-app-v2", "--service", "pulpocon-app", "-n", namespace)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "canary/owner" in run.stderr and "operator" in run.stderr
    assert replicas(kube, namespace, "pulpocon-app-v1") == (10, 10), "nothing changed"
    assert replicas(kube, namespace, "pulpocon-app-v2")[0] == 1  # type: ignore[index]
    assert not list(
        kube.list(
            ConfigMap, namespace=namespace, labels={"app.kubernetes.io/managed-by": "canaryctl"}
        )
    )


def test_rollout_refuses_managed_mode(local_cluster: ClusterState, namespace: str) -> None:
    run = cli(local_cluster, "rollout", "-f", str(EXAMPLES / "canary-resource" / "managed.yaml"),
              "-n", namespace)  # fmt: skip
    assert run.returncode == 2
    assert "targetRef" in run.stderr and "operator" in run.stderr


def test_plan_reads_a_canary_from_the_cluster_and_changes_nothing(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    deploy_seed(kube, namespace)
    create(kube, canary(), namespace)
    run = cli(local_cluster, "plan", "--from-canary", "pulpocon-app", "-n", namespace)
    assert run.returncode == 0, run.stderr
    assert "canary/pulpocon-app" in run.stdout
    assert "then scale deployment/pulpocon-app-v1 10 -> 9" in run.stdout
    assert CanaryStore(kube).get("pulpocon-app", namespace).status is None  # type: ignore[union-attr]
    example = str(EXAMPLES / "canary-resource" / "pulpocon-app.yaml")
    from_file = cli(local_cluster, "plan", "-f", example, "-n", namespace)
    assert from_file.returncode == 0, from_file.stderr

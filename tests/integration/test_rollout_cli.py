"""`canaryctl rollout` end to end on the real control plane: the seed's workflow, its
failure modes, commands from another terminal, crashes of the CLI and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Event

from canaryctl.kube import manifests
from canaryctl.testenv import ClusterState
from helpers import EXAMPLES, replicas, wait_until

pytestmark = pytest.mark.integration
SEED = EXAMPLES / "pulpocon-app"
CLI = str(Path(sys.executable).with_name("canaryctl"))
QUICK = [
    "--stable", "deploy/pulpocon-app-v1",
    "--canary", "deploy/pulpocon-app-v2",
    "--service", "pulpocon-app",
]  # fmt: skip


def _env(cluster: ClusterState) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}


def cli(cluster: ClusterState, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would (plain output: stderr is not a terminal)."""
    return subprocess.run(
        [CLI, *args], env=_env(cluster), capture_output=True, text=True, timeout=timeout
    )


def spawn(cluster: ClusterState, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [CLI, *args], env=_env(cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def stored_status(kube: Client, ns: str, name: str = "pulpocon-app") -> dict:
    try:
        cm = kube.get(ConfigMap, f"canaryctl-{name}", namespace=ns)
    except ApiError:
        return {}
    return json.loads((cm.data or {}).get("status", "{}"))


def deploy_seed(kube: Client, ns: str, canary_labels: dict[str, str] | None = None,
                canary_annotations: dict[str, str] | None = None) -> None:  # fmt: skip
    """The seed's starting point: v1 with 10 ready replicas, v2 applied with 1 replica."""
    manifests.apply(kube, manifests.load([SEED / "service.yaml", SEED / "app-v1.yaml"]), ns)
    wait_until(lambda: replicas(kube, ns, "pulpocon-app-v1") == (10, 10), timeout=60)
    (v2,) = manifests.load([SEED / "app-v2.yaml"])
    v2.spec.template.metadata.labels.update(canary_labels or {})
    v2.spec.template.metadata.annotations.update(canary_annotations or {})
    manifests.apply(kube, [v2], ns)


def assert_rolled_back(kube: Client, ns: str) -> None:
    assert replicas(kube, ns, "pulpocon-app-v1") == (10, 10)
    wait_until(lambda: replicas(kube, ns, "pulpocon-app-v2")[0] == 0)


def test_good_canary_is_promoted_and_v1_is_removed(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    deploy_seed(kube, namespace)
    run = cli(local_cluster, "rollout", *QUICK, "-n", namespace, "--steps", "10,50,100",
              "--pause", "1s")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert replicas(kube, namespace, "pulpocon-app-v2") == (10, 10)
    assert replicas(kube, namespace, "pulpocon-app-v1") is None
    assert stored_status(kube, namespace)["phase"] == "Succeeded"
    assert "Succeeded" in run.stderr
    reasons = {e.reason for e in kube.list(Event, namespace=namespace)}
    assert {"Started", "Succeeded"} <= reasons, "transitions are recorded as Kubernetes Events"


@pytest.mark.parametrize(
    ("labels", "annotations", "reason"),
    [
        ({"canaryctl.dev/simulate": "crashloop"}, {}, "CrashLoopBackOff"),
        ({"canaryctl.dev/simulate": "unready"}, {}, "ready"),
        (
            {"canaryctl.dev/simulate": "slow-start"},
            {"canaryctl.dev/simulate-delay": "120s"},
            "ready",
        ),
    ],
    ids=["crashloop", "never-ready", "too-slow"],
)
def test_faulty_canary_is_rolled_back_with_v1_fully_restored(
    kube: Client,
    namespace: str,
    local_cluster: ClusterState,
    labels: dict[str, str],
    annotations: dict[str, str],
    reason: str,
) -> None:
    deploy_seed(kube, namespace, labels, annotations)
    run = cli(local_cluster, "rollout", *QUICK, "-n", namespace, "--ready-deadline", "8s")
    assert run.returncode == 3, run.stderr
    assert_rolled_back(kube, namespace)
    status = stored_status(kube, namespace)
    assert status["phase"] == "RolledBack"
    assert reason in status["message"], status["message"]
    assert "pulpocon-app-v2" in status["message"], "the verdict names the pods or Deployment"


def _indefinite_spec(tmp: Path, ns: str) -> Path:
    path = tmp / "canary.yaml"
    path.write_text(
        f"""
apiVersion: canaryctl.dev/v1alpha1
kind: Canary
metadata: {{name: pulpocon-app, namespace: {ns}}}
spec:
  stable: pulpocon-app-v1
  canary: pulpocon-app-v2
  service: pulpocon-app
  steps: [{{setWeight: 10}}, {{pause: {{}}}}, {{setWeight: 50}}, {{setWeight: 100}}]
"""
    )
    return path


def test_abort_from_another_terminal_rolls_back_and_exits_4(
    kube: Client, namespace: str, local_cluster: ClusterState, tmp_path: Path
) -> None:
    deploy_seed(kube, namespace)
    proc = spawn(local_cluster, "rollout", "-f", str(_indefinite_spec(tmp_path, namespace)))
    wait_until(lambda: stored_status(kube, namespace).get("phase") == "Paused", timeout=60)
    assert replicas(kube, namespace, "pulpocon-app-v2") == (1, 1)
    got = cli(local_cluster, "get", "pulpocon-app", "-n", namespace)
    assert got.returncode == 0 and "Paused" in got.stdout
    # Why it does not move, from the stored status: in the panel, the list and the JSON.
    assert "waiting for a promote command" in got.stdout
    assert "waiting for a promote command" in cli(local_cluster, "get", "-n", namespace).stdout
    listed = json.loads(
        cli(local_cluster, "get", "pulpocon-app", "-n", namespace, "-o", "json").stdout
    )
    assert listed[0]["status"]["holdReason"] == "waiting for a promote command"
    sent = cli(local_cluster, "abort", "pulpocon-app", "-n", namespace)
    assert sent.returncode == 0, sent.stderr
    assert proc.wait(timeout=60) == 4, proc.stderr.read()
    assert_rolled_back(kube, namespace)


def test_promote_from_another_terminal_approves_an_indefinite_pause(
    kube: Client, namespace: str, local_cluster: ClusterState, tmp_path: Path
) -> None:
    deploy_seed(kube, namespace)
    proc = spawn(local_cluster, "rollout", "-f", str(_indefinite_spec(tmp_path, namespace)))
    wait_until(lambda: stored_status(kube, namespace).get("phase") == "Paused", timeout=60)
    time.sleep(2)
    assert stored_status(kube, namespace)["phase"] == "Paused", "waits for a human"
    assert cli(local_cluster, "promote", "pulpocon-app", "-n", namespace).returncode == 0
    assert proc.wait(timeout=90) == 0
    assert replicas(kube, namespace, "pulpocon-app-v2") == (10, 10)


@pytest.mark.parametrize(
    "kill_when",
    [
        ("Progressing", "scale-canary", 0),
        ("Paused", None, 1),
        ("Progressing", None, 2),
        ("Promoting", None, 4),
    ],
    ids=["scaling-first-step", "paused", "second-weight", "promoting"],
)
def test_sigkill_then_rerun_resumes_and_completes(
    kube: Client,
    namespace: str,
    local_cluster: ClusterState,
    kill_when: tuple[str, str | None, int],
) -> None:
    phase, stage, step = kill_when
    deploy_seed(kube, namespace)
    args = ("rollout", *QUICK, "-n", namespace, "--steps", "10,50,100", "--pause", "3s")
    proc = spawn(local_cluster, *args)

    def reached() -> bool:
        st = stored_status(kube, namespace)
        return (
            st.get("phase") == phase
            and st.get("stepIndex", 0) >= step
            and (stage is None or st.get("stage") == stage)
        )

    wait_until(reached, timeout=90, interval=0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The killed process held the lease; a rerun on this host sees it is dead and takes over.
    started = time.monotonic()
    run = cli(local_cluster, *args)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < 60
    assert replicas(kube, namespace, "pulpocon-app-v2") == (10, 10)
    assert replicas(kube, namespace, "pulpocon-app-v1") is None
    events = [e.reason for e in kube.list(Event, namespace=namespace)]
    # Events are sent after the decision is stored, so a kill can lose one, never repeat it.
    assert events.count("Started") <= 1, "the rerun resumed instead of starting over"
    assert events.count("Succeeded") == 1


def test_a_second_concurrent_rollout_waits_instead_of_acting(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    deploy_seed(kube, namespace)
    args = ("rollout", *QUICK, "-n", namespace, "--steps", "10,50,100", "--pause", "2s")
    first = spawn(local_cluster, *args)
    wait_until(lambda: stored_status(kube, namespace).get("phase") == "Paused", timeout=60)
    second = spawn(local_cluster, *args)
    assert first.wait(timeout=120) == 0
    assert second.wait(timeout=60) == 0
    assert "waiting: rollout is driven by" in second.stderr.read()
    events = [e.reason for e in kube.list(Event, namespace=namespace)]
    assert events.count("WeightSet") == 3, "each weight was set once, by one process"


def test_user_scaling_v1_by_hand_is_detected_reported_and_pauses(
    kube: Client, namespace: str, local_cluster: ClusterState, tmp_path: Path
) -> None:
    deploy_seed(kube, namespace)
    proc = spawn(local_cluster, "rollout", "-f", str(_indefinite_spec(tmp_path, namespace)))
    wait_until(lambda: stored_status(kube, namespace).get("phase") == "Paused", timeout=60)
    kube.patch(Deployment, "pulpocon-app-v1", {"spec": {"replicas": 3}}, namespace=namespace)
    wait_until(
        lambda: any(
            e.reason == "ScaledByAnotherActor" for e in kube.list(Event, namespace=namespace)
        ),
        timeout=30,
    )
    (event,) = [e for e in kube.list(Event, namespace=namespace)
                if e.reason == "ScaledByAnotherActor"]  # fmt: skip
    assert "deployment/pulpocon-app-v1 was scaled to 3 by another actor" in event.message
    assert stored_status(kube, namespace)["phase"] == "Paused"
    time.sleep(2)
    assert replicas(kube, namespace, "pulpocon-app-v1")[0] == 3, "canaryctl does not fight"
    # Resuming hands the replicas back to canaryctl, which restores this step's split.
    assert cli(local_cluster, "resume", "pulpocon-app", "-n", namespace).returncode == 0
    wait_until(lambda: replicas(kube, namespace, "pulpocon-app-v1") == (9, 9), timeout=30)
    assert cli(local_cluster, "promote", "pulpocon-app", "-n", namespace).returncode == 0
    assert proc.wait(timeout=90) == 0, proc.stderr.read()
    assert replicas(kube, namespace, "pulpocon-app-v2") == (10, 10)


def _specs(kube: Client, ns: str) -> dict[str, tuple[int, int]]:
    """Generation and replicas of each Deployment: what only a write can change."""
    deps = kube.list(Deployment, namespace=ns)
    return {d.metadata.name: (d.metadata.generation, d.spec.replicas) for d in deps}


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--stable", "deploy/missing", "--canary", "deploy/pulpocon-app-v2",
          "--service", "pulpocon-app"], "stable"),
        ([*QUICK, "--steps", "50,10,100"], "steps[1].setWeight"),
        ([*QUICK, "--steps", "10,150"], "steps[1].setWeight"),
        (["--stable", "deploy/pulpocon-app-v1", "--canary", "deploy/other",
          "--service", "pulpocon-app"], "canary"),
    ],
    ids=["missing-deployment", "steps-not-increasing", "weight-over-100", "missing-canary"],
)  # fmt: skip
def test_invalid_input_exits_2_naming_the_field_and_changes_nothing(
    kube: Client, namespace: str, local_cluster: ClusterState, args: list[str], field: str
) -> None:
    deploy_seed(kube, namespace)
    before = _specs(kube, namespace)
    run = cli(local_cluster, "rollout", *args, "-n", namespace)
    assert run.returncode == 2, run.stderr
    assert f"invalid input: {field}" in run.stderr
    assert _specs(kube, namespace) == before
    assert stored_status(kube, namespace) == {}
    assert not list(
        kube.list(
            ConfigMap, namespace=namespace, labels={"app.kubernetes.io/managed-by": "canaryctl"}
        )
    )


def test_canary_pods_not_selected_by_the_service_is_invalid_input(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    deploy_seed(kube, namespace)
    (v3,) = manifests.load([SEED / "app-v2.yaml"])
    v3.metadata.name = "other-app"
    v3.spec.selector.matchLabels = {"app": "other-app"}
    v3.spec.template.metadata.labels = {"app": "other-app"}
    manifests.apply(kube, [v3], namespace)
    run = cli(local_cluster, "rollout", "--stable", "deploy/pulpocon-app-v1", "--canary",
              "deploy/other-app", "--service", "pulpocon-app", "-n", namespace)  # fmt: skip
    assert run.returncode == 2
    assert "does not select the pods of deployment/other-app" in run.stderr


def test_deployments_in_two_namespaces_need_a_router_that_supports_it(
    local_cluster: ClusterState, tmp_path: Path
) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "name: x\nstable: a\ncanary: b\ncanaryNamespace: other\nservice: s\n"
        "steps: [{setWeight: 10}]\n"
    )
    run = cli(local_cluster, "rollout", "-f", str(spec))
    assert run.returncode == 2
    assert "canaryNamespace" in run.stderr and "istio or gateway" in run.stderr


def test_plan_prints_every_change_and_changes_nothing(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    deploy_seed(kube, namespace)
    run = cli(local_cluster, "plan", *QUICK, "-n", namespace, "--pause", "30s")
    assert run.returncode == 0, run.stderr
    assert "scale deployment/pulpocon-app-v2 1 -> 1" not in run.stdout
    assert "then scale deployment/pulpocon-app-v1 10 -> 9" in run.stdout
    assert "delete deployment/pulpocon-app-v1" in run.stdout
    assert stored_status(kube, namespace) == {}
    assert replicas(kube, namespace, "pulpocon-app-v1") == (10, 10)


def test_plan_accepts_a_good_analysis_block_and_refuses_a_bad_one(
    kube: Client, namespace: str, local_cluster: ClusterState, tmp_path: Path
) -> None:
    """The dry run checks the analysis on the real run's path (no request to Prometheus or
    a hook is made to plan); the refusals of each field are in tests/cli."""
    deploy_seed(kube, namespace)
    spec = _indefinite_spec(tmp_path, namespace)
    good = {
        "prometheus": {"url": "http://prometheus:9090", "timeout": 5},
        "webhooks": [{"name": "gate", "type": "confirm-promotion", "url": "http://g/"}],
    }
    text = spec.read_text() + f"  analysis: {json.dumps(good)}\n"
    spec.write_text(text)
    run = cli(local_cluster, "plan", "-f", str(spec))
    assert run.returncode == 0, run.stderr
    assert "step 1: setWeight 10" in run.stdout
    spec.write_text(text.replace('"timeout": 5', '"timeout": 9'))
    for args in (["plan"], ["rollout", "--dry-run"]):
        refused = cli(local_cluster, *args, "-f", str(spec))
        assert refused.returncode == 2, refused.stderr
        assert "invalid input: analysis.prometheus.timeout: 9 exceeds" in refused.stderr
    assert stored_status(kube, namespace) == {}


def test_json_output_is_one_event_per_line(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    deploy_seed(kube, namespace)
    run = cli(local_cluster, "rollout", *QUICK, "-n", namespace, "--steps", "50,100",
              "-o", "json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert {line["kind"] for line in lines} == {"event", "status"}
    assert lines[-1]["kind"] == "status" and lines[-1]["phase"] == "Succeeded"

"""`canaryctl get` as a person meets it, on the real control plane: the current state of
each check, the time left in a pause and the commands that steer, the history folded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap

from canaryctl.kube import manifests
from canaryctl.testenv import ClusterState
from helpers import EXAMPLES, wait_until

pytestmark = pytest.mark.integration
SEED = EXAMPLES / "pulpocon-app"
CLI = str(Path(sys.executable).with_name("canaryctl"))


def cli(cluster: ClusterState, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "COLUMNS": "200"}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def status(kube: Client, ns: str) -> dict:
    try:
        cm = kube.get(ConfigMap, "canaryctl-pulpocon-app", namespace=ns)
    except ApiError:
        return {}
    return json.loads((cm.data or {}).get("status", "{}"))


def ready(kube: Client, ns: str, name: str) -> int:
    return kube.get(Deployment, name, namespace=ns).status.readyReplicas or 0


def test_get_during_a_timed_pause_then_after_promotion(
    kube: Client, namespace: str, local_cluster: ClusterState
) -> None:
    manifests.apply(kube, manifests.load([SEED / "service.yaml", SEED / "app-v1.yaml"]), namespace)
    wait_until(lambda: ready(kube, namespace, "pulpocon-app-v1") == 10, timeout=60)
    manifests.apply(kube, manifests.load([SEED / "app-v2.yaml"]), namespace)
    # A Canary CRD installed moments ago answers 503 until its storage is ready.
    wait_until(lambda: cli(local_cluster, "get", "-A").returncode == 0, timeout=60)
    env = {**os.environ, "KUBECONFIG": str(local_cluster.kubeconfig)}
    proc = subprocess.Popen(
        [CLI, "rollout", "-n", namespace, "--stable", "deploy/pulpocon-app-v1",
         "--canary", "deploy/pulpocon-app-v2", "--service", "pulpocon-app",
         "--steps", "10,100", "--pause", "5m", "--output", "plain"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(
            lambda: proc.poll() is not None or status(kube, namespace).get("phase") == "Paused",
            timeout=90,
        )
        assert proc.poll() is None, proc.communicate()
        got = cli(local_cluster, "get", "pulpocon-app", "-n", namespace)
        assert got.returncode == 0, got.stderr
        out = got.stdout
        assert "? effective" not in out
        assert "10% desired / 10% effective" in out
        assert "pause step: 4m" in out and "left (promote to go on now)" in out
        assert f"canaryctl promote pulpocon-app -n {namespace}" in out
        assert f"canaryctl abort pulpocon-app -n {namespace}" in out
        # One row per check, current state first; a healthy rollout shows no FAIL.
        rows = [line.replace("│", " ").split() for line in out.splitlines()]
        states = {"pass", "FAIL", "not", "converging", "degraded"}
        for check in ("canary-ready", "stable-ready", "traffic"):
            assert sum(r[:1] == [check] and r[1] in states for r in rows if len(r) > 1) == 1, out
        assert "FAIL" not in out
        assert "--history" in out

        listed = cli(local_cluster, "get", "-A")
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if namespace in line)
        assert row.split()[:6] == [namespace, "pulpocon-app", "ConfigMap", "Paused", "2/3", "10%"]

        assert cli(local_cluster, "promote", "pulpocon-app", "-n", namespace).returncode == 0
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = cli(local_cluster, "get", "pulpocon-app", "-n", namespace, "--history")
    assert done.returncode == 0, done.stderr
    assert "Succeeded" in done.stdout and "history (oldest first)" in done.stdout
    # The splits that converged after each weight change read "converging", never FAIL.
    assert "FAIL" not in done.stdout
    assert "steer:" not in done.stdout

"""A rollout record (ConfigMap canaryctl-<name>) corrupted by hand mid-rollout, on the real
control plane: `rollout` and `get` stop with a clear error naming the record (exit 1, no
traceback, nothing changed in the cluster), an unreadable command is a safe pause, and once
the record is restored the same rollout resumes and finishes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from lightkube import Client, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Service
from typer.testing import CliRunner

from canaryctl.cli.app import app
from canaryctl.core.models import Phase
from canaryctl.driver.engine import Engine
from canaryctl.kube.store import COMMAND, PREFIX
from canaryctl.testenv import ClusterState
from helpers import app_deployment, app_service, replicas, wait_until

pytestmark = pytest.mark.integration
SPEC = {
    "name": "app",
    "stable": "app-v1",
    "canary": "app-v2",
    "service": "app",
    "steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}],
    "health": {"readyDeadline": "30s"},
    "drainDelay": "0s",
}
#: (what is written into the ConfigMap, what the error must say)
BROKEN_STATUS = [
    ({"data": {"status": "{not json"}}, "invalid JSON"),
    ({"data": {"status": "[1, 2]"}}, "not a JSON object"),
    ({"data": {"status": json.dumps({"phase": "Paused", "weight": 1000})}}, "status.weight"),
    ({"data": {"status": json.dumps({"phase": "Exploded"})}}, "status.phase"),
    ({"data": {"spec": "42"}}, "data.spec"),
]


def world(kube: Client, namespace: str) -> str:
    """Everything a rollout could change, as text: replicas and Service selectors."""
    deps = {d.metadata.name: d.spec.replicas for d in kube.list(Deployment, namespace=namespace)}
    svcs = {s.metadata.name: s.spec.selector for s in kube.list(Service, namespace=namespace)}
    return json.dumps([deps, svcs], sort_keys=True)


def test_a_corrupted_record_stops_cleanly_pauses_safely_and_resumes_once_restored(
    kube: Client, local_cluster: ClusterState, namespace: str, tmp_path
) -> None:
    docs = [app_service(), app_deployment("app-v1", "v1", 2), app_deployment("app-v2", "v2", 0)]
    for doc in docs:
        kube.create(codecs.from_dict(doc), namespace=namespace)
    wait_until(lambda: replicas(kube, namespace, "app-v1") == (2, 2), timeout=60)
    spec_file = tmp_path / "canary.yaml"
    spec_file.write_text(yaml.safe_dump({**SPEC, "namespace": namespace}))
    cli = CliRunner()
    config = ["--kubeconfig", str(local_cluster.kubeconfig)]

    def run(*args: str):
        return cli.invoke(app, [*args, *config], catch_exceptions=True)

    from canaryctl.cli.rollout import build_spec

    spec = build_spec(spec_file, *[None] * 5, "10,100", *[None] * 4, "delete")
    engine = Engine(kube, spec, record_events=False)
    engine.start()
    while (status := engine.tick().status).phase is not Phase.PAUSED:
        pass
    assert status.weight == 50
    name = PREFIX + "app"
    good = kube.get(ConfigMap, name, namespace=namespace)
    before = world(kube, namespace)

    for patch, says in BROKEN_STATUS:
        kube.patch(ConfigMap, name, patch, namespace=namespace)
        for args in (["rollout", "-f", str(spec_file), "--interval", "0.1", "-o", "json"],
                     ["get", "app", "-n", namespace], ["get", "app", "-n", namespace, "-o", "json"],
                     ["get", "-n", namespace]):  # fmt: skip
            result = run(*args)
            shown = f"{args[0]} with {patch}: exit {result.exit_code}\n{result.output}"
            assert not isinstance(result.exception, Exception) or isinstance(
                result.exception, SystemExit
            ), f"{shown}\n{result.exception!r}"
            assert "Traceback" not in result.output, shown
            if args[:2] == ["get", "-n"]:
                assert result.exit_code == 0, shown  # the list marks it, the rest shows
                continue
            if args[0] == "get" and "-o" in args and result.exit_code == 0:
                continue  # the raw JSON of what is stored, when it parses as JSON
            assert result.exit_code == 1, shown
            assert says in result.output and name in result.output, shown
        assert world(kube, namespace) == before, f"the cluster changed after {patch}"
        restore = {"data": good.data, "metadata": {"annotations": good.metadata.annotations}}
        kube.patch(ConfigMap, name, restore, namespace=namespace)

    # An unreadable command: a pause, once, and nothing moves.
    for junk in ("{oops", json.dumps({"action": "launch", "id": "x"}), json.dumps([1])):
        patch: dict[str, Any] = {"metadata": {"annotations": {COMMAND: junk}}}
        kube.patch(ConfigMap, name, patch, namespace=namespace)
        for _ in range(3):
            status = engine.tick().status
        assert status.phase is Phase.PAUSED and status.weight == 50, status
        assert world(kube, namespace) == before
    # Then real commands go through: the rollout resumes and finishes.
    assert run("resume", "app", "-n", namespace).exit_code == 0
    for _ in range(3):
        engine.tick()
    assert run("promote", "app", "-n", namespace).exit_code == 0
    result = run("rollout", "-f", str(spec_file), "--interval", "0.1", "-o", "json")
    assert result.exit_code == 0, result.output
    assert replicas(kube, namespace, "app-v2") == (2, 2)
    assert replicas(kube, namespace, "app-v1") is None

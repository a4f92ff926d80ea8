"""Fuzzed `canaryctl rollout` invocations (spec files and quick-mode flags) in-process against
the real control plane: every one exits 2 with `error: invalid input: <field>: ...`, never a
traceback, and nothing is written to the cluster (objects counted before and after). The
Deployments the specs name do not exist, so even a valid spec stops at validation.
`make chaos` runs 500 of each; CANARYCTL_CLI_FUZZ_CASES overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from lightkube import Client
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Event, Service
from typer.testing import CliRunner

from canaryctl.cli.app import app
from canaryctl.testenv import ClusterState
from fuzzing import YAML_TEXT, quick_flags, specs

pytestmark = pytest.mark.integration
SHORT = int(os.environ.get("CANARYCTL_CLI_FUZZ_CASES", "50"))
LONG = int(os.environ.get("CANARYCTL_CLI_FUZZ_CASES", "500"))
FLAGS = {
    "name": "--name", "namespace": "--namespace", "stable": "--stable", "canary": "--canary",
    "service": "--service", "steps": "--steps", "pause": "--pause",
    "ready_deadline": "--ready-deadline", "max_restarts": "--max-restarts",
    "on_promotion": "--on-promotion", "replica_mode": "--replica-mode",
    "scale_down_delay": "--scale-down-delay", "drain_delay": "--drain-delay",
    "canary_namespace": "--canary-namespace", "router": "--router", "ingress": "--ingress",
    "virtual_service": "--virtual-service", "destination_rule": "--destination-rule",
    "httproute": "--httproute", "cookie": "--cookie", "mirror": "--mirror",
    "prometheus": "--prometheus", "judge": "--judge", "analysis_interval": "--analysis-interval",
    "tolerance": "--tolerance", "latency_threshold": "--latency-threshold",
}  # fmt: skip


def fuzz_settings(cases: int):
    return settings(
        max_examples=cases,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


def argv(flags: dict[str, Any]) -> list[str]:
    """Quick-mode flags as a command line (what a shell passes: strings)."""
    args = ["rollout"]
    for key, flag in FLAGS.items():
        if flags[key] is not None:
            args += [flag, str(flags[key])]
    for header in flags["header"] or []:
        args += ["--header", header]
    return args


class Invoker:
    """Runs `canaryctl` in-process and checks each run refused cleanly, changing nothing."""

    def __init__(self, kube: Client, cluster: ClusterState, namespace: str, folder: Path):
        self.kube, self.namespace, self.folder = kube, namespace, folder
        self.config = ["--kubeconfig", str(cluster.kubeconfig), "-o", "json"]
        self.runner = CliRunner()
        self.before = self.count()
        self.records_before = self.records()
        self.runs = 0

    def records(self) -> set[tuple[str, str, str]]:
        """Every rollout record in the cluster, with the version it is at."""
        return {
            (c.metadata.namespace, c.metadata.name, c.metadata.resourceVersion)
            for c in self.kube.list(ConfigMap, namespace="*")
            if c.metadata.name.startswith("canaryctl-")
        }

    def count(self) -> tuple[int, ...]:
        """The test namespace's objects a rollout could create."""
        return (
            len(list(self.kube.list(Deployment, namespace=self.namespace))),
            len(list(self.kube.list(Service, namespace=self.namespace))),
            len(list(self.kube.list(Event, namespace=self.namespace))),
        )

    def refused(self, args: list[str]) -> None:
        result = self.runner.invoke(app, [*args, *self.config], catch_exceptions=True)
        self.runs += 1
        shown = f"{[a[:80] for a in args]}: exit {result.exit_code}\n{result.output[-2000:]}"
        assert isinstance(result.exception, SystemExit), f"{shown}\n{result.exception!r}"
        assert "Traceback" not in result.output, shown
        assert result.exit_code == 2, shown
        assert "error: invalid input: " in result.output, shown
        field = result.output.split("error: invalid input: ", 1)[1].split(":", 1)[0]
        assert field.strip(), shown

    def spec_file(self, text: str) -> None:
        path = self.folder / "canary.yaml"
        path.write_text(text)
        self.refused(["rollout", "-f", str(path), "-n", self.namespace])

    def check_unchanged(self) -> None:
        assert self.count() == self.before, "a refused rollout wrote to the cluster"
        # Records anywhere: none new, none changed (other tests' namespaces may go away).
        new = self.records() - self.records_before
        assert not new, f"a refused rollout wrote rollout records: {new}"


@pytest.fixture
def invoker(kube: Client, local_cluster: ClusterState, namespace: str, tmp_path: Path):
    inv = Invoker(kube, local_cluster, namespace, tmp_path)
    yield inv
    inv.check_unchanged()
    print(f"{inv.runs} refused runs, cluster unchanged")


def _in(namespace: str, spec: Any) -> str:
    if isinstance(spec, dict) and isinstance(spec.get("namespace"), str):
        spec = {**spec, "namespace": namespace}
    return yaml.safe_dump(spec, allow_unicode=True)


@fuzz_settings(SHORT)
@given(spec=specs())
def test_fuzzed_spec_files_exit_2_naming_a_field_and_write_nothing(invoker, spec) -> None:
    invoker.spec_file(_in(invoker.namespace, spec))


@fuzz_settings(SHORT)
@given(text=YAML_TEXT)
def test_fuzzed_yaml_documents_exit_2_naming_a_field_and_write_nothing(invoker, text) -> None:
    invoker.spec_file(text)


@fuzz_settings(SHORT)
@given(flags=quick_flags())
def test_fuzzed_quick_mode_flags_exit_2_naming_a_field_and_write_nothing(invoker, flags) -> None:
    invoker.refused(argv({**flags, "namespace": flags["namespace"] or invoker.namespace}))


@pytest.mark.chaos
@pytest.mark.timeout(3600)
@fuzz_settings(LONG)
@given(spec=specs())
def test_chaos_cli_spec_files(invoker, spec) -> None:
    invoker.spec_file(_in(invoker.namespace, spec))


@pytest.mark.chaos
@pytest.mark.timeout(3600)
@fuzz_settings(LONG)
@given(flags=quick_flags())
def test_chaos_cli_quick_mode_flags(invoker, flags) -> None:
    invoker.refused(argv({**flags, "namespace": flags["namespace"] or invoker.namespace}))

"""`canaryctl rollout -f` refuses call timeouts a tick's budget could never grant: exit 2,
the field named, before any request (the kubeconfig points at a port nobody listens on);
`plan` and `rollout --dry-run` refuse every bad analysis block exactly as the real run does."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CLI = str(Path(sys.executable).with_name("canaryctl"))
SPEC = {
    "name": "app",
    "stable": "app-v1",
    "canary": "app-v2",
    "service": "app",
    "steps": [{"setWeight": 10}, {"setWeight": 100}],
}
HOOKS = [
    {"name": "gate", "type": "confirm-promotion", "url": "http://gate/", "timeout": "5s"},
    {"name": "helm-test", "type": "pre-rollout", "url": "http://helm/", "timeout": "20s"},
]
BUDGET = "the 7.5s a tick may spend on webhooks and Prometheus queries in all (half the 15s lease)"


def _kubeconfig(path: Path) -> Path:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free a moment ago: a request would be refused
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("analysis", "line"),
    [
        (
            {"webhooks": HOOKS},
            f"error: invalid input: analysis.webhooks[1].timeout: 20s exceeds {BUDGET}; "
            "use at most 7.5s",
        ),
        (
            {"prometheus": {"url": "http://prometheus:9090", "timeout": 20}},
            f"error: invalid input: analysis.prometheus.timeout: 20 exceeds {BUDGET}; "
            "use at most 7.5",
        ),
    ],
    ids=["webhook", "prometheus"],
)
def test_rollout_refuses_a_timeout_above_the_tick_budget_with_exit_2(
    tmp_path: Path, analysis: dict, line: str
) -> None:
    spec = tmp_path / "canary.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "analysis": analysis}))
    done = subprocess.run(
        [CLI, "rollout", "-f", str(spec), "--kubeconfig", str(_kubeconfig(tmp_path / "kc")),
         "--api-timeout", "2s", "-o", "plain"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == line
    assert "Traceback" not in done.stdout + done.stderr


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    kubeconfig = tmp_path / "kc"
    if not kubeconfig.exists():
        _kubeconfig(kubeconfig)
    return subprocess.run(
        [CLI, *args, "--kubeconfig", str(kubeconfig)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        ({"prometheus": {"url": "http://p:9090"}, "judgee": "threshold"}, "analysis.judgee"),
        ({"webhooks": [{"name": "w", "type": "gate", "url": "http://w/"}]},
         "analysis.webhooks[0].type"),
        ({"webhooks": [HOOKS[1]]}, "analysis.webhooks[0].timeout"),
        ({"prometheus": {"url": "ftp://p:9090"}}, "prometheus.address"),
        ({"prometheus": {"url": "http://p:9090"}, "interval": "500ms"}, "analysis.interval"),
        ({"prometheus": {"url": "http://p:9090"}, "minInterval": "30s", "maxInterval": "10s"},
         "analysis: maxInterval must be at least minInterval"),
    ],
    ids=["unknown-field", "webhook-type", "webhook-timeout", "prometheus-url", "interval",
         "interval-bounds"],
)  # fmt: skip
def test_plan_and_dry_run_refuse_a_bad_analysis_block_as_rollout_does(
    tmp_path: Path, analysis: dict, field: str
) -> None:
    """A dry run checks the analysis block on the real run's path: the same exit 2 and the
    same message naming the field, before any request (nothing listens on the API port)."""
    spec = tmp_path / "canary.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "analysis": analysis}))
    real = _run(tmp_path, "rollout", "-f", str(spec), "--api-timeout", "2s", "-o", "plain")
    assert real.returncode == 2, real.stderr
    assert real.stderr.startswith(f"error: invalid input: {field}"), real.stderr
    for args in (["plan", "-f", str(spec)], ["rollout", "--dry-run", "-f", str(spec)]):
        dry = _run(tmp_path, *args)
        assert (dry.returncode, dry.stderr) == (2, real.stderr), args
        assert dry.stdout == "", "no plan is printed for a refused spec"


def test_quick_mode_plan_refuses_a_prometheus_url_rollout_refuses(tmp_path: Path) -> None:
    """The --prometheus flag builds the same block: a bad URL stops `plan` as well."""
    quick = ["--stable", "deploy/a", "--canary", "deploy/b", "--service", "s",
             "--prometheus", "prometheus:9090"]  # fmt: skip
    dry = _run(tmp_path, "plan", *quick)
    assert dry.returncode == 2, dry.stderr
    assert dry.stderr.startswith("error: invalid input: prometheus.address: not an http(s) URL")

"""`canaryctl rollout -f` refuses call timeouts a tick's budget could never grant: exit 2,
the field named, before any request (the kubeconfig points at a port nobody listens on)."""

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

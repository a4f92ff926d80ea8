"""`canaryctl rollout` against an API server that does not answer: retries with a status
line, then exit 6 with a message saying the state is safe and how to resume, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

CLI = str(Path(sys.executable).with_name("canaryctl"))


def _closed_port() -> int:
    # A port that was free a moment ago: connections to it are refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dead_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose API server refuses connections."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": f"https://127.0.0.1:{_closed_port()}",
                    "insecure-skip-tls-verify": True,
                },
            }
        ],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return kubeconfig


def test_rollout_retries_then_exits_6_saying_the_state_is_safe(tmp_path: Path) -> None:
    kubeconfig = _dead_kubeconfig(tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        [CLI, "rollout", "--stable", "deploy/a", "--canary", "deploy/b", "--service", "a",
         "--kubeconfig", str(kubeconfig), "--api-timeout", "3s", "-o", "plain"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 6, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    retries = [line for line in done.stderr.splitlines() if "unreachable since" in line]
    assert len(retries) >= 3, done.stderr  # backoff: 0.25-0.5, 0.5-1, 1-2 s within 3 s
    assert retries[0].startswith("API server unreachable since 0 s, retrying (timeout 3s)")
    assert "Connection refused" in retries[0] or "ConnectError" in retries[0]
    last = done.stderr.splitlines()[-1]
    assert "longer than the API timeout (3s)" in last
    assert "state is safe in the cluster" in last
    assert "Rerun the same command to resume" in last
    assert 3 <= took < 20


def test_api_timeout_must_be_a_positive_duration(tmp_path: Path) -> None:
    for bad in ("0", "soon", "-1s"):
        done = subprocess.run(
            [CLI, "rollout", "--stable", "deploy/a", "--canary", "deploy/b", "--service", "a",
             "--kubeconfig", str(tmp_path / "none"), "--api-timeout", bad],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, (bad, done.stderr)
        assert "--api-timeout" in done.stderr


PAIR = ["--stable", "deploy/a", "--canary", "deploy/b", "--service", "a"]


@pytest.mark.parametrize(
    "args",
    [
        ["plan", *PAIR],
        ["rollout", "--dry-run", *PAIR],
        ["get", "app"],
        ["get", "app", "-o", "json"],
        ["abort", "app"],
        ["promote", "app"],
        ["report", "app"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_one_shot_commands_name_an_unreachable_api_server_without_a_traceback(
    tmp_path: Path, args: list[str]
) -> None:
    done = subprocess.run(
        [CLI, *args, "--kubeconfig", str(_dead_kubeconfig(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("error: cannot reach the API server ("), done.stderr
    assert "check --kubeconfig/--context" in done.stderr

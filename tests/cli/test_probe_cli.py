"""`canaryctl probe` as a user runs it: output modes and exit codes, against the real app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from seedapp import SeedApp

CLI = str(Path(sys.executable).with_name("canaryctl"))


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "probe", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_json_lines_end_with_a_summary(seed_app_binary: Path) -> None:
    env = {"VERSION": "v2.0.0", "ERROR_RATE": "0.5", "ERROR_SEED": "3"}
    with SeedApp(seed_app_binary, env) as app:
        result = probe(app.url, "--rate", "50", "--duration", "2s", "-o", "json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {line["kind"] for line in lines[:-1]} == {"progress"} and len(lines) >= 3
    summary = lines[-1]
    assert summary["kind"] == "summary" and summary["interrupted"] is False
    assert summary["requests"] == summary["planned"] == 100
    v2 = summary["versions"]["v2.0.0"]
    assert v2["requests"] == 100 and v2["failed"] == summary["failed"]
    assert v2["codes"] == {"200": 100 - v2["failed"], "500": v2["failed"]}
    assert 0 < v2["p50"] <= v2["p99"]


def test_plain_output_and_a_summary_table(seed_app_binary: Path) -> None:
    with SeedApp(seed_app_binary, {"VERSION": "v1.0.0"}) as app:
        result = probe(app.url, "-r", "20", "-d", "1s", "-H", "X-Track=canary", "-o", "plain")
    assert result.returncode == 0, result.stderr
    assert "20/20 requests: v1.0.0 100.0%" in result.stderr
    assert "done, 20 requests" in result.stdout and "v1.0.0" in result.stdout


def test_more_failures_than_allowed_exits_5(seed_app_binary: Path) -> None:
    with SeedApp(seed_app_binary, {"VERSION": "v3", "ERROR_RATE": "1"}) as app:
        failing = probe(app.url, "-r", "20", "--count", "5", "--max-failures", "4", "-o", "json")
        tolerated = probe(app.url, "-r", "20", "--count", "5", "--max-failures", "5", "-o", "json")
    assert failing.returncode == 5
    assert "5 of 5 requests failed (--max-failures 4)" in failing.stderr
    assert tolerated.returncode == 0


def test_no_answer_at_all_exits_1_naming_the_cause(seed_app_binary: Path) -> None:
    with SeedApp(seed_app_binary, {"VERSION": "v1"}) as app:
        url = app.url
    result = probe(url, "-r", "20", "-d", "0.5s", "-o", "plain")
    assert result.returncode == 1
    assert f"error: no answer from {url}: 10 x ConnectError" in result.stderr


def test_invalid_input_exits_2_and_sends_nothing() -> None:
    cases = {
        ("http://10.0.0.1/",): "URL: 10.0.0.1 resolves to 10.0.0.1, not a loopback address",
        ("http://127.0.0.1:1/", "--rate", "0"): "--rate: must be > 0",
        ("http://127.0.0.1:1/", "-d", "soon"): "--duration: invalid duration 'soon'",
        ("http://127.0.0.1:1/", "-H", "X-Track"): "--header: 'X-Track' is not NAME=VALUE",
        ("http://127.0.0.1:1/", "-o", "yaml"): "--output: 'yaml' is not one of live, plain, json",
    }
    for args, message in cases.items():
        result = probe(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert f"error: invalid input: {message}" in result.stderr
        assert "requests" not in result.stdout

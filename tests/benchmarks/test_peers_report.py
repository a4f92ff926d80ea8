"""The side-by-side benchmark's pure half: it reads the API server's audit log and prints
its table from its own saved JSON (no cluster, no peer build)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from helpers import BENCHMARKS, load_benchmark

report = load_benchmark("peers/report.py", "peers_report")


def _line(user: str, verb: str, resource: str, name: str, at: str, **extra: str) -> str:
    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "stage": extra.get("stage", "ResponseComplete"),
        "verb": verb,
        "user": {"username": user, "groups": ["system:masters"]},
        "objectRef": {"resource": resource, "namespace": "bench", "name": name},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": at,
    }
    if "subresource" in extra:
        event["objectRef"]["subresource"] = extra["subresource"]
    return json.dumps(event)


def test_audit_requests_are_counted_per_client_once_and_split_by_verb_and_resource():
    lines = [
        _line("flagger", "get", "deployments", "app-0001", "2026-11-30T07:00:00.000000Z"),
        _line("flagger", "get", "deployments", "app-0002", "2026-11-30T07:00:10.000000Z"),
        _line("flagger", "get", "services", "app-0001", "2026-11-30T07:00:20.000000Z"),
        # another client, a stage that is not the response, a line still being written
        _line("canaryctl-admin", "get", "pods", "x", "2026-11-30T07:00:20.000000Z"),
        _line("flagger", "get", "pods", "x", "2026-11-30T07:00:20Z", stage="ResponseStarted"),
        '{"kind":"Event","stage":"Respo',
        # outside the window
        _line("flagger", "get", "services", "app-0001", "2026-11-30T07:00:30.000000Z"),
    ]
    requests = report.parse_audit(lines)
    assert len(requests) == 5
    start = requests[0].received
    total, split = report.per_minute(requests, "flagger", start, start + 30)
    assert total == pytest.approx(6.0)  # 3 requests in half a minute
    assert split == {"get deployments": pytest.approx(4.0), "get services": pytest.approx(2.0)}


def test_first_action_is_the_tools_first_write_to_a_bumped_canarys_objects_after_the_bump():
    lines = [
        _line("flagger", "patch", "canaries", "app-0001", "2026-11-30T07:00:01Z"),  # before
        _line("flagger", "get", "deployments", "app-0001", "2026-11-30T07:00:05Z"),  # a read
        _line("flagger", "create", "events", "app-0001.x", "2026-11-30T07:00:06Z"),  # an event
        _line("admin", "patch", "deployments", "app-0001", "2026-11-30T07:00:06Z"),  # not it
        _line(
            "flagger",
            "update",
            "canaries",
            "app-0001",
            "2026-11-30T07:00:07.5Z",
            subresource="status",
        ),
        _line("flagger", "patch", "deployments", "app-0002-primary", "2026-11-30T07:00:09Z"),
        _line("flagger", "patch", "deployments", "app-0002", "2026-11-30T07:00:12Z"),
    ]
    requests = report.parse_audit(lines)
    bumped_at = requests[0].received + 1  # 07:00:02
    first = report.first_writes(
        requests, "flagger", {"app-0001": bumped_at, "app-0002": bumped_at, "app-0003": bumped_at}
    )
    assert first == {"app-0001": pytest.approx(5.5), "app-0002": pytest.approx(7.0)}
    assert report.percentiles(first.values()) == (pytest.approx(6.25), pytest.approx(7.0))
    assert all(math.isnan(v) for v in report.percentiles([]))
    # The first look, any verb (not Events): the read at 07:00:05, the patch at 07:00:09.
    looked = report.first_requests(
        requests, "flagger", {"app-0001": bumped_at, "app-0002": bumped_at, "app-0003": bumped_at}
    )
    assert looked == {"app-0001": pytest.approx(3.0), "app-0002": pytest.approx(7.0)}


def test_the_harness_prints_its_table_with_ratios_from_its_own_saved_json(tmp_path):
    def run(tool: str, idle: float, react: float) -> dict:
        return {
            "tool": tool,
            "n": 100,
            "load_range": "3.0-5.0",
            "figures": {
                "idle_requests_per_min": idle,
                "react_p99_s": react,
                "wave_requests_per_min": idle * 2,
            },
            "wave_s": 30.0,
        }

    saved = tmp_path / "peers.json"
    runs = [run("canaryctl", 60.0, 0.5), run("flagger", 5400.0, 4.8)]
    saved.write_text(json.dumps({"runs": runs}))
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "peers" / "compare.py"), "--table", str(saved)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "| N = 100 | canaryctl | flagger | flagger / canaryctl |" in out
    assert "| idle API requests (/min) | 60.0 | 5,400 | 90.0x |" in out
    assert "| bump -> first action p99 (s) | 0.50 | 4.80 | 9.6x |" in out
    assert "| API requests for the whole wave (total) | 60.0 | 5,400 | 90.0x |" in out
    assert "| peak RSS (MiB) | - | - | - |" in out  # missing figures are shown, not invented
    assert "flagger 3.0-5.0" in out

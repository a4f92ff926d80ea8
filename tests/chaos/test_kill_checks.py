"""The kill campaign's invariant checks find what they look for (they can fail)."""

from __future__ import annotations

import json

from chaos_kills import MAX_WEIGHT, N, _check_writes


def _status(step: int, weight: int, phase: str = "Progressing") -> dict:
    status = {"stepIndex": step, "weight": weight, "phase": phase}
    return {"event": "MODIFIED", "kind": "ConfigMap", "name": "canaryctl-app",
            "data": {"status": json.dumps(status)}}  # fmt: skip


def test_a_clean_history_passes() -> None:
    events = [_status(0, 0), _status(0, 30), _status(1, 60), _status(2, 100, "Promoting"),
              _status(2, 100, "Succeeded")]  # fmt: skip
    assert _check_writes(events, bad=False) == []


def test_each_kind_of_breach_is_reported() -> None:
    deploy = {"event": "MODIFIED", "kind": "Deployment", "name": "app-v2", "replicas": N + 1}
    cases = {
        "replicas": [deploy],
        "weight 80": [_status(0, MAX_WEIGHT + 10)],
        "skipped": [_status(0, 30), _status(2, 60)],
        "repeated": [_status(1, 30), _status(0, 30)],
        "fell": [_status(0, 60), _status(1, 30)],
        "promoted": [_status(2, 100, "Succeeded")],
    }
    for says, events in cases.items():
        found = _check_writes(events, bad=says == "promoted")
        assert any(says in f for f in found), (says, found)

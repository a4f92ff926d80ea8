"""Stored status and commands corrupted by hand (any JSON in any field): reading them gives a
clear RecordError or a safe pause, and a decision on what is accepted never asks for a
weight outside [0, 100] or an impossible replica count. `make chaos` runs 10,000 cases."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from canaryctl.core import decide
from canaryctl.core.machine import EnsureReplicas, ScaleDown, SetWeight
from canaryctl.core.models import (
    MAX_REPLICAS,
    CanaryStatus,
    CheckRecord,
    DeploymentObs,
    Observations,
    Phase,
    parse_command,
    parse_spec,
    parse_status,
)
from canaryctl.errors import RecordError
from fuzzing import JSON, specs

SHORT = int(os.environ.get("CANARYCTL_FUZZ_CASES", "300"))
LONG = int(os.environ.get("CANARYCTL_FUZZ_CASES", "10000"))
WHERE = "configmap/canaryctl-app"
SPEC = parse_spec(
    {
        "name": "app",
        "stable": "app-v1",
        "canary": "app-v2",
        "service": "app",
        "steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"setWeight": 100}],
        "maxWeight": 60,
    }
)
#: A rollout paused at 10%, as the engine stores it.
STORED: dict[str, Any] = CanaryStatus(
    phase=Phase.PAUSED,
    stage=None,
    step_index=1,
    weight=10,
    canary_replicas=1,
    baseline_replicas=10,
    started_at=1000.0,
    step_started_at=1010.0,
    observed_spec_hash=SPEC.fingerprint,
    last_command_id="abc",
    checks={"ready": CheckRecord(time=1010.0, name="ready", passed=True)},
    history=[CheckRecord(time=1010.0, name="ready", passed=True, message="ok")],
).to_dict()
COMMAND = {"action": "promote", "full": False, "id": "def"}


def fuzz_settings(cases: int):
    return settings(
        max_examples=cases,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def observations(command_data: Any) -> Observations:
    ready = DeploymentObs(desired_replicas=9, ready_replicas=9, updated_replicas=9)
    canary = DeploymentObs(desired_replicas=1, ready_replicas=1, updated_replicas=1)
    return Observations(
        now=1020.0,
        stable=ready,
        canary=canary,
        effective_weight=10.0,
        command=parse_command(command_data),
    )


def check(status_data: Any, command_data: Any) -> None:
    """Read a corrupted record as the engine does, then decide once."""
    try:
        status = parse_status(status_data, WHERE)
    except RecordError as exc:
        assert str(exc).startswith(WHERE), exc
        return
    decision = decide(SPEC, status, observations(command_data))
    for action in decision.actions:
        if isinstance(action, SetWeight):
            assert 0 <= action.weight <= 100, action
        if isinstance(action, EnsureReplicas | ScaleDown):
            assert 0 <= action.replicas <= MAX_REPLICAS, action
    assert 0 <= decision.status.weight <= 100


def test_an_unreadable_command_is_a_pause_that_acts_once() -> None:
    for junk in ("not json", {"action": "launch"}, {"id": 1}, [COMMAND], 7):
        command = parse_command(junk)
        assert command is not None and command.action == "pause" and command.unreadable
        assert command.id == parse_command(junk).id, "the same record pauses once"
    decision = decide(SPEC, parse_status(STORED, WHERE), observations("garbage"))
    assert decision.status.phase is Phase.PAUSED
    assert not [a for a in decision.actions if isinstance(a, SetWeight) and a.weight > 10]


@pytest.mark.parametrize(
    "junk",
    [[], "paused", {"weight": 1000}, {"stepIndex": -1}, {"baselineReplicas": 10**12},
     {"phase": "Exploded"}, {"history": "x"}, {"checks": {"a": 1}}],
)  # fmt: skip
def test_an_unreadable_status_is_refused_naming_the_record(junk: Any) -> None:
    with pytest.raises(RecordError, match=WHERE):
        parse_status(junk, WHERE)


@fuzz_settings(SHORT)
@given(specs(STORED), specs(COMMAND) | JSON)
def test_corrupted_status_and_command_give_an_error_or_a_safe_decision(
    status: Any, command: Any
) -> None:
    check(status, command)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
@fuzz_settings(LONG)
@given(specs(STORED), specs(COMMAND) | JSON)
def test_chaos_corrupted_status_and_command(status: Any, command: Any) -> None:
    check(status, command)

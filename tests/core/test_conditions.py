"""Conditions of a Canary in the metav1.Condition shape, derived from the rollout status."""

from __future__ import annotations

import pytest

from canaryctl.core import CanaryStatus, CheckRecord, PauseReason, Phase
from canaryctl.core.conditions import (
    conditions_for,
    invalid_spec_conditions,
    rfc3339,
    set_condition,
    step_text,
    verdict_text,
)

T0 = 1_800_000_000.0


def by_type(conditions: list[dict]) -> dict[str, dict]:
    return {c["type"]: c for c in conditions}


def test_every_condition_has_the_metav1_shape_and_a_camel_case_reason() -> None:
    status = CanaryStatus(phase=Phase.ROLLED_BACK, reason="canary unhealthy", message="x")
    for condition in conditions_for(status, 3, T0):
        assert set(condition) == {
            "type", "status", "observedGeneration", "lastTransitionTime", "reason", "message",
        }  # fmt: skip
        assert condition["status"] in ("True", "False", "Unknown")
        assert condition["observedGeneration"] == 3
        assert " " not in condition["reason"]
    assert [c["type"] for c in conditions_for(status, 3, T0)] == [
        "Progressing", "Promoted", "Ready",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "progressing", "promoted", "ready"),
    [
        (None, "False", "Unknown", "True"),
        (CanaryStatus(phase=Phase.PROGRESSING, weight=10), "True", "Unknown", "True"),
        (CanaryStatus(phase=Phase.SUCCEEDED, reason="Promoted"), "False", "True", "True"),
        (CanaryStatus(phase=Phase.ROLLING_BACK, reason="Aborted"), "True", "Unknown", "False"),
        (CanaryStatus(phase=Phase.ROLLED_BACK, reason="Aborted"), "False", "False", "True"),
        (
            CanaryStatus(phase=Phase.PAUSED, pause_reason=PauseReason.STABLE_DEGRADED),
            "True",
            "Unknown",
            "False",
        ),
    ],
)
def test_conditions_follow_the_phase(status, progressing, promoted, ready) -> None:
    got = by_type(conditions_for(status, 1, T0))
    assert (got["Progressing"]["status"], got["Promoted"]["status"], got["Ready"]["status"]) == (
        progressing,
        promoted,
        ready,
    )


def test_transition_time_changes_only_with_the_status() -> None:
    first = conditions_for(CanaryStatus(phase=Phase.PROGRESSING), 1, T0)
    same = conditions_for(CanaryStatus(phase=Phase.PAUSED), 2, T0 + 60, first)
    assert by_type(same)["Progressing"]["lastTransitionTime"] == rfc3339(T0)
    assert by_type(same)["Progressing"]["observedGeneration"] == 2
    done = conditions_for(CanaryStatus(phase=Phase.SUCCEEDED), 2, T0 + 120, same)
    assert by_type(done)["Progressing"]["lastTransitionTime"] == rfc3339(T0 + 120)


def test_an_invalid_spec_sets_ready_false_naming_the_field() -> None:
    got = by_type(invalid_spec_conditions("steps[1].setWeight", "must rise", 4, T0))
    assert got["Ready"]["status"] == "False"
    assert got["Ready"]["reason"] == "InvalidSpec"
    assert got["Ready"]["message"] == "steps[1].setWeight: must rise"


def test_set_condition_refuses_a_status_outside_the_three_values() -> None:
    with pytest.raises(ValueError):
        set_condition([], "Ready", "Yes", "R", "", 1, T0)


def test_display_fields() -> None:
    assert step_text(CanaryStatus(step_index=1), 3) == "2/3"
    assert step_text(CanaryStatus(step_index=5), 3) == "3/3"
    failing = CanaryStatus(checks={"canary-ready": CheckRecord(time=T0, name="x", passed=False)})
    assert verdict_text(failing) == "Failing: canary-ready"
    assert verdict_text(CanaryStatus(phase=Phase.SUCCEEDED)) == "Promoted"
    assert verdict_text(CanaryStatus(phase=Phase.ROLLED_BACK, reason="Aborted")) == "Aborted"


def test_a_denied_write_makes_ready_false_naming_the_object_and_the_policy() -> None:
    from canaryctl.core.conditions import denied_conditions

    out = denied_conditions(
        "deployment/app in ns", "ValidatingAdmissionPolicy 'keep-up' denied request", 3, 0.0
    )
    (ready,) = [c for c in out if c["type"] == "Ready"]
    assert ready["status"] == "False" and ready["reason"] == "WriteDenied"
    assert "deployment/app in ns" in ready["message"] and "keep-up" in ready["message"]
    assert ready["observedGeneration"] == 3


def test_progressing_says_what_a_held_rollout_waits_for_then_its_latest_transition() -> None:
    held = CanaryStatus(
        phase=Phase.PAUSED, step_index=1, weight=10, hold_reason="waiting for a promote command"
    )
    progressing = by_type(conditions_for(held, 1, T0))["Progressing"]
    assert progressing["message"] == "step 2, weight 10%: waiting for a promote command"
    back = held.model_copy(
        update={"phase": Phase.ROLLING_BACK, "message": "aborted by a user",
                "hold_reason": "waiting for stable 8/10 ready"}
    )  # fmt: skip
    assert by_type(conditions_for(back, 1, T0))["Progressing"]["message"] == (
        "step 2, weight 10%: waiting for stable 8/10 ready; aborted by a user"
    )
    moving = held.model_copy(update={"hold_reason": ""})
    assert by_type(conditions_for(moving, 1, T0))["Progressing"]["message"] == "step 2, weight 10%"
    # A new hold changes the message, not the condition's transition time.
    later = conditions_for(back, 1, T0 + 60, conditions_for(held, 1, T0))
    assert by_type(later)["Progressing"]["lastTransitionTime"] == rfc3339(T0)

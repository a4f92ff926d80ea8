"""The check table as a person reads it: current state first, holds are not failures."""

from __future__ import annotations

from rich.console import Console

from canaryctl.cli import checks


def rec(t: float, name: str, passed: bool, value=None, threshold=None, message="") -> dict:
    return {"time": t, "name": name, "passed": passed, "value": value,
            "threshold": threshold, "message": message}  # fmt: skip


def text(renderable) -> str:
    console = Console(width=160, record=True)
    console.print(renderable)
    return console.export_text()


# A healthy rollout as the machine records it: each gate's changes of outcome, and the
# traffic split failing for a moment after each weight change until it converged.
HISTORY = [
    rec(1, "canary-ready", False, 0, 1, "0/1 ready"),
    rec(2, "canary-ready", True, 1, 1, "1/1 ready"),
    rec(2, "stable-ready", True, 9, 9, "9/9 ready"),
    rec(3, "traffic", False, 9.09, 10, "router serves 9.1% to the canary, expected 10.0%"),
    rec(4, "traffic", True, 10, 10, "router serves 10.0% to the canary, expected 10.0%"),
    rec(5, "stable-ready", True, 10, 9, "10/9 ready"),
]
CURRENT = [HISTORY[1], HISTORY[5], HISTORY[4]]


def test_one_row_per_check_with_its_latest_state_and_record_count():
    rows = checks.fold(CURRENT, HISTORY, phase="Progressing")
    assert [(r.record["name"], r.state, r.records) for r in rows] == [
        ("canary-ready", "pass", 2),
        ("stable-ready", "pass", 2),
        ("traffic", "pass", 2),
    ]
    out = text(checks.current_table(rows, now=65))
    assert out.count("traffic") == 1 and "FAIL" not in out
    assert "1m01s ago" in out  # traffic passed at t=4


def test_a_split_still_converging_is_not_a_failure_now_or_in_the_history():
    current = [HISTORY[1], HISTORY[2], HISTORY[3]]
    rows = checks.fold(current, HISTORY[:4], phase="Progressing")
    assert rows[-1].state == "converging"
    states = [s for _, s in checks.history_states(HISTORY, phase="Succeeded")]
    assert "FAIL" not in states
    assert states[3] == "converging" and states[0] == "not yet"


def test_real_failures_keep_fail():
    crash = rec(9, "canary-pods", False, 4, 3, "canary pod app-v2-x restarted 4 times")
    rows = checks.fold([crash], [*HISTORY, crash], phase="RolledBack", reason="CanaryRestarts")
    assert rows[0].state == "FAIL"
    judge = rec(9, "errors (sequential)", False, 61.0, 20.0, "rollback: e-value 61 >= 20")
    assert checks.fold([], [judge], phase="RollingBack")[0].state == "FAIL"


def test_a_hold_that_timed_out_and_caused_the_rollback_is_a_failure():
    stuck = [rec(1, "canary-ready", False, 0, 1, "0/1 ready")]
    rows = checks.fold(stuck, stuck, phase="RolledBack", reason="CanaryNotReady")
    assert rows[0].state == "FAIL"
    # ...while the same record on a rollout still waiting is "not yet".
    assert checks.fold(stuck, stuck, phase="Progressing")[0].state == "not yet"


def test_analysis_looks_fold_into_one_row_with_their_count():
    looks = [rec(t, "errors (sequential)", True, 0.5 * t, 20.0, "continue") for t in range(1, 8)]
    rows = checks.fold(CURRENT, [*HISTORY, *looks], phase="Progressing")
    judge = rows[-1]
    assert judge.record["name"] == "errors (sequential)"
    assert judge.records == 7 and judge.record["value"] == 3.5


def test_pause_step_shows_the_time_left_and_how_to_end_it():
    assert checks.pause_text("Paused", "step", 1000.0, now=920.0) == (
        "pause step: 1m20s left (promote to go on now)"
    )
    assert "until promoted" in checks.pause_text("Paused", "step", None)
    assert checks.pause_text("Progressing", None, None) == ""


def test_steer_hint_names_the_commands_that_apply_now():
    hint = checks.steer_hint("app", "shop", "Paused", "step")
    assert "canaryctl promote app -n shop" in hint and "canaryctl abort app -n shop" in hint
    assert "canaryctl resume app" in checks.steer_hint("app", "default", "Paused", "command")
    assert checks.steer_hint("app", "default", "Succeeded", None) == ""

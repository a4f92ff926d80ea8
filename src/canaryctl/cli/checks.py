"""The check table a person reads: the current state of each check, history folded.

A rollout's status keeps the latest outcome of each gate (`checks`) and a history of
changes of outcome plus one record per analysis look (`history`). A failed record is not
always a failure: a traffic split still converging after a weight change, or canary pods
still starting, are gates that hold the rollout until they pass. Those read "converging"
or "not yet" here; "FAIL" is kept for what fails a rollout (a crash loop, a missing
Deployment, a judge's rollback) and for a hold that ran out of time and caused the
rollback. Presentation only: the rollout's decisions live in `core.machine`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

#: Gates that hold the rollout while they fail, and the word for that state.
HOLDS = {"traffic": "converging", "canary-ready": "not yet", "stable-ready": "not yet"}
#: Rollback reasons caused by a hold that ran out of time: that hold's last record failed.
HOLD_FAILURES = {"CanaryNotReady": "canary-ready"}
STYLE = {
    "pass": "green",
    "FAIL": "bold red",
    "converging": "yellow",
    "not yet": "yellow",
    "degraded": "red",
}


@dataclass(frozen=True)
class Row:
    """One check as it stands now: its latest record, state word and record count."""

    record: Mapping[str, Any]
    state: str
    records: int


def failed_hold(phase: str, reason: str) -> str | None:
    """The hold check whose time-out rolled the rollout back, if that is what happened."""
    if phase in ("RollingBack", "RolledBack"):
        return HOLD_FAILURES.get(reason)
    return None


def state_of(
    record: Mapping[str, Any], *, latest: bool, phase: str = "", reason: str = "",
    pause_reason: str | None = None,
) -> str:  # fmt: skip
    """The word for one record: pass, FAIL, converging, not yet or degraded.

    `latest` says whether it is the check's newest record (only that one can be the hold
    that timed out, or the stable degradation that paused the rollout).
    """
    if record.get("passed"):
        return "pass"
    name = str(record.get("name", ""))
    if name not in HOLDS:
        return "FAIL"
    if latest and name == failed_hold(phase, reason):
        return "FAIL"
    if latest and name == "stable-ready" and pause_reason == "stable-degraded":
        return "degraded"
    return HOLDS[name]


def fold(
    current: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    *,
    phase: str = "",
    reason: str = "",
    pause_reason: str | None = None,
) -> list[Row]:
    """One row per check, newest record first in importance: the gates in the order the
    rollout first ran them, then each analysis check (judge, webhook) by its latest look."""
    latest: dict[str, Mapping[str, Any]] = {}
    counts: dict[str, int] = {}
    for rec in history:
        name = str(rec.get("name", ""))
        counts[name] = counts.get(name, 0) + 1
        latest[name] = rec
    # `current` is authoritative for gates: the history may have dropped an old record.
    for rec in current:
        latest[str(rec.get("name", ""))] = rec
    order = [str(r.get("name", "")) for r in current]
    order += [n for n in latest if n not in order]
    return [
        Row(
            latest[n],
            state_of(latest[n], latest=True, phase=phase, reason=reason, pause_reason=pause_reason),
            max(counts.get(n, 0), 1),
        )
        for n in order
    ]


def history_states(
    history: Sequence[Mapping[str, Any]], *, phase: str = "", reason: str = ""
) -> list[tuple[Mapping[str, Any], str]]:
    """Each history record with its state word (holds that later passed never say FAIL)."""
    last_index = {str(r.get("name", "")): i for i, r in enumerate(history)}
    return [
        (r, state_of(r, latest=last_index[str(r.get("name", ""))] == i, phase=phase, reason=reason))
        for i, r in enumerate(history)
    ]


def fmt_value(value: Any) -> str:
    """A measured value for a table cell: blank when missing, floats to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _ago(then: float | None, now: float) -> str:
    if not then:
        return ""
    return f"{format_seconds(max(0.0, now - then))} ago"


def format_seconds(seconds: float) -> str:
    """12s, 3m05s, 1h02m: short durations for a terminal."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def current_table(rows: Sequence[Row], now: float | None = None) -> Table:
    """The current state of each check, with how many records its history holds."""
    now = time.time() if now is None else now
    table = Table(box=None, header_style="bold", title="checks", title_justify="left")
    for col in ("check", "state", "value", "threshold", "since", "records", "detail"):
        table.add_column(col)
    for row in rows:
        rec = row.record
        table.add_row(
            str(rec.get("name", "")),
            Text(row.state, style=STYLE.get(row.state, "")),
            fmt_value(rec.get("value")),
            fmt_value(rec.get("threshold")),
            _ago(rec.get("time"), now),
            str(row.records),
            str(rec.get("message", ""))[:70],
        )
    return table


def history_table(history: Sequence[Mapping[str, Any]], *, phase: str = "", reason: str = ""):
    """Every stored record, oldest first, each with the same state words as the current view."""
    table = Table(title="history (oldest first)", box=None, title_justify="left")
    for col in ("time", "check", "state", "value", "threshold", "detail"):
        table.add_column(col)
    for rec, state in history_states(history, phase=phase, reason=reason):
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(float(rec.get("time") or 0))),
            str(rec.get("name", "")),
            Text(state, style=STYLE.get(state, "")),
            fmt_value(rec.get("value")),
            fmt_value(rec.get("threshold")),
            str(rec.get("message", ""))[:80],
        )
    return table


def steer_hint(name: str, namespace: str, phase: str, pause_reason: str | None) -> str:
    """The commands that steer this rollout now, as a user would type them ('' when done)."""
    if phase in ("Succeeded", "RolledBack"):
        return ""
    ns = "" if namespace == "default" else f" -n {namespace}"
    cmds = []
    if phase == "Paused" and pause_reason in ("command", "stable-degraded"):
        cmds.append(f"canaryctl resume {name}{ns}")
    elif phase in ("Pending", "Progressing", "Paused"):
        cmds.append(f"canaryctl promote {name}{ns}")
    if phase != "RollingBack":
        cmds.append(f"canaryctl abort {name}{ns}")
    if phase == "Progressing":
        cmds.append(f"canaryctl pause {name}{ns}")
    return "  |  ".join(cmds)


def pause_text(
    phase: str, pause_reason: str | None, pause_until: float | None, now: float | None = None
) -> str:
    """What holds a paused rollout and what ends the pause ('' when not paused)."""
    if phase != "Paused":
        return ""
    now = time.time() if now is None else now
    if pause_reason == "step":
        if pause_until is None:
            return "pause step until promoted (no time limit)"
        left = max(0.0, pause_until - now)
        return f"pause step: {format_seconds(left)} left (promote to go on now)"
    if pause_reason == "command":
        return "paused by a pause command until resumed"
    if pause_reason == "stable-degraded":
        return "paused: the stable lost capacity; resumes when it recovers"
    return "paused"

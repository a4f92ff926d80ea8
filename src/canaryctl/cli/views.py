"""Front ends for a running rollout: a rich live view, plain lines, or JSON lines."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from canaryctl.cli import checks
from canaryctl.cli.checks import fmt_value
from canaryctl.driver.report import Notice, Snapshot

PHASE_STYLE = {
    "Succeeded": "bold green",
    "RolledBack": "bold red",
    "RollingBack": "red",
    "Paused": "yellow",
    "Promoting": "cyan",
    "Progressing": "blue",
}


def _step(snap: Snapshot) -> str:
    """Step i/n while stepping; the plan's end once promotion or rollback runs."""
    if snap.step >= snap.steps:
        return f"{snap.steps}/{snap.steps} done"
    return f"{snap.step + 1}/{snap.steps}"


def _weight(snap: Snapshot) -> str:
    if snap.effective_weight is None:
        # The router could not tell (or was not asked): say only what is known.
        return f"{snap.desired_weight}% desired"
    return f"{snap.desired_weight}% desired / {snap.effective_weight:.0f}% effective"


def _bar(weight: float | None, width: int = 30) -> Text:
    w = max(0.0, min(100.0, weight or 0.0))
    filled = round(width * w / 100)
    return Text("█" * filled, style="magenta") + Text("█" * (width - filled), style="green")


def render(snap: Snapshot, notices: list[Notice]) -> Panel:
    """One frame of the live view."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    stage = f" ({snap.stage})" if snap.stage else ""
    head.add_row("phase", Text(snap.phase + stage, style=PHASE_STYLE.get(snap.phase, "")))
    head.add_row("step", _step(snap))
    shown = snap.desired_weight if snap.effective_weight is None else snap.effective_weight
    head.add_row("traffic", Text.assemble(_bar(shown), "  ", _weight(snap)))
    head.add_row("elapsed", f"{snap.elapsed:.0f}s")
    if snap.message:
        head.add_row("status", snap.message)
    if snap.hold_reason:
        head.add_row("waiting", Text(snap.hold_reason, style="yellow"))
    paused = checks.pause_text(snap.phase, snap.pause_reason, snap.pause_until)
    if paused:
        head.add_row("pause", Text(paused, style="yellow"))

    versions = Table(box=None, header_style="bold")
    for col in ("version", "deployment", "ready/desired"):
        versions.add_column(col)
    for role, v in (("stable", snap.stable), ("canary", snap.canary)):
        count = f"{v.ready}/{v.desired}" if v.exists else "gone"
        versions.add_row(role, v.name, count)

    parts: list[Any] = [head, versions]
    if snap.analysis:
        parts.append(_analysis_table(snap.analysis))
    rows = checks.fold(
        snap.current_checks,
        snap.checks,
        phase=snap.phase,
        reason=snap.reason,
        pause_reason=snap.pause_reason,
    )
    if rows:
        parts.append(checks.current_table(rows))
    steer = checks.steer_hint(snap.name, snap.namespace, snap.phase, snap.pause_reason)
    if steer:
        parts.append(Text(f"steer: {steer}", style="dim"))
    if notices:
        parts.append(Text("\n".join(f"• {n.reason}: {n.message}" for n in notices[-5:])))
    return Panel(Group(*parts), title=f"canary {snap.namespace}/{snap.name}")


def _analysis_table(analysis: dict[str, Any]) -> Table:
    """Current evidence per judge: decision, e-values against thresholds, counts."""
    table = Table(box=None, header_style="bold", title="analysis", title_justify="left")
    for col in ("judge", "decision", "rollback e", "promote e", "canary err/req", "stable err/req"):
        table.add_column(col)
    for name, v in analysis.items():
        if not isinstance(v, dict):
            continue
        t = v.get("totals", {})
        bound = v.get("tailBound")
        table.add_row(
            name if bound is None else f"{name} (> {bound:g} s)",
            str(v.get("decision")),
            f"{fmt_value(v.get('rollbackEvalue'))} / {fmt_value(v.get('rollbackThreshold'))}",
            f"{fmt_value(v.get('promoteEvalue'))} / {fmt_value(v.get('promoteThreshold'))}",
            f"{t.get('canaryErrors', 0):.0f}/{t.get('canaryRequests', 0):.0f}",
            f"{t.get('stableErrors', 0):.0f}/{t.get('stableRequests', 0):.0f}",
        )
        # Per-pod evidence: one row per canary pod, its e-value against the pod threshold.
        for pod, evalue in sorted((v.get("pods") or {}).items()):
            table.add_row(
                f"  pod {pod}",
                "",
                f"{fmt_value(evalue)} / {fmt_value(v.get('rollbackThreshold'))}",
            )
    if analysis.get("warning"):
        table.caption = f"warning: {analysis['warning']}"
    return table


class LiveView:
    """A live-updating panel for a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.notices: list[Notice] = []
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def notice(self, notice: Notice) -> None:
        self.notices.append(notice)

    def snapshot(self, snap: Snapshot) -> None:
        self.live.update(render(snap, self.notices))

    def close(self) -> None:
        self.live.stop()


class PlainView:
    """One line per transition and per change of what a live view would show."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stderr
        self.last: tuple[Any, ...] | None = None
        self.started = time.monotonic()

    def _line(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=self.out, flush=True)

    def notice(self, notice: Notice) -> None:
        self._line(f"{notice.type} {notice.reason}: {notice.message}")

    def snapshot(self, snap: Snapshot) -> None:
        eff = None if snap.effective_weight is None else round(snap.effective_weight)
        key = (
            snap.phase,
            snap.stage,
            snap.step,
            snap.desired_weight,
            eff,
            snap.stable.ready,
            snap.stable.desired,
            snap.canary.ready,
            snap.canary.desired,
            snap.hold_reason,
        )
        if key == self.last:
            return
        self.last = key
        self._line(
            f"{snap.phase}{'/' + snap.stage if snap.stage else ''} step {_step(snap)} "
            f"weight {_weight(snap)}; stable {snap.stable.name} "
            f"{snap.stable.ready}/{snap.stable.desired}, canary {snap.canary.name} "
            f"{snap.canary.ready}/{snap.canary.desired}"
            + (f"; waiting: {snap.hold_reason}" if snap.hold_reason else "")
        )

    def close(self) -> None:
        """Nothing to release."""


class JsonView:
    """One JSON object per line on stdout: notices and changed snapshots."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.last: dict[str, Any] | None = None

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        event = {"time": time.time(), "kind": kind, **payload}
        print(json.dumps(event, sort_keys=True), file=self.out, flush=True)

    def notice(self, notice: Notice) -> None:
        self._emit(
            "event", {"type": notice.type, "reason": notice.reason, "message": notice.message}
        )

    def snapshot(self, snap: Snapshot) -> None:
        data = snap.to_dict()
        comparable = {k: v for k, v in data.items() if k != "elapsed"}
        if comparable == self.last:
            return
        self.last = comparable
        self._emit("status", data)

    def close(self) -> None:
        """Nothing to release."""


def make_view(output: str) -> LiveView | PlainView | JsonView:
    """The right view for --output and for whether stderr is a terminal."""
    if output == "json":
        return JsonView()
    if output == "plain" or not sys.stderr.isatty():
        return PlainView()
    return LiveView()

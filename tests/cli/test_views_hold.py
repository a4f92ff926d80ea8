"""What a held rollout waits for reaches every front end: the snapshot (`get`, the live
view), the plain and JSON lines, from the stored status alone (pure: no cluster)."""

from __future__ import annotations

import io
import json

from rich.console import Console

from canaryctl.cli.views import JsonView, PlainView, render
from canaryctl.core import CanaryStatus, PauseReason, Phase, parse_spec
from canaryctl.driver.engine import snapshot_of
from canaryctl.kube.workloads import DeploymentInfo

SPEC = parse_spec(
    {"name": "web", "namespace": "shop", "stable": "web-v1", "canary": "web-v2",
     "service": "web", "steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]}
)  # fmt: skip
STABLE = DeploymentInfo("web-v1", "shop", True, desired_replicas=9, ready_replicas=9)
CANARY = DeploymentInfo("web-v2", "shop", True, desired_replicas=1, ready_replicas=1)
HELD = CanaryStatus(
    phase=Phase.PAUSED, pause_reason=PauseReason.STEP, step_index=1, weight=10,
    hold_reason="waiting for a promote command",
)  # fmt: skip


def snapshot(status: CanaryStatus):
    return snapshot_of(SPEC, status, STABLE, CANARY, 10.0, 3.0)


def test_the_snapshot_and_the_live_view_say_what_the_rollout_waits_for() -> None:
    snap = snapshot(HELD)
    assert snap.hold_reason == "waiting for a promote command"
    console = Console(width=140, record=True)
    console.print(render(snap, []))
    text = console.export_text()
    assert "waiting  waiting for a promote command" in text
    moving = snapshot(HELD.model_copy(update={"hold_reason": ""}))
    console = Console(width=140, record=True)
    console.print(render(moving, []))
    assert "waiting for" not in console.export_text()


def test_plain_and_json_lines_report_a_change_of_the_hold_reason_alone() -> None:
    out = io.StringIO()
    view = PlainView(out)
    missing = HELD.model_copy(
        update={"phase": Phase.PENDING, "hold_reason": "canary Deployment web-v2 not found"}
    )
    view.snapshot(snapshot(missing))
    view.snapshot(snapshot(missing))
    view.snapshot(snapshot(missing.model_copy(update={"hold_reason": "waiting for x"})))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("; waiting: canary Deployment web-v2 not found")
    assert lines[1].endswith("; waiting: waiting for x")

    out = io.StringIO()
    JsonView(out).snapshot(snapshot(HELD))
    assert json.loads(out.getvalue())["hold_reason"] == "waiting for a promote command"

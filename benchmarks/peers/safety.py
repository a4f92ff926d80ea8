"""Pure pieces of the failure-handling benchmark (`failures.py`): what "safe" means, read
from samples of the cluster, and the side-by-side tables.

A *sample* is what the harness read from the API server at one instant, never what a tool
says of itself: the ready endpoints of the Service the users call (its EndpointSlices, as
the EndpointSlice controller computed them from the pods' Ready condition), split by the
version of the pod behind each (its image: the stable's or the new one), how many pods of
the new version exist at all, and the replica counts of the target and of `<target>-primary`.
The tool's phase is recorded beside them, for the timeline only.

Definitions, for a required serving capacity C (the stable's replica count: 2, or the count
the stable was scaled to mid-rollout):

* **traffic-safe**: no ready endpoint of the Service is a pod of the new version, and at
  least C ready endpoints are pods of the stable version: every request goes to the
  stable, at full capacity.
* **safe** (a failed canary withdrawn): traffic-safe, and no pod of the new version exists
  any more: the tool has taken the canary's capacity away, not merely kept traffic off it.
* **promoted** (a good canary finished): no ready endpoint is a stable-version pod, at
  least C are new-version pods, and the target Deployment is at 0 replicas.

*Time to X* after an instant t0 (the image bump, the scale-up, the kill) is the first
sample at or after t0 from which X holds in every later sample of the run (a state that
is reached and lost again does not count); None when it never settles.

No cluster, no clock: the harness feeds samples in; the tests feed made-up ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One reading of the cluster (see the module's docstring)."""

    at: float  # seconds since the epoch
    phase: str  # the tool's Canary phase, as it says (timeline only)
    ready_stable: int  # ready endpoints of the Service whose pod runs the stable version
    ready_new: int  # ready endpoints whose pod runs the new version
    pods_new: int  # pods of the new version, ready or not, not terminating
    target_replicas: int  # spec.replicas of the target Deployment
    primary_replicas: int  # spec.replicas of <target>-primary (0 when absent)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Predicate = Callable[[Sample], bool]


def traffic_safe(capacity: int) -> Predicate:
    """All traffic on the stable version, at least `capacity` ready endpoints."""
    return lambda s: s.ready_new == 0 and s.ready_stable >= capacity


def safe(capacity: int) -> Predicate:
    """Traffic-safe, and the new version has no pod left."""
    ok = traffic_safe(capacity)
    return lambda s: ok(s) and s.pods_new == 0


def promoted(capacity: int) -> Predicate:
    """The new version serves alone at `capacity` or more, the target at 0 replicas."""
    return lambda s: s.ready_stable == 0 and s.ready_new >= capacity and s.target_replicas == 0


def settles_at(samples: Sequence[Sample], since: float, holds: Predicate) -> float | None:
    """Seconds from `since` to the first sample from which `holds` stays true to the end;
    None when it does not hold in the last sample (or there is no sample after `since`)."""
    after = [s for s in samples if s.at >= since]
    if not after or not holds(after[-1]):
        return None
    first = len(after) - 1
    while first > 0 and holds(after[first - 1]):
        first -= 1
    return after[first].at - since


def seconds_where(samples: Sequence[Sample], since: float, holds: Predicate) -> float:
    """Seconds after `since` during which `holds` was true (each sample counts until the
    next one)."""
    after = [s for s in samples if s.at >= since]
    return sum(b.at - a.at for a, b in itertools.pairwise(after) if holds(a))


def max_new_share(samples: Sequence[Sample], since: float) -> float:
    """The largest share of the Service's ready endpoints that were new-version pods."""
    shares = [
        s.ready_new / (s.ready_new + s.ready_stable)
        for s in samples
        if s.at >= since and s.ready_new + s.ready_stable > 0
    ]
    return max(shares, default=0.0)


def min_serving(samples: Sequence[Sample], since: float) -> int | None:
    """The fewest ready endpoints of either version seen after `since`."""
    counts = [s.ready_new + s.ready_stable for s in samples if s.at >= since]
    return min(counts) if counts else None


def phase_timeline(samples: Iterable[Sample], since: float) -> list[tuple[float, str]]:
    """(seconds from `since`, phase) at each change of the tool's phase."""
    out: list[tuple[float, str]] = []
    for s in samples:
        if not out or out[-1][1] != s.phase:
            out.append((round(s.at - since, 1), s.phase))
    return out


# --- the tables --------------------------------------------------------------------------

SCENARIOS: dict[str, str] = {
    "crashloop": "(a) canary crash-looping",
    "unready": "(b) canary never ready",
    "scale": "(c) stable scaled 2 -> 4 mid-rollout",
    "kill": "(d) operator SIGKILLed mid-rollout",
}

#: Per scenario kind: (key of a run's "figures", label).
FIGURES: dict[str, tuple[tuple[str, str], ...]] = {
    "fail": (
        ("safe_s", "bump -> safe (s)"),
        ("safe_within_bound", "safe within 600 s"),
        ("traffic_unsafe_s", "time not traffic-safe (s)"),
        ("max_new_share", "max share of ready endpoints on the canary"),
        ("min_serving", "fewest ready endpoints (needed 2)"),
    ),
    "scale": (
        ("paused_primary", "paused for a user; primary replicas meanwhile"),
        ("user_resumed_s", "scale -> resumed by the user (s)"),
        ("done_s", "scale -> promoted at the new count (s)"),
        ("min_serving_after_4", "fewest ready endpoints once at 4"),
        ("final_primary", "primary replicas at the end"),
        ("final_ready", "ready endpoints at the end"),
        ("kept_count", "kept the count of 4"),
    ),
    "kill": (
        ("resume_s", "restart -> first write (s)"),
        ("done_s", "kill -> promoted (s)"),
        ("min_serving", "fewest ready endpoints (needed 2)"),
        ("completed", "completed correctly"),
    ),
}


def kind_of(scenario: str) -> str:
    return scenario if scenario in ("scale", "kill") else "fail"


def fmt(value: Any) -> str:
    """A cell: '-' for missing, yes/no for booleans, 1 decimal for seconds."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)


def _tools(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in runs:
        if r["tool"] not in seen:
            seen.append(r["tool"])
    return seen


def table(runs: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown table: per scenario its figures and what each tool said, one column per
    tool (configuration), in the order the tools first appear. A tool that did not run a
    scenario shows '-' (never a made-up figure)."""
    tools = _tools(runs)
    by = {(r["scenario"], r["tool"]): r for r in runs}
    out = ["| scenario | figure | " + " | ".join(tools) + " |", "|---|---|" + "---|" * len(tools)]
    for scenario, title in SCENARIOS.items():
        if not any(s == scenario for s, _ in by):
            continue
        rows: list[tuple[str, list[str]]] = []
        for key, label in FIGURES[kind_of(scenario)]:
            rows.append((label, [cell(by.get((scenario, t)), key) for t in tools]))
        rows.append(("time to the tool's final phase (s)", [
            cell(by.get((scenario, t)), "terminal_s") for t in tools
        ]))  # fmt: skip
        rows.append(("final phase (the tool's word)", [
            fmt((by.get((scenario, t)) or {}).get("final_phase")) for t in tools
        ]))  # fmt: skip
        rows.append(("Event reasons (count)", [
            reasons((by.get((scenario, t)) or {}).get("events")) for t in tools
        ]))  # fmt: skip
        for i, (label, cells) in enumerate(rows):
            out.append(f"| {title if i == 0 else ''} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def cell(run: Mapping[str, Any] | None, key: str) -> str:
    """A figure of a run: '-' when the run or the figure is missing (not measured),
    'error' for a run the harness could not finish, 'never' for a time (`*_s`) that was
    measured and never came within the run's bound."""
    if run is None:
        return "-"
    if run.get("error"):
        return "error"
    figures = run.get("figures") or {}
    if key not in figures:
        return "-"
    if figures[key] is None and key.endswith("_s"):
        return f"never ({fmt(run.get('bound_s'))} s)" if run.get("bound_s") else "never"
    return fmt(figures[key])


def reasons(events: Sequence[Mapping[str, Any]] | None) -> str:
    """`Reason xN` per distinct reason, in the order first seen; '-' when none."""
    if not events:
        return "-"
    counts: dict[str, int] = {}
    for e in events:
        counts[e["reason"]] = counts.get(e["reason"], 0) + int(e.get("count") or 1)
    return ", ".join(f"{r} x{n}" if n > 1 else r for r, n in counts.items())


def messages(runs: Sequence[Mapping[str, Any]], width: int = 160) -> str:
    """What each tool said, per scenario: its Warning Events' and last Events' messages and
    its status conditions (Markdown list, messages cut at `width` characters)."""
    out: list[str] = []
    for scenario, title in SCENARIOS.items():
        for r in (r for r in runs if r["scenario"] == scenario):
            out.append(f"- {title}, {r['tool']}: phase {fmt(r.get('final_phase'))}")
            for e in r.get("events") or []:
                text = " ".join(str(e.get("message") or "").split())
                text = text if len(text) <= width else text[: width - 3] + "..."
                count = f" x{e['count']}" if int(e.get("count") or 1) > 1 else ""
                out.append(f"  - Event {e.get('type')} {e['reason']}{count}: {text}")
            for c in r.get("conditions") or []:
                text = " ".join(str(c.get("message") or "").split())[:width]
                out.append(
                    f"  - condition {c.get('type')}={c.get('status')} "
                    f"({c.get('reason') or '-'}): {text}"
                )
    return "\n".join(out) + "\n"

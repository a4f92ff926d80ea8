"""The traffic benchmark's pure half (no cluster, no clock): what the route objects say the
canary's weight is, the share of answers each version gave while a weight held, the failed
requests by the tool's phase, and the table. `traffic.py` measures; this reads.

Times are epoch seconds. A *mark* is one poll of the cluster: the weight the route objects
give the canary (percent, None when they could not be read) and the tool's own phase.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The two-sided 99.9% normal quantile: a measured share outside its binomial interval
#: would be a surprise, not noise.
Z = 3.29


@dataclass(frozen=True)
class Answer:
    """One request of a loop: when it was sent, what came back (or why nothing did)."""

    at: float
    loop: str
    status: int | None
    version: str | None
    latency: float
    error: str | None = None

    @property
    def failed(self) -> bool:
        """No answer (refused, reset, timed out), any status but 2xx, or an answer that
        names no version (not the app answering)."""
        return self.status is None or not 200 <= self.status < 300 or self.version is None

    @property
    def code(self) -> str:
        return str(self.status) if self.status is not None else (self.error or "no answer")


@dataclass(frozen=True)
class Mark:
    """One poll: the canary's weight in the route objects, the tool's phase and weight."""

    at: float
    weight: int | None
    phase: str
    tool_weight: int | None = None


# --- the weight the route objects give the canary -----------------------------------------

CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
WEIGHT_ANNOTATION = "nginx.ingress.kubernetes.io/canary-weight"
TOTAL_ANNOTATION = "nginx.ingress.kubernetes.io/canary-weight-total"


def nginx_weight(canary_ingress: Mapping[str, Any] | None) -> int:
    """Percent of requests the ingress-nginx canary annotations send to the canary Ingress:
    0 without that Ingress or with `canary` not "true" (both tools name it
    `<ingress>-canary`)."""
    if not canary_ingress:
        return 0
    notes = (canary_ingress.get("metadata") or {}).get("annotations") or {}
    if notes.get(CANARY_ANNOTATION) != "true":
        return 0
    try:
        weight = int(notes.get(WEIGHT_ANNOTATION, "0"))
        total = int(notes.get(TOTAL_ANNOTATION, "100"))
    except ValueError:
        return 0
    if total <= 0:
        return 0
    return round(100 * min(max(weight, 0), total) / total)


def gateway_weight(route: Mapping[str, Any] | None, canary_service: str) -> int:
    """Percent of the HTTPRoute's weight on `canary_service` in the first rule that names it
    (the weighted rule; a header rule of testers comes first and names only the canary, so
    the rule with more than one backend is taken when there is one). 0 without the route."""
    if not route:
        return 0
    rules = (route.get("spec") or {}).get("rules") or []
    candidates = [r for r in rules if any(b.get("name") == canary_service
                                          for b in r.get("backendRefs") or [])]  # fmt: skip
    weighted = [r for r in candidates if len(r.get("backendRefs") or []) > 1]
    chosen = (weighted or candidates or [None])[0]
    if chosen is None:
        return 0
    refs = chosen.get("backendRefs") or []
    weights = [(b.get("name"), int(b.get("weight", 1))) for b in refs]
    total = sum(w for _, w in weights)
    if total <= 0:
        return 0
    return round(100 * sum(w for n, w in weights if n == canary_service) / total)


def endpoint_weight(ready_by_side: Mapping[str, int], canary_side: str = "canary") -> int:
    """Percent of the apex Service's ready endpoints that are canary pods (the replicas
    router's split, and Flagger's kubernetes provider, whose apex selects the primary)."""
    total = sum(ready_by_side.values())
    return round(100 * ready_by_side.get(canary_side, 0) / total) if total else 0


# --- what the loops measured --------------------------------------------------------------


#: The tools' phases in which a weight is the analysis step (canaryctl: Progressing and
#: Paused; Flagger: Progressing). Flagger keeps the last weight while it copies the canary's
#: template into the primary (Promoting): the primary then answers with the new version
#: too, so those windows are kept apart.
ANALYSIS_PHASES = frozenset({"Progressing", "Paused"})


@dataclass
class Step:
    """The answers sent while the route objects held one canary weight (0 < w < 100)."""

    weight: int
    start: float
    end: float
    phase: str = ""
    answered: int = 0
    canary: int = 0
    failed: int = 0
    by_loop: dict[str, list[int]] = field(default_factory=dict)  # loop -> [answered, canary]

    @property
    def share(self) -> float:
        """Canary's share of the answered requests, percent."""
        return 100.0 * self.canary / self.answered if self.answered else math.nan

    @property
    def within(self) -> bool:
        """The canary count lies in the 99.9% binomial interval of the weight."""
        if not self.answered:
            return False
        p = self.weight / 100
        sd = math.sqrt(self.answered * p * (1 - p))
        return abs(self.canary - self.answered * p) <= Z * sd + 0.5

    def row(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "phase": self.phase,
            "seconds": round(self.end - self.start, 2),
            "answered": self.answered,
            "canary": self.canary,
            "share_pct": round(self.share, 2) if self.answered else None,
            "within_999_interval": self.within,
            "failed": self.failed,
            "by_loop": {
                loop: {
                    "answered": n,
                    "canary": c,
                    "share_pct": round(100 * c / n, 2) if n else None,
                }
                for loop, (n, c) in sorted(self.by_loop.items())
            },
        }


def steps(
    marks: Sequence[Mark],
    answers: Iterable[Answer],
    canary: str,
    settle: float = 1.0,
    phases: frozenset[str] | None = ANALYSIS_PHASES,
) -> list[Step]:
    """One Step per run of marks with the same weight strictly between 0 and 100 (and a
    tool phase in `phases`; None: any), from `settle` seconds after the first mark of that
    weight (the proxy applies a change a moment after the object changed) to the first
    mark of another weight or phase group. Answers from requests sent in that window
    count; failed ones are counted apart, not in the share."""
    windows: list[Step] = []
    ordered = sorted(marks, key=lambda m: m.at)

    def group(mark: Mark) -> tuple[int | None, bool | str]:
        # Progressing and Paused are one analysis step (canaryctl pauses at each weight).
        return mark.weight, (mark.phase in phases) if phases is not None else mark.phase

    i = 0
    while i < len(ordered):
        key = group(ordered[i])
        weight = ordered[i].weight
        j = i
        while j + 1 < len(ordered) and group(ordered[j + 1]) == key:
            j += 1
        end = ordered[j + 1].at if j + 1 < len(ordered) else ordered[j].at
        counted = phases is None or ordered[i].phase in phases
        start = ordered[i].at + (settle if ordered[i - 1].weight != weight or i == 0 else 0.0)
        if weight is not None and 0 < weight < 100 and counted and end - start >= 1.0:
            windows.append(Step(weight, start, end, ordered[i].phase))
        i = j + 1
    for answer in answers:
        for step in windows:
            if step.start <= answer.at < step.end:
                if answer.failed:
                    step.failed += 1
                    break
                step.answered += 1
                step.canary += answer.version == canary
                tally = step.by_loop.setdefault(answer.loop, [0, 0])
                tally[0] += 1
                tally[1] += answer.version == canary
                break
    return windows


def phase_at(marks: Sequence[Mark], at: float) -> str:
    """The tool's phase at time `at` (the last mark at or before it; the first before any)."""
    phase = marks[0].phase if marks else ""
    for mark in marks:
        if mark.at > at:
            break
        phase = mark.phase
    return phase


def summarize(
    answers: Sequence[Answer], marks: Sequence[Mark], canary: str, stable: str, since: float
) -> dict[str, Any]:
    """Requests and failures per loop, failures by the tool's phase and by code, the first
    failures (seconds after `since`), versions answering, and the split at each step."""
    ordered = sorted(marks, key=lambda m: m.at)
    loops: dict[str, dict[str, Any]] = {}
    by_phase: Counter[str] = Counter()
    for answer in answers:
        loop = loops.setdefault(
            answer.loop, {"requests": 0, "failed": 0, "codes": Counter(), "versions": Counter()}
        )
        loop["requests"] += 1
        if answer.failed:
            loop["failed"] += 1
            loop["codes"][answer.code] += 1
            by_phase[phase_at(ordered, answer.at) or "?"] += 1
        else:
            loop["versions"][answer.version] += 1
    for name, loop in loops.items():
        latencies = sorted(a.latency for a in answers if a.loop == name and not a.failed)
        loop["latency_p99_s"] = (
            round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 4)
            if latencies
            else None
        )
        loop["codes"] = dict(loop["codes"])
        loop["versions"] = dict(loop["versions"])
    failures = [a for a in sorted(answers, key=lambda a: a.at) if a.failed]
    known = (canary, stable)
    others = Counter(a.version for a in answers if not a.failed and a.version not in known)
    return {
        "requests": sum(loop["requests"] for loop in loops.values()),
        "failed": sum(loop["failed"] for loop in loops.values()),
        "loops": loops,
        "failed_by_phase": dict(by_phase),
        "first_failures": [
            {
                "after_s": round(a.at - since, 2),
                "loop": a.loop,
                "code": a.code,
                "phase": phase_at(ordered, a.at),
            }
            for a in failures[:20]
        ],
        "unexpected_versions": dict(others),
        "steps": [s.row() for s in steps(ordered, answers, canary)],
        # Weights held outside the analysis (e.g. Flagger's Promoting, the primary already
        # on the new version): for the record, not compared with the weight.
        "steps_other_phases": [
            s.row()
            for s in steps(ordered, answers, canary, phases=None)
            if s.phase not in ANALYSIS_PHASES
        ],
    }


def phase_changes(marks: Sequence[Mark], since: float) -> list[tuple[float, str, int | None]]:
    """The tool's phase and the route weight each time either changed: (s after `since`,
    phase, weight)."""
    out: list[tuple[float, str, int | None]] = []
    last: tuple[str, int | None] | None = None
    for mark in sorted(marks, key=lambda m: m.at):
        now = (mark.phase, mark.weight)
        if now != last:
            out.append((round(mark.at - since, 2), mark.phase, mark.weight))
            last = now
    return out


# --- the table ----------------------------------------------------------------------------


def _steps_cell(run: Mapping[str, Any]) -> str:
    cells = []
    for s in run["summary"]["steps"]:
        share = "-" if s["share_pct"] is None else f"{s['share_pct']:.1f}"
        mark = "" if s["within_999_interval"] else " (!)"
        cells.append(f"{s['weight']}: {share} of {s['answered']}{mark}")
    return "; ".join(cells) or "-"


def _failed_cell(run: Mapping[str, Any]) -> str:
    summary = run["summary"]
    parts = [
        f"{loop}: {v['failed']}/{v['requests']}" for loop, v in sorted(summary["loops"].items())
    ]
    codes: Counter[str] = Counter()
    for v in summary["loops"].values():
        codes.update(v["codes"])
    detail = ", ".join(f"{c} x{n}" for c, n in codes.most_common(3))
    return f"{summary['failed']} ({'; '.join(parts)})" + (f" [{detail}]" if detail else "")


def table(runs: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown table: a row per router, tool and scenario."""
    lines = [
        "| round | router | tool | scenario | ended | took (s) | failed check -> weight 0 (s) "
        "| failed / requests (by loop) | canary share at each weight: weight: measured % of "
        "answers | answering after the end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        back = run.get("failed_check_to_weight_0_s")
        if not any(weight for _, _, weight in run.get("timeline") or []):
            back = None  # the canary never had weight (blue/green): nothing to take back
        after = run["summary"].get("after_end") or {}
        end = ", ".join(f"{k} x{v}" for k, v in sorted(after.items())) or "-"
        lines.append(
            f"| {run.get('round', 1)} | {run['router']} | {run['tool']} | {run['scenario']} "
            f"| {run['ended']} | {run['took_s']:.0f} | {'-' if back is None else f'{back:.1f}'} "
            f"| {_failed_cell(run)} | {_steps_cell(run)} | {end} |"
        )
    return "\n".join(lines)

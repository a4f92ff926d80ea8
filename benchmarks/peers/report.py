"""Pure pieces of the side-by-side benchmark: reading the API server's audit log, summing
its requests per client, percentiles, and the one table of figures and ratios.

No cluster, no clock: `compare.py` runs the tools and feeds these functions; the tests feed
them lines and rows of a known shape, so the table the README shows is the table the
harness prints from its own JSON.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: Verbs that change the cluster: the first of these after an image bump is a tool's reaction.
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class Request:
    """One audited API request (metadata only)."""

    user: str
    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    received: float  # requestReceivedTimestamp, seconds since the epoch

    @property
    def kind(self) -> str:
        """`resource` or `resource/subresource`, the unit requests are split by."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def _epoch(stamp: str) -> float:
    # RFC 3339 with microseconds and a Z, e.g. 2026-11-30T07:01:02.123456Z
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def parse_audit(lines: Iterable[str]) -> list[Request]:
    """Requests of an audit log written with the `Metadata` level (one JSON event a line).

    Events of other stages than ResponseComplete/Panic (if the policy let them through) and
    lines cut short by a log still being written are skipped, so a request counts once.
    """
    out: list[Request] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line, half written
        if event.get("stage") not in ("ResponseComplete", "Panic"):
            continue
        ref = event.get("objectRef") or {}
        out.append(
            Request(
                user=(event.get("user") or {}).get("username", ""),
                verb=event.get("verb", ""),
                resource=ref.get("resource", ""),
                subresource=ref.get("subresource", ""),
                namespace=ref.get("namespace", ""),
                name=ref.get("name", ""),
                code=int((event.get("responseStatus") or {}).get("code", 0)),
                received=_epoch(event["requestReceivedTimestamp"]),
            )
        )
    return out


def per_minute(
    requests: Sequence[Request], user: str, start: float, end: float
) -> tuple[float, dict[str, float]]:
    """Requests of `user` received in [start, end): (total per minute, per verb+kind per
    minute, largest first). Watches are counted when they end, like any request."""
    minutes = max(end - start, 1e-9) / 60
    split: Counter[str] = Counter()
    for r in requests:
        if r.user == user and start <= r.received < end:
            split[f"{r.verb} {r.kind}"] += 1
    total = sum(split.values())
    return total / minutes, {k: v / minutes for k, v in split.most_common()}


def first_writes(
    requests: Sequence[Request], user: str, since: Mapping[str, float], prefix_match: bool = True
) -> dict[str, float]:
    """For each canary name in `since` (its image-bump time), the time of `user`'s first
    write to an object of that canary (the name itself, or `<name>-primary`/`-canary`...)
    after the bump: the tool's first action seen from the API server."""
    writes = [r for r in requests if r.verb in WRITE_VERBS]
    return first_requests(writes, user, since, prefix_match)


def first_requests(
    requests: Sequence[Request], user: str, since: Mapping[str, float], prefix_match: bool = True
) -> dict[str, float]:
    """As `first_writes`, for requests of any verb that name an object of the canary: when
    the tool first looked at it after the bump (a poll, or a reconcile woken by a watch)."""
    first: dict[str, float] = {}
    for r in sorted(requests, key=lambda r: r.received):
        if r.user != user or r.resource == "events" or not r.name:
            continue
        owner = r.name
        if owner not in since and prefix_match:
            owner = r.name.rsplit("-", 1)[0]
        t0 = since.get(owner)
        if t0 is not None and r.received >= t0 and owner not in first:
            first[owner] = r.received - t0
    return first


def percentiles(values: Iterable[float]) -> tuple[float, float]:
    """(p50, p99) of the values; nan when there are none (a tool that never reacted)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan, math.nan
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return statistics.median(ordered), p99


# --- the table ------------------------------------------------------------------------

#: (key in a run's "figures", label, unit)
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("init_s", "initialise all N", "s"),
    ("idle_cpu_s_per_min", "idle CPU", "CPU-s/min"),
    ("idle_rss_mib", "idle RSS", "MiB"),
    ("peak_rss_mib", "peak RSS", "MiB"),
    ("idle_requests_per_min", "idle API requests", "/min"),
    ("wave_requests_per_min", "API requests during the bump wave", "/min"),
    ("wave_requests", "API requests for the whole wave", "total"),
    ("wave_cpu_s_per_min", "CPU during the bump wave", "CPU-s/min"),
    ("wave_cpu_s", "CPU for the whole wave", "CPU-s"),
    ("react_p50_s", "bump -> first action p50", "s"),
    ("react_p99_s", "bump -> first action p99", "s"),
    ("done_p50_s", "bump -> Succeeded p50", "s"),
    ("done_p99_s", "bump -> Succeeded p99", "s"),
    ("events_delivered_pct", "Events delivered (higher is better)", "%"),
)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def ratio(peer: Any, ours: Any) -> str:
    """peer / canaryctl as `12.3x` ("-" when either is missing or ours is 0)."""
    try:
        if peer is None or ours is None or math.isnan(peer) or math.isnan(ours) or ours == 0:
            return "-"
    except TypeError:
        return "-"
    r = peer / ours
    return f"{r:.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def _figures(run: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's figures plus those derived from them (the wave's total requests)."""
    if run is None:
        return {}
    figures = dict(run["figures"])
    rate, seconds = figures.get("wave_requests_per_min"), run.get("wave_s")
    if rate is not None and seconds is not None:
        figures["wave_requests"] = rate * seconds / 60
    cpu = figures.get("wave_cpu_s_per_min")
    if cpu is not None and seconds is not None:
        figures["wave_cpu_s"] = cpu * seconds / 60
    return figures


def _events(run: Mapping[str, Any] | None) -> str:
    events = (run or {}).get("events")
    return f"{events['delivered']} / {events['logged']}" if events else "-"


def table(runs: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown table per N: each figure for canaryctl, each peer, and peer/canaryctl.

    `runs` are the saved run records: {"tool", "n", "figures": {...}, ...}.
    """
    out: list[str] = []
    for n in sorted({int(r["n"]) for r in runs}):
        at_n = [r for r in runs if int(r["n"]) == n]
        ours = next((r for r in at_n if r["tool"] == "canaryctl"), None)
        peers = [r for r in at_n if r["tool"] != "canaryctl"]
        head = ["N = " + str(n), "canaryctl"]
        for p in peers:
            head += [p["tool"], f"{p['tool']} / canaryctl"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for key, label, unit in FIGURES:
            mine = _figures(ours).get(key)
            row = [f"{label} ({unit})", _fmt(mine)]
            for p in peers:
                theirs = _figures(p).get(key)
                row += [_fmt(theirs), ratio(theirs, mine)]
            out.append("| " + " | ".join(row) + " |")
        row = ["Events (delivered / logged by the tool)", _events(ours)]
        for p in peers:
            row += [_events(p), "-"]
        out.append("| " + " | ".join(row) + " |")
        loads = [f"{r['tool']} {r.get('load_range', '-')}" for r in at_n]
        out.append("")
        out.append(f"Load average (1 min) during the runs: {'; '.join(loads)}.")
        out.append("")
    return "\n".join(out).rstrip() + "\n"

"""`canaryctl report NAME`: a picture of one rollout from its stored record and Prometheus.

What it shows: the canary weight over time (the router's expected and served share, from
the `traffic` check records), requests per second and error ratio by version (Prometheus,
when the rollout's analysis names one), the judge's evidence against its thresholds (the
analysis records, one per look), and the verdict with its reason.

Two renderings, chosen for where they are read:
- HTML with inline SVG drawn here: one self-contained file, no JavaScript and no plotting
  dependency, opens in any browser or CI artifact viewer (the default, and the demo's);
- PNG through matplotlib (optional extra `canaryctl[report]`): for chat, issues and docs.
Both draw the same `ReportData`, which tests read directly.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Points = list[tuple[float, float]]
STABLE, CANARY = "#2e7d32", "#c2185b"


@dataclass
class ReportData:
    """Everything one report draws; times are seconds since the rollout started."""

    name: str
    namespace: str
    phase: str
    reason: str
    message: str
    started_at: float
    ended_at: float
    stable: str
    canary: str
    weights: dict[str, Points] = field(default_factory=dict)  # "expected", "served"
    evidence: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: dict[str, Points] = field(default_factory=dict)  # by version label value
    error_ratio: dict[str, Points] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    prometheus_note: str = ""
    checks: list[tuple[str, str, str]] = field(default_factory=list)  # name, state, detail

    @property
    def title(self) -> str:
        return f"canary {self.namespace}/{self.name}: {self.phase}"

    @property
    def verdict_text(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.phase}{why}: {self.message}" if self.message else f"{self.phase}{why}"


def _is_analysis(name: str) -> bool:
    # Judge records are named "<metric> (<judge>)"; webhooks "webhook <name> (<type>)".
    return name.endswith(")") and not name.startswith("webhook ")


def build(
    spec: Any, status: Any, *, prometheus: Any = None, now: float | None = None
) -> ReportData:
    """A report from a rollout's spec and status (`CanarySpec`, `CanaryStatus`).

    `prometheus` is a callable (promql, label, start, end, step) -> {label value: points}
    (see `providers.prometheus_range.query_range_by`), None to skip the traffic panels.
    """
    from canaryctl.cli import checks

    now = time.time() if now is None else now
    history = [c.model_dump(mode="json") for c in status.history]
    start = status.started_at or (history[0]["time"] if history else now)
    end = max([start, *(c["time"] for c in history)])
    if not status.phase.terminal:
        end = now
    stable, canary = spec.pair
    data = ReportData(
        name=spec.name,
        namespace=spec.namespace,
        phase=status.phase.value,
        reason=status.reason,
        message=status.message,
        started_at=start,
        ended_at=end,
        stable=stable,
        canary=canary,
        verdict=status.last_verdict,
    )
    expected: Points = [(0.0, 0.0)]
    served: Points = []
    for c in history:
        if c["name"] == "traffic" and c["threshold"] is not None:
            expected.append((c["time"] - start, float(c["threshold"])))
            served.append((c["time"] - start, float(c["value"])))
        elif _is_analysis(c["name"]) and c["value"] is not None:
            data.evidence.setdefault(c["name"], []).append({**c, "t": c["time"] - start})
    final = 100.0 if status.phase.value == "Succeeded" else float(status.weight)
    expected.append((end - start, final))
    data.weights = {"expected": expected, "served": served}
    rows = checks.fold(
        [c.model_dump(mode="json") for c in status.checks.values()],
        history,
        phase=data.phase,
        reason=data.reason,
    )
    data.checks = [(str(r.record["name"]), r.state, str(r.record.get("message", ""))) for r in rows]
    if prometheus is not None:
        _traffic(data, spec, prometheus)
    return data


def _traffic(data: ReportData, spec: Any, prometheus: Any) -> None:
    """Requests/s and error ratio by version over the rollout, from Prometheus."""
    from canaryctl.driver.analysis import parse_analysis
    from canaryctl.errors import AnalysisError

    config = parse_analysis(spec)
    label = config.version_label if config else "version"
    app = (config.app if config else None) or spec.service
    sel = f'namespace="{spec.namespace}",app="{app}"'
    span = max(data.ended_at - data.started_at, 1.0)
    step = max(1.0, round(span / 120))  # about 120 points, never finer than a second
    window = f"{max(int(4 * step), 5)}s"  # rate() needs a few scrapes per window
    rate = f"sum by ({label}) (rate(http_requests_total{{{sel}}}[{window}]))"
    bad = f'sum by ({label}) (rate(http_requests_total{{{sel},code=~"5.."}}[{window}]))'
    t0, t1 = data.started_at, data.ended_at
    try:
        requests = prometheus(rate, label, t0, t1, step)
        errors = prometheus(bad, label, t0, t1, step)
    except AnalysisError as exc:
        data.prometheus_note = f"no traffic panels: {exc}"
        return
    data.requests = {v: [(t - t0, y) for t, y in pts] for v, pts in sorted(requests.items())}
    for version, pts in data.requests.items():
        errs = dict((round(t, 3), y) for t, y in ((t - t0, y) for t, y in errors.get(version, [])))
        data.error_ratio[version] = [(t, errs.get(round(t, 3), 0.0) / r) for t, r in pts if r > 0]
    if not data.requests:
        data.prometheus_note = f"Prometheus has no http_requests_total series for {sel}"


# --- SVG (self-contained HTML) ------------------------------------------------------------


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo or 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def svg_chart(
    title: str,
    series: Mapping[str, Points],
    *,
    colors: Mapping[str, str] | None = None,
    hlines: Mapping[str, float] | None = None,
    y_label: str = "",
    log_y: bool = False,
    steps: Sequence[str] = (),
    width: int = 760,
    height: int = 240,
) -> str:
    """One line chart as an SVG element: x is seconds since the start of the rollout.

    `steps` names series drawn as steps (a weight holds until the next change); `hlines`
    are dashed horizontal lines (thresholds), labelled at the right.
    """
    colors = colors or {}
    hlines = hlines or {}
    pad_l, pad_r, pad_t, pad_b = 60, 190, 28, 36
    pts = [p for s in series.values() for p in s]
    ys = [y for _, y in pts] + list(hlines.values())
    if log_y:
        ys = [y for y in ys if y > 0]
    xs = [x for x, _ in pts] or [0.0, 1.0]
    x0, x1 = min(0.0, *xs), max(xs) if max(xs) > 0 else 1.0
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if log_y:
        y0, y1 = math.log10(min(y0, 1.0)), math.log10(max(y1, 1.0)) + 0.2
    else:
        y0, y1 = min(0.0, y0), (y1 * 1.1 if y1 > 0 else 1.0)
    if y1 <= y0:
        y1 = y0 + 1
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def sx(x: float) -> float:
        return pad_l + w * (x - x0) / ((x1 - x0) or 1)

    def sy(y: float) -> float:
        v = math.log10(max(y, 1e-12)) if log_y else y
        return pad_t + h * (1 - (v - y0) / (y1 - y0))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}" font-family="sans-serif" '
        f'font-size="11">',
        f'<text x="{pad_l}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
    ]
    for t in _ticks(x0, x1):
        out.append(f'<text x="{sx(t):.1f}" y="{pad_t + h + 14}" text-anchor="middle">{t:g}</text>')
    yt = [10.0**e for e in range(math.floor(y0), math.ceil(y1) + 1)] if log_y else _ticks(y0, y1)
    for t in yt:
        out.append(f'<text x="{pad_l - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        out.append(
            f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
        )
    out.append(
        f'<text x="{pad_l + w / 2}" y="{height - 4}" text-anchor="middle">'
        "seconds since start</text>"
    )
    if y_label:
        out.append(
            f'<text x="12" y="{pad_t + h / 2}" transform="rotate(-90 12 {pad_t + h / 2})" '
            f'text-anchor="middle">{html.escape(y_label)}</text>'
        )
    palette = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f"]
    legend_y = pad_t + 10
    for i, (name, s) in enumerate(series.items()):
        color = colors.get(name, palette[i % len(palette)])
        path: list[tuple[float, float]] = []
        for j, (x, y) in enumerate(s):
            if name in steps and j:
                path.append((x, s[j - 1][1]))
            path.append((x, y))
        if path:
            d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in path)
            out.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{d}">'
                f"<title>{html.escape(name)}</title></polyline>"
            )
            for x, y in s:
                out.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2" fill="{color}" '
                    f'data-series="{html.escape(name)}" data-x="{x:.3f}" data-y="{y:.6g}"/>'
                )
        out.append(
            f'<text x="{pad_l + w + 8}" y="{legend_y}" fill="{color}">■ {html.escape(name)}</text>'
        )
        legend_y += 14
    for k, (name, y) in enumerate(hlines.items()):
        if log_y and y <= 0:
            continue
        color = ("#d32f2f", "#2e7d32")[k % 2]
        out.append(
            f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
            f'stroke="{color}" stroke-dasharray="5,4"/>'
        )
        out.append(
            f'<text x="{pad_l + w + 8}" y="{legend_y}" fill="{color}">'
            f"-- {html.escape(name)} {y:g}</text>"
        )
        legend_y += 14
    out.append("</svg>")
    return "\n".join(out)


def _version_colors(data: ReportData, names: Sequence[str]) -> dict[str, str]:
    """Stable green, canary magenta when the version labels can be told apart."""
    ordered = sorted(names)
    if len(ordered) == 2:
        return {ordered[0]: STABLE, ordered[1]: CANARY}
    return {}


def _evidence_charts(
    data: ReportData,
) -> list[tuple[str, dict[str, Points], dict[str, float], bool]]:
    """Per judge: its record per look against the threshold that would roll back, and the
    last look's promotion evidence against its threshold (e-values on a log scale)."""
    charts = []
    for name, records in data.evidence.items():
        metric = name.split(" (")[0]
        last = (data.verdict or {}).get(metric)
        last = last if isinstance(last, dict) else {}
        sequential = last.get("rollbackEvalue") is not None or "sequential" in name
        label = "rollback e-value" if sequential else "success rate"
        series = {label: [(r["t"], float(r["value"])) for r in records]}
        thresholds = [float(r["threshold"]) for r in records if r.get("threshold") is not None]
        hl = {"rollback threshold" if sequential else "min success rate": thresholds[-1]}
        if not thresholds:
            hl = {}
        if last.get("promoteEvalue") is not None and records:
            series["promote e-value (last look)"] = [(records[-1]["t"], last["promoteEvalue"])]
            if last.get("promoteThreshold") is not None:
                hl["promote threshold"] = float(last["promoteThreshold"])
        charts.append((f"evidence: {name}", series, hl, sequential))
    return charts


def to_html(data: ReportData) -> str:
    """A self-contained HTML page: verdict, checks, and inline SVG charts (no scripts)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(data.title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:780px}"
        "td,th{padding:2px 10px;text-align:left}.FAIL{color:#c62828;font-weight:bold}"
        ".pass{color:#2e7d32}</style></head><body>",
        f"<h1>{e(data.title)}</h1>",
        f"<p class='verdict'><b>verdict:</b> {e(data.verdict_text)}</p>",
        f"<p>stable <b>{e(data.stable)}</b>, canary <b>{e(data.canary)}</b>; "
        f"{data.ended_at - data.started_at:.0f} s from "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(data.started_at))}</p>",
    ]
    w = data.weights
    parts.append(
        svg_chart(
            "canary weight (%)",
            {"expected": w.get("expected", []), "served": w.get("served", [])},
            colors={"expected": "#1565c0", "served": CANARY},
            steps=("expected",),
            y_label="%",
        )
    )
    if data.requests:
        colors = _version_colors(data, list(data.requests))
        parts.append(
            svg_chart(
                "requests per second by version", data.requests, colors=colors, y_label="req/s"
            )
        )
        parts.append(
            svg_chart(
                "error ratio by version (5xx / all)",
                data.error_ratio,
                colors=colors,
                y_label="ratio",
            )
        )
    elif data.prometheus_note:
        parts.append(f"<p><i>{e(data.prometheus_note)}</i></p>")
    for title, series, hl, log in _evidence_charts(data):
        y_label = "e-value" if log else "success rate"
        parts.append(svg_chart(title, series, hlines=hl, log_y=log, y_label=y_label))
    if data.verdict:
        parts.append(
            "<h2>judge evidence (last look)</h2><table><tr><th>judge</th>"
            "<th>decision</th><th>rollback e / threshold</th>"
            "<th>promote e / threshold</th><th>canary err/req</th>"
            "<th>stable err/req</th></tr>"
        )
        for name, v in data.verdict.items():
            if not isinstance(v, dict):
                continue
            t = v.get("totals", {})
            parts.append(
                f"<tr><td>{e(name)}</td><td>{e(str(v.get('decision')))}</td>"
                f"<td>{_g(v.get('rollbackEvalue'))} / {_g(v.get('rollbackThreshold'))}</td>"
                f"<td>{_g(v.get('promoteEvalue'))} / {_g(v.get('promoteThreshold'))}</td>"
                f"<td>{t.get('canaryErrors', 0):.0f}/{t.get('canaryRequests', 0):.0f}</td>"
                f"<td>{t.get('stableErrors', 0):.0f}/{t.get('stableRequests', 0):.0f}</td></tr>"
            )
        parts.append("</table>")
    parts.append(
        "<h2>checks (current state)</h2><table><tr><th>check</th><th>state</th><th>detail</th></tr>"
    )
    for name, state, detail in data.checks:
        parts.append(
            f"<tr><td>{e(name)}</td><td class='{e(state)}'>{e(state)}</td><td>{e(detail)}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)


def _g(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def to_png(data: ReportData, path: Path) -> None:
    """The same charts as one PNG, with matplotlib (the `report` extra)."""
    from canaryctl.errors import SpecError

    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: files only
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SpecError(
            "--png", "needs matplotlib: pip install 'canaryctl[report]' (or use --html)"
        ) from exc
    evidence = _evidence_charts(data)
    panels = 1 + (2 if data.requests else 0) + len(evidence)
    fig, axes = plt.subplots(panels, 1, figsize=(9, 2.6 * panels + 0.8), squeeze=False)
    axes = [a[0] for a in axes]
    import textwrap

    verdict = textwrap.fill(data.verdict_text, 110)
    fig.suptitle(f"{data.title}\n{verdict}", fontsize=10)
    ax = axes[0]
    exp = data.weights.get("expected", [])
    if exp:
        ax.step([x for x, _ in exp], [y for _, y in exp], where="post", label="expected")
    served = data.weights.get("served", [])
    if served:
        ax.plot([x for x, _ in served], [y for _, y in served], "o", color=CANARY, label="served")
    ax.set_title("canary weight (%)", fontsize=10)
    ax.set_ylim(-2, 105)
    ax.legend(loc="upper left", fontsize=8)
    i = 1
    if data.requests:
        colors = _version_colors(data, list(data.requests))
        for title, series in (
            ("requests per second by version", data.requests),
            ("error ratio by version (5xx / all)", data.error_ratio),
        ):
            ax = axes[i]
            for version, pts in series.items():
                ax.plot(
                    [x for x, _ in pts],
                    [y for _, y in pts],
                    label=version,
                    color=colors.get(version),
                )
            ax.set_title(title, fontsize=10)
            ax.legend(loc="upper left", fontsize=8)
            i += 1
    for title, series, hl, log in evidence:
        ax = axes[i]
        for name, pts in series.items():
            style = "*" if name.startswith("promote") else ".-"
            ax.plot([x for x, _ in pts], [y for _, y in pts], style, label=name, markersize=9)
        for (name, y), color in zip(hl.items(), ("#d32f2f", "#2e7d32"), strict=False):
            ax.axhline(y, color=color, linestyle="--", label=f"{name} {y:g}")
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        i += 1
    axes[-1].set_xlabel("seconds since start")
    if data.prometheus_note and not data.requests:
        fig.text(0.01, 0.01, data.prometheus_note, fontsize=8, style="italic")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load(name: str, namespace: str, kubeconfig: Any = None, context: Any = None) -> ReportData:
    """The report of a stored rollout (either record kind), with Prometheus when configured."""
    from functools import partial

    from canaryctl.cli.manage import _records, _stores
    from canaryctl.core.models import CanaryStatus, parse_spec
    from canaryctl.driver.analysis import parse_analysis
    from canaryctl.errors import ClusterError
    from canaryctl.providers.prometheus_range import query_range_by

    (record,) = _records(_stores(kubeconfig, context), name, namespace, False)
    if not record.status:
        raise ClusterError(f"rollout {namespace}/{name} has not started: nothing to draw yet")
    spec = parse_spec(record.spec)
    status = CanaryStatus.from_dict(record.status)
    config = parse_analysis(spec)
    prometheus = None
    if config is not None and config.prometheus is not None:
        prometheus = partial(
            query_range_by, config.prometheus.url, timeout=config.prometheus.timeout
        )
    data = build(spec, status, prometheus=prometheus)
    if prometheus is None:
        data.prometheus_note = "no Prometheus in the rollout's analysis: traffic panels left out"
    return data


def write(data: ReportData, html_path: Path | None, png_path: Path | None) -> list[Path]:
    """Write the requested files (HTML when none is asked for); their paths."""
    written = []
    if png_path is not None:
        to_png(data, png_path)
        written.append(png_path)
    if html_path is not None or png_path is None:
        path = html_path or Path(f"{data.name}-report.html")
        path.write_text(to_html(data))
        written.append(path)
    return written

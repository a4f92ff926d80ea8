"""Range queries grouped by one label, for pictures of a rollout after the fact.

The judges only need instant queries (`PrometheusClient`); a report needs each version's
series over the rollout's time span (`/api/v1/query_range`). Kept apart from the judges'
client on purpose: a report's query may fail (old data expired) without affecting any
decision, so errors here are `AnalysisError`s the caller shows, never verdicts.
"""

from __future__ import annotations

import math

import httpx

from canaryctl.errors import AnalysisError

Series = dict[str, list[tuple[float, float]]]


def query_range_by(
    url: str,
    promql: str,
    label: str,
    start: float,
    end: float,
    step: float,
    *,
    timeout: float = 5.0,
    transport: httpx.BaseTransport | None = None,
) -> Series:
    """{label value: [(unix time, value), ...]} of a range query; NaN/Inf points dropped."""
    endpoint = url.rstrip("/") + "/api/v1/query_range"
    form = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    try:
        with httpx.Client(timeout=timeout, transport=transport) as http:
            response = http.post(endpoint, data=form, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        raise AnalysisError(f"prometheus unreachable for {promql!r}: {exc}") from exc
    if response.status_code != 200:
        raise AnalysisError(f"prometheus answered HTTP {response.status_code} to {promql!r}")
    try:
        data = response.json()["data"]
        result = data["result"] if data.get("resultType") == "matrix" else None
    except (ValueError, KeyError, TypeError) as exc:
        raise AnalysisError(f"prometheus: malformed answer to {promql!r}") from exc
    if not isinstance(result, list):
        raise AnalysisError(f"prometheus: {promql!r} did not return a range vector")
    out: Series = {}
    for series in result:
        key = (series.get("metric") or {}).get(label)
        if not isinstance(key, str):
            raise AnalysisError(f"prometheus: a series of {promql!r} has no {label!r} label")
        points = []
        for t, v in series.get("values") or []:
            value = float(v)
            if math.isfinite(value):
                points.append((float(t), value))
        out.setdefault(key, []).extend(points)
    return out

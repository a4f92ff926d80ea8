"""Metric templates: PromQL with `{{ variable }}` placeholders, rendered per look.

Two uses:
- *count templates* turn one look into a `Batch` of request and error (or slow
  request) counts for canary and stable, the input of the comparing judges;
- *checks* turn one query into a value compared with a min/max threshold, the
  Flagger/Argo-style threshold judge.

Counts use `increase(counter[window])` over the look window: `increase` handles
counter resets (pod restarts) and yields counts, which is what a binomial
comparison needs. Counts stay fractional (Prometheus extrapolates to the window
edges), which the judges accept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from canaryctl.core.judges import Batch, Histogram
from canaryctl.core.judges._batch import PodCounts
from canaryctl.errors import AnalysisError, SpecError

__all__ = [
    "BUILTIN_CHECKS",
    "ERROR_COUNTS",
    "CheckResult",
    "CountTemplate",
    "MetricCheck",
    "MetricSource",
    "Target",
    "builtin_check",
    "error_batch",
    "evaluate",
    "fetch_batch",
    "fetch_histograms",
    "fetch_pod_counts",
    "latency_batch",
    "latency_counts",
    "prom_duration",
    "render",
    "run_check",
    "variables",
]


class MetricSource(Protocol):
    """Anything that answers one PromQL instant query with one number or None."""

    def query(self, promql: str, *, at: float | None = None) -> float | None:
        """Evaluate `promql` at unix time `at`; None means no data."""
        ...


class GroupedMetricSource(MetricSource, Protocol):
    """A source that also answers a query grouped by one label."""

    def query_by(self, promql: str, label: str, *, at: float | None = None) -> dict[str, float]:
        """{label value: value} of a `sum by (label)` query; empty means no data."""
        ...


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Values land inside PromQL string literals or range brackets: keep out anything
# that could close a literal or a selector.
_UNSAFE_VALUE = re.compile(r"[\"'`\\{}\[\]\x00-\x1f\x7f]")
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")
_DURATION_UNITS = (("h", 3600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def prom_duration(window: str | float) -> str:
    """A Prometheus duration: validate a string like "1m30s", or convert seconds."""
    if isinstance(window, str):
        if not _DURATION.fullmatch(window):
            raise SpecError("interval", f"{window!r} is not a Prometheus duration like 30s or 1m")
        return window
    if not math.isfinite(window) or window <= 0:
        raise SpecError("interval", f"must be a positive number of seconds, not {window!r}")
    millis = round(window * 1000)
    if millis < 1:
        raise SpecError("interval", f"{window!r} s is shorter than 1ms")
    parts = []
    for unit, size in _DURATION_UNITS:
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass(frozen=True)
class Target:
    """What the queries select: the seed's pods carry `app` and `version` labels."""

    namespace: str
    app: str
    canary: str = "v2"
    stable: str = "v1"

    def __post_init__(self) -> None:
        for field in ("namespace", "app", "canary", "stable"):
            value = getattr(self, field)
            if not value or _UNSAFE_VALUE.search(value):
                raise SpecError(field, f"{value!r} is empty or holds quotes, braces or backslashes")


def variables(
    target: Target, interval: str | float, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables a template may use: namespace, app, canary, stable, interval, plus
    `extra` (user-defined; may not redefine a built-in one)."""
    values = {
        "namespace": target.namespace,
        "app": target.app,
        "canary": target.canary,
        "stable": target.stable,
        "interval": prom_duration(interval),
    }
    for name, value in (extra or {}).items():
        if name in values:
            raise SpecError(f"variables.{name}", "redefines a built-in variable")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SpecError(f"variables.{name}", "is not a valid variable name")
        if _UNSAFE_VALUE.search(value):
            raise SpecError(f"variables.{name}", "holds quotes, braces or backslashes")
        values[name] = value
    return values


def render(template: str, values: Mapping[str, str], *, field: str = "query") -> str:
    """Substitute `{{ name }}` placeholders; unknown names and stray `{{` are SpecErrors."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            known = ", ".join(sorted(values))
            raise SpecError(field, f"unknown variable {{{{ {name} }}}} (known: {known})")
        return values[name]

    if "{{" in _PLACEHOLDER.sub("", template):
        raise SpecError(field, "malformed placeholder: use {{ name }}")
    return _PLACEHOLDER.sub(substitute, template)


@dataclass(frozen=True)
class CountTemplate:
    """Two PromQL templates counting one version's requests and bad requests over
    `{{ interval }}`; `{{ version }}` is set to the canary, then the stable label.

    `absent_bad_is_zero`: an empty answer for `bad` while `requests` has data means
    zero bad requests (true for error counters: a 5xx series exists only after the
    first 5xx). Set it False when an empty `bad` means a broken query.
    """

    name: str
    requests: str
    bad: str
    absent_bad_is_zero: bool = True


_SEED_SELECTOR = 'namespace="{{ namespace }}",app="{{ app }}",version="{{ version }}"'

ERROR_COUNTS = CountTemplate(
    name="errors",
    requests=f"sum(increase(http_requests_total{{{_SEED_SELECTOR}}}[{{{{ interval }}}}]))",
    bad=(f'sum(increase(http_requests_total{{{_SEED_SELECTOR},code=~"5.."}}[{{{{ interval }}}}]))'),
)


def _le_matcher(threshold: float) -> str:
    """A regex matching how clients write the bucket bound: Go writes 1 as "1", Python
    and Prometheus 3 write "1.0"."""
    text = repr(float(threshold))
    forms = [text, text[:-2]] if text.endswith(".0") else [text]
    # re.escape for the regex, then double the backslashes for the PromQL string.
    return "|".join(re.escape(form).replace("\\", "\\\\") for form in forms)


def latency_counts(threshold: float) -> CountTemplate:
    """Counts of requests slower than `threshold` seconds, from the seed's histogram.

    Slow = `_count` minus the `_bucket{le=threshold}`, so the threshold must be one of
    the histogram's bucket bounds; otherwise the query fails loudly.
    """
    if not math.isfinite(threshold) or threshold <= 0:
        raise SpecError("latency.threshold", f"must be a positive number of seconds: {threshold}")
    window = "[{{ interval }}]"
    total = f"sum(increase(request_duration_seconds_count{{{_SEED_SELECTOR}}}{window}))"
    fast = (
        f'sum(increase(request_duration_seconds_bucket{{{_SEED_SELECTOR},le=~"'
        f'{_le_matcher(threshold)}"}}{window}))'
    )
    return CountTemplate(
        name=f"latency>{threshold:g}s",
        requests=total,
        bad=f"{total} - {fast}",
        absent_bad_is_zero=False,
    )


def fetch_batch(
    source: MetricSource,
    counts: CountTemplate,
    target: Target,
    interval: str | float,
    *,
    at: float | None = None,
    extra: Mapping[str, str] | None = None,
) -> Batch | None:
    """One look: canary and stable counts over `interval` ending at `at`.

    Returns None when either version has no request data (never a batch of guesses).
    """
    values = variables(target, interval, extra)
    sides: list[tuple[float, float]] = []
    for version in (target.canary, target.stable):
        scoped = {**values, "version": version}
        requests_query = render(counts.requests, scoped, field=f"{counts.name}")
        requests = _count(counts.name, requests_query, source.query(requests_query, at=at))
        if requests is None:
            return None
        bad_query = render(counts.bad, scoped, field=f"{counts.name}")
        bad = _count(counts.name, bad_query, source.query(bad_query, at=at))
        if bad is None:
            if not counts.absent_bad_is_zero:
                raise AnalysisError(
                    f"{counts.name}: query {bad_query!r} has no data while requests do "
                    "(latency counts: is the threshold one of the histogram's bucket bounds?)"
                )
            bad = 0.0
        # Extrapolation can push a count slightly out of range: keep the batch sane.
        total = max(0.0, requests)
        sides.append((total, min(total, max(0.0, bad))))
    (canary_requests, canary_errors), (stable_requests, stable_errors) = sides
    return Batch(canary_requests, canary_errors, stable_requests, stable_errors)


def _count(name: str, query: str, value: float | None) -> float | None:
    """`value` if it can be a count over a window; AnalysisError if it is below -1.

    `increase()` of a counter is never negative (Prometheus reads a decrease as a counter
    reset); a difference of two extrapolated increases (the latency template) may dip a
    fraction of a request below 0, which the caller clamps. Anything lower is garbage: an
    exporter whose "counter" goes down (a gauge), a rule subtracting unrelated series, or a
    proxy rewriting answers. Clamping it to 0 would feed the judges invented evidence.
    """
    if value is not None and value < -1.0:
        raise AnalysisError(
            f"{name}: query {query!r} returned a negative count ({value:g}); counts over a "
            "window cannot be negative (is the series a counter? a proxy rewriting answers?)"
        )
    return value


def error_batch(
    source: MetricSource, target: Target, interval: str | float, *, at: float | None = None
) -> Batch | None:
    """Requests and 5xx responses of canary and stable in one look (seed metrics)."""
    return fetch_batch(source, ERROR_COUNTS, target, interval, at=at)


def latency_batch(
    source: MetricSource,
    target: Target,
    interval: str | float,
    threshold: float,
    *,
    at: float | None = None,
) -> Batch | None:
    """Requests and requests slower than `threshold` seconds in one look (seed histogram)."""
    return fetch_batch(source, latency_counts(threshold), target, interval, at=at)


HISTOGRAM_BUCKETS = (
    "sum by (le) (increase(request_duration_seconds_bucket"
    f"{{{_SEED_SELECTOR}}}[{{{{ interval }}}}]))"
)


def fetch_histograms(
    source: GroupedMetricSource,
    target: Target,
    interval: str | float,
    *,
    at: float | None = None,
    template: str = HISTOGRAM_BUCKETS,
) -> tuple[Histogram, Histogram] | None:
    """One look's request-duration histograms of canary and stable (cumulative per `le`).

    None when either version has no data. The `+Inf` bucket is the request count.
    """
    values = variables(target, interval)
    out: list[Histogram] = []
    for version in (target.canary, target.stable):
        query = render(template, {**values, "version": version}, field="latency.histogram")
        buckets = source.query_by(query, "le", at=at)
        if not buckets:
            return None
        for count in buckets.values():
            _count("latency.histogram", query, count)
        try:
            parsed = sorted((float(le), max(0.0, count)) for le, count in buckets.items())
        except ValueError as exc:
            raise AnalysisError(f"latency histogram: bucket bound is not a number ({exc})") from exc
        if not parsed or not math.isinf(parsed[-1][0]):
            raise AnalysisError(f"latency histogram: query {query!r} has no +Inf bucket")
        finite = parsed[:-1]
        out.append(
            Histogram(tuple(b for b, _ in finite), tuple(c for _, c in finite), parsed[-1][1])
        )
    return out[0], out[1]


def fetch_pod_counts(
    source: GroupedMetricSource,
    target: Target,
    interval: str | float,
    *,
    at: float | None = None,
    label: str = "pod",
    counts: CountTemplate = ERROR_COUNTS,
) -> tuple[tuple[PodCounts, ...], tuple[PodCounts, ...]] | None:
    """Requests and errors per pod of canary and stable in one look (`sum by (pod)`).

    The count template's outer `sum(` becomes `sum by (<label>) (`. None when either
    version has no per-pod request data; a pod without an error series has 0 errors.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label):
        raise SpecError("analysis.podLabel", f"{label!r} is not a label name")
    values = variables(target, interval)
    grouped = f"sum by ({label}) ("
    sides: list[tuple[PodCounts, ...]] = []
    for version in (target.canary, target.stable):
        scoped = {**values, "version": version}
        requests_q = render(counts.requests, scoped, field=counts.name).replace("sum(", grouped, 1)
        bad_q = render(counts.bad, scoped, field=counts.name).replace("sum(", grouped, 1)
        requests = source.query_by(requests_q, label, at=at)
        if not requests:
            return None
        bad = source.query_by(bad_q, label, at=at)
        for query, found in ((requests_q, requests), (bad_q, bad)):
            for count in found.values():
                _count(counts.name, query, count)
        sides.append(
            tuple(
                (pod, max(0.0, n), min(max(0.0, n), max(0.0, bad.get(pod, 0.0))))
                for pod, n in sorted(requests.items())
            )
        )
    return sides[0], sides[1]


@dataclass(frozen=True)
class MetricCheck:
    """A query template whose value must lie within [minimum, maximum]."""

    name: str
    query: str
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        field = f"metrics.{self.name}"
        if not self.name:
            raise SpecError("metrics", "every check needs a name")
        if self.minimum is None and self.maximum is None:
            raise SpecError(field, "set thresholdRange min, max or both")
        bounds = [b for b in (self.minimum, self.maximum) if b is not None]
        if not all(math.isfinite(b) for b in bounds):
            raise SpecError(field, "thresholds must be finite numbers")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise SpecError(field, f"min {self.minimum} is above max {self.maximum}")


@dataclass(frozen=True)
class CheckResult:
    """The explainable record of one check: what was asked, seen and decided."""

    name: str
    query: str
    value: float | None
    minimum: float | None
    maximum: float | None
    passed: bool
    reason: str


_CANARY_SELECTOR = 'namespace="{{ namespace }}",app="{{ app }}",version="{{ canary }}"'

BUILTIN_CHECKS: dict[str, str] = {
    # Percentage of non-5xx responses of the canary; empty 5xx series count as 0.
    "request-success-rate": (
        "100 * (1 - ((sum(increase(http_requests_total"
        f'{{{_CANARY_SELECTOR},code=~"5.."}}[{{{{ interval }}}}])) or vector(0))'
        f" / sum(increase(http_requests_total{{{_CANARY_SELECTOR}}}[{{{{ interval }}}}]))))"
    ),
    # 99th percentile latency of the canary, in milliseconds (as Flagger's).
    "request-duration": (
        "1000 * histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket"
        f"{{{_CANARY_SELECTOR}}}[{{{{ interval }}}}])))"
    ),
}


def builtin_check(
    name: str, *, minimum: float | None = None, maximum: float | None = None
) -> MetricCheck:
    """A built-in check by name (see BUILTIN_CHECKS) with the given bounds."""
    if name not in BUILTIN_CHECKS:
        known = ", ".join(sorted(BUILTIN_CHECKS))
        raise SpecError(f"metrics.{name}", f"no built-in check of that name (known: {known})")
    return MetricCheck(name, BUILTIN_CHECKS[name], minimum, maximum)


def evaluate(check: MetricCheck, query: str, value: float | None) -> CheckResult:
    """Compare one value with the check's bounds (inclusive). No data never passes."""
    if value is None:
        passed, reason = False, "no data"
    elif check.minimum is not None and value < check.minimum:
        passed, reason = False, f"{value:g} is below min {check.minimum:g}"
    elif check.maximum is not None and value > check.maximum:
        passed, reason = False, f"{value:g} is above max {check.maximum:g}"
    else:
        passed, reason = True, f"{value:g} is within {_range(check)}"
    return CheckResult(check.name, query, value, check.minimum, check.maximum, passed, reason)


def run_check(
    source: MetricSource,
    check: MetricCheck,
    values: Mapping[str, str],
    *,
    at: float | None = None,
) -> CheckResult:
    """Render the check's query with `values` (see `variables`), run it, judge it."""
    query = render(check.query, values, field=f"metrics.{check.name}.query")
    return evaluate(check, query, source.query(query, at=at))


def _range(check: MetricCheck) -> str:
    low = "-inf" if check.minimum is None else f"{check.minimum:g}"
    high = "+inf" if check.maximum is None else f"{check.maximum:g}"
    return f"[{low}, {high}]"

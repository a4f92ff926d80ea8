"""Metric templates, batches and threshold checks against a scripted metric source."""

from __future__ import annotations

import re
import string
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canaryctl.core.judges import Batch
from canaryctl.errors import AnalysisError, SpecError
from canaryctl.providers.templates import (
    BUILTIN_CHECKS,
    MetricCheck,
    Target,
    builtin_check,
    error_batch,
    evaluate,
    fetch_histograms,
    latency_batch,
    latency_counts,
    prom_duration,
    render,
    run_check,
    variables,
)

TARGET = Target(namespace="shop", app="cart", canary="v2", stable="v1")


class Scripted:
    """A MetricSource answering by the first substring rule that matches the query."""

    def __init__(self, rules: list[tuple[Callable[[str], bool], float | None]]) -> None:
        self.rules = rules
        self.queries: list[tuple[str, float | None]] = []

    def query(self, promql: str, *, at: float | None = None) -> float | None:
        self.queries.append((promql, at))
        for matches, value in self.rules:
            if matches(promql):
                return value
        raise AssertionError(f"unexpected query {promql}")


def has(*parts: str) -> Callable[[str], bool]:
    return lambda q: all(p in q for p in parts)


def counts(canary: tuple[float | None, float | None], stable: tuple[float | None, float | None]):
    """Rules for error_batch: (requests, errors) per version."""
    rules = []
    for version, (requests, errors) in (("v2", canary), ("v1", stable)):
        rules.append((has(f'version="{version}"', 'code=~"5.."'), errors))
        rules.append((has(f'version="{version}"'), requests))
    return Scripted(rules)


def test_error_batch_queries_increase_over_the_look_window_per_version() -> None:
    source = counts((100.0, 3.0), (900.0, 9.0))
    batch = error_batch(source, TARGET, "30s", at=1000.0)
    assert batch == Batch(
        canary_requests=100, canary_errors=3, stable_requests=900, stable_errors=9
    )
    assert [q for q, _ in source.queries] == [
        'sum(increase(http_requests_total{namespace="shop",app="cart",version="v2"}[30s]))',
        'sum(increase(http_requests_total{namespace="shop",app="cart",version="v2",code=~"5.."}'
        "[30s]))",
        'sum(increase(http_requests_total{namespace="shop",app="cart",version="v1"}[30s]))',
        'sum(increase(http_requests_total{namespace="shop",app="cart",version="v1",code=~"5.."}'
        "[30s]))",
    ]
    assert {at for _, at in source.queries} == {1000.0}


def test_no_error_series_yet_means_zero_errors() -> None:
    assert error_batch(counts((50.0, None), (500.0, None)), TARGET, 30) == Batch(50, 0, 500, 0)


@pytest.mark.parametrize(
    ("canary", "stable"), [((None, None), (5.0, 0.0)), ((5.0, 0.0), (None, None))]
)
def test_missing_request_data_gives_no_batch(canary, stable) -> None:
    assert error_batch(counts(canary, stable), TARGET, "1m") is None


def test_extrapolated_counts_stay_fractional_but_within_range() -> None:
    batch = error_batch(counts((10.4, 10.6), (99.6, -0.2)), TARGET, "1m")
    assert batch == Batch(10.4, 10.4, 99.6, 0.0)
    assert batch is not None and batch.problem() is None


def test_latency_batch_counts_requests_above_the_bucket_bound() -> None:
    source = Scripted(
        [
            (has('version="v2"', " - "), 12.0),
            (has('version="v2"'), 200.0),
            (has('version="v1"', " - "), 30.0),
            (has('version="v1"'), 1000.0),
        ]
    )
    assert latency_batch(source, TARGET, "1m", 0.5) == Batch(200, 12, 1000, 30)
    slow = source.queries[1][0]
    assert slow == (
        'sum(increase(request_duration_seconds_count{namespace="shop",app="cart",version="v2"}'
        '[1m])) - sum(increase(request_duration_seconds_bucket{namespace="shop",app="cart",'
        'version="v2",le=~"0\\\\.5"}[1m]))'
    )


def test_latency_threshold_that_is_no_bucket_bound_fails_loudly() -> None:
    source = Scripted([(has(" - "), None), (has("_count"), 200.0)])
    with pytest.raises(AnalysisError, match="bucket bounds"):
        latency_batch(source, TARGET, "1m", 0.3)


def le_regex(threshold: float) -> re.Pattern[str]:
    """The `le` matcher as the regex Prometheus applies (PromQL string unescaped)."""
    template = latency_counts(threshold).bad
    literal = re.search(r'le=~"((?:[^"\\]|\\.)*)"', template).group(1)
    return re.compile(literal.replace("\\\\", "\\"))


@pytest.mark.parametrize(
    ("threshold", "matching", "other"),
    [(0.5, ["0.5"], ["0.50", "5"]), (1, ["1", "1.0"], ["10", "1.5"]), (10, ["10", "10.0"], ["1"])],
)
def test_le_matcher_accepts_go_and_python_spellings_of_the_bound(
    threshold: float, matching: list[str], other: list[str]
) -> None:
    pattern = le_regex(threshold)
    assert all(pattern.fullmatch(text) for text in matching)
    assert not any(pattern.fullmatch(text) for text in other)


@pytest.mark.parametrize("threshold", [0, -1, float("nan"), float("inf")])
def test_latency_threshold_must_be_positive_and_finite(threshold: float) -> None:
    with pytest.raises(SpecError):
        latency_counts(threshold)


# --- rendering ----------------------------------------------------------------------


def test_render_substitutes_placeholders_with_any_spacing() -> None:
    values = variables(TARGET, "2m", {"route": "/api"})
    rendered = render(
        'rate(x{ns="{{namespace}}",v="{{  canary }}",s="{{ stable}}",r="{{ route }}"}'
        "[{{ interval }}]) # {{ app }}",
        values,
    )
    assert rendered == 'rate(x{ns="shop",v="v2",s="v1",r="/api"}[2m]) # cart'


def test_unknown_variable_is_a_spec_error_naming_it() -> None:
    with pytest.raises(SpecError, match=r"unknown variable \{\{ target \}\}") as err:
        render("up{job='{{ target }}'}", variables(TARGET, "1m"), field="metrics.m.query")
    assert err.value.field == "metrics.m.query"


@pytest.mark.parametrize("template", ["up{a='{{ app'}", "{{ 1app }}", "{{ a b }}"])
def test_malformed_placeholders_are_spec_errors(template: str) -> None:
    with pytest.raises(SpecError, match="malformed placeholder"):
        render(template, variables(TARGET, "1m"))


@pytest.mark.parametrize(
    "bad", ['v2"} or vector(1) #', "v2\\", "v{2}", "a\nb", "v2'", ""], ids=repr
)
def test_values_that_could_escape_a_string_literal_are_refused(bad: str) -> None:
    with pytest.raises(SpecError):
        Target(namespace="shop", app="cart", canary=bad)
    if bad:
        with pytest.raises(SpecError):
            variables(TARGET, "1m", {"extra": bad})


def test_extra_variables_cannot_redefine_built_in_ones() -> None:
    with pytest.raises(SpecError, match=r"variables\.canary"):
        variables(TARGET, "1m", {"canary": "v9"})


safe_text = st.text(string.ascii_letters + string.digits + "-_.:/", max_size=12)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=150)
@given(values=st.dictionaries(names, safe_text, min_size=1, max_size=5), data=st.data())
def test_rendering_replaces_every_known_placeholder_and_only_those(values, data) -> None:
    chosen = data.draw(st.lists(st.sampled_from(sorted(values)), max_size=6))
    template = "|".join(f"<{{{{ {name} }}}}>" for name in chosen)
    assert render(template, values) == "|".join(f"<{values[name]}>" for name in chosen)


# --- durations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_", "expected"),
    [("30s", "30s"), ("1m30s", "1m30s"), ("2h", "2h"), (90, "1m30s"), (0.25, "250ms")],
)
def test_durations_are_validated_or_converted(given_: str | float, expected: str) -> None:
    assert prom_duration(given_) == expected


@pytest.mark.parametrize("bad", ["30", "1.5m", "s", "", "30 s", 0, -5, float("nan"), 0.0001])
def test_bad_durations_are_spec_errors(bad: str | float) -> None:
    with pytest.raises(SpecError, match="interval"):
        prom_duration(bad)


@settings(max_examples=150)
@given(st.integers(min_value=1, max_value=10**9))
def test_converted_durations_keep_their_length_in_milliseconds(millis: int) -> None:
    text = prom_duration(millis / 1000)
    units = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
    parsed = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|h|m|s)", text))
    assert parsed == millis


# --- threshold checks ---------------------------------------------------------------


def test_check_passes_within_inclusive_bounds_and_records_why() -> None:
    check = MetricCheck("rate", "q", minimum=99.0, maximum=100.0)
    inside, edge = evaluate(check, "q", 99.5), evaluate(check, "q", 99.0)
    assert inside.passed and edge.passed
    assert inside.reason == "99.5 is within [99, 100]"


@pytest.mark.parametrize(
    ("value", "reason"),
    [(98.9, "98.9 is below min 99"), (100.5, "100.5 is above max 100"), (None, "no data")],
)
def test_check_fails_outside_bounds_or_without_data(value: float | None, reason: str) -> None:
    result = evaluate(MetricCheck("rate", "q", 99.0, 100.0), "rendered q", value)
    assert (result.passed, result.reason, result.value, result.query) == (
        False,
        reason,
        value,
        "rendered q",
    )


@pytest.mark.parametrize(
    "bounds", [(None, None), (5.0, 1.0), (float("nan"), None), (None, float("inf"))]
)
def test_check_needs_sane_bounds(bounds: tuple[float | None, float | None]) -> None:
    with pytest.raises(SpecError):
        MetricCheck("m", "q", *bounds)


def test_run_check_renders_queries_and_judges_the_value() -> None:
    source = Scripted([(has('version="v2"', "[5m]"), 97.0)])
    check = builtin_check("request-success-rate", minimum=99)
    result = run_check(source, check, variables(TARGET, "5m"), at=5.0)
    assert not result.passed and result.value == 97.0
    assert result.query == source.queries[0][0] and "{{" not in result.query


def test_builtin_checks_render_with_the_standard_variables_only() -> None:
    values = variables(TARGET, "1m")
    for template in BUILTIN_CHECKS.values():
        assert 'version="v2"' in render(template, values)
    with pytest.raises(SpecError, match="known: request-duration, request-success-rate"):
        builtin_check("error-budget", maximum=1)


class Grouped(Scripted):
    """A grouped source: `sum by (le)` answers per version."""

    def __init__(self, per_version: dict[str, dict[str, float]]) -> None:
        super().__init__([])
        self.per_version = per_version

    def query_by(self, promql: str, label: str, *, at: float | None = None) -> dict[str, float]:
        assert label == "le" and promql.startswith("sum by (le)")
        for version, buckets in self.per_version.items():
            if f'version="{version}"' in promql:
                return buckets
        return {}


def test_histograms_of_both_versions_from_grouped_bucket_counts() -> None:
    source = Grouped(
        {
            "v2": {"0.1": 60.0, "0.5": 95.0, "+Inf": 100.0},
            "v1": {"0.5": 880.0, "0.1": 500.0, "+Inf": 900.0},
        }
    )
    pair = fetch_histograms(source, TARGET, "30s", at=5.0)
    assert pair is not None
    canary, stable = pair
    assert canary.bounds == stable.bounds == (0.1, 0.5)
    assert (canary.cumulative, canary.count) == ((60.0, 95.0), 100.0)
    assert (stable.cumulative, stable.count) == ((500.0, 880.0), 900.0)


def test_histograms_without_data_for_a_version_are_no_data() -> None:
    assert fetch_histograms(Grouped({"v2": {"+Inf": 1.0}}), TARGET, "30s") is None


def test_histograms_without_an_inf_bucket_are_an_error() -> None:
    source = Grouped({"v2": {"0.1": 1.0}, "v1": {"0.1": 1.0}})
    with pytest.raises(AnalysisError, match=r"\+Inf"):
        fetch_histograms(source, TARGET, "30s")


@pytest.mark.parametrize(
    ("canary", "stable"),
    [((-50.0, 0.0), (900.0, 9.0)), ((100.0, -3.0), (900.0, 9.0)), ((100.0, 3.0), (-1.5, None))],
)
def test_a_negative_count_is_garbage_named_in_the_error_never_clamped_to_zero(
    canary: tuple[float | None, float | None], stable: tuple[float | None, float | None]
) -> None:
    """Regression: a negative answer (a gauge, a proxy rewriting values) was clamped to 0
    and judged as a quiet window; increase() of a counter cannot be negative."""
    with pytest.raises(AnalysisError, match=r"errors: query .* returned a negative count"):
        error_batch(counts(canary, stable), TARGET, "30s")


def test_a_negative_histogram_bucket_is_garbage() -> None:
    source = Grouped({"v2": {"0.1": -60.0, "+Inf": 100.0}, "v1": {"0.1": 5.0, "+Inf": 9.0}})
    with pytest.raises(AnalysisError, match=r"latency.histogram: .* negative count \(-60\)"):
        fetch_histograms(source, TARGET, "30s")

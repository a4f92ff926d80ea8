"""The driver's analysis: one false-rollback budget over its sequential tests, and
relative-latency looks stored in the status and replayed exactly."""

from __future__ import annotations

import pytest

from canaryctl.core.judges import Histogram, RelativeLatencyJudge, SequentialJudge
from canaryctl.core.models import parse_spec
from canaryctl.driver.analysis import (
    Analysis,
    _histograms_from_row,
    _histograms_to_row,
    parse_analysis,
)
from canaryctl.errors import SpecError


def _analysis(**block: object) -> Analysis:
    spec = parse_spec(
        {
            "name": "app",
            "namespace": "shop",
            "stable": "app-v1",
            "canary": "app-v2",
            "service": "app",
            "steps": [{"setWeight": 10}],
            "analysis": {"prometheus": {"url": "http://prom:9090"}, **block},
        }
    )
    config = parse_analysis(spec)
    assert config is not None
    return Analysis(spec, config, source=object())  # type: ignore[arg-type]


def test_errors_alone_keep_the_whole_alpha():
    judges = dict(_analysis()._judges())
    assert judges["errors"].alpha == pytest.approx(0.05)


def test_errors_and_two_latency_tests_share_one_alpha():
    judges = dict(_analysis(latencyThreshold=0.5, latencyQuantile=0.95)._judges())
    assert set(judges) == {"errors", "latency", "latency p95"}
    assert isinstance(judges["latency p95"], RelativeLatencyJudge)
    alphas = [
        judges["errors"].alpha,
        judges["latency"].alpha,
        judges["latency p95"].judge.alpha,
    ]
    assert alphas == pytest.approx([0.05 / 3] * 3)
    assert sum(alphas) == pytest.approx(0.05)


def test_threshold_judge_leaves_the_budget_to_the_sequential_latency_test():
    judges = dict(_analysis(judge="threshold", latencyThreshold=0.5)._judges())
    assert not isinstance(judges["errors"], SequentialJudge)
    assert judges["latency"].alpha == pytest.approx(0.05)


def test_histogram_rows_round_trip():
    canary = Histogram((0.1, 0.5), (60.0, 95.0), 100.0)
    stable = Histogram((0.1, 0.5), (500.0, 880.0), 900.0)
    assert _histograms_from_row(_histograms_to_row(canary, stable)) == (canary, stable)


def test_latency_quantile_out_of_range_names_the_field():
    with pytest.raises(SpecError, match=r"latencyQuantile|latency_quantile"):
        _analysis(latencyQuantile=1.5)

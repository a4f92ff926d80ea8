"""The driver's analysis: one false-rollback budget over its sequential tests, and
relative-latency looks stored in the status and replayed exactly."""

from __future__ import annotations

import random
import re

import pytest

from canaryctl.core.judges import (
    Batch,
    Histogram,
    PodSummary,
    RelativeLatencyJudge,
    SequentialJudge,
)
from canaryctl.core.models import CanaryStatus, Phase, parse_spec
from canaryctl.driver import analysis as analysis_module
from canaryctl.driver.analysis import (
    Analysis,
    _batch_from_row,
    _histograms_from_row,
    _histograms_to_row,
    parse_analysis,
)
from canaryctl.errors import SpecError
from core.judges.sampling import poisson


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


class PodSource:
    """Prometheus answers for 5 canary pods (pod c0 failing `bad` of its requests) and
    9 stable pods at 1%: totals from `query`, per pod from `query_by`."""

    def __init__(self, bad: float, per_second: bool = False) -> None:
        self.canary = {f"c{i}": (20.0, 20.0 * (bad if i == 0 else 0.01)) for i in range(5)}
        self.stable = {f"s{i}": (100.0, 1.0) for i in range(9)}
        self.per_second = per_second  # counts per second of the query's window, else per look

    def _side(self, promql: str) -> dict[str, tuple[float, float]]:
        return self.canary if 'version="v2"' in promql else self.stable

    def query(self, promql: str, *, at: float | None = None) -> float | None:
        column = 1 if 'code=~"5.."' in promql else 0
        scale = float(re.search(r"\[(\d+)s\]", promql)[1]) if self.per_second else 1.0
        return scale * sum(v[column] for v in self._side(promql).values())

    def query_by(self, promql: str, label: str, *, at: float | None = None) -> dict[str, float]:
        assert label == "pod" and promql.startswith("sum by (pod) (")
        column = 1 if 'code=~"5.."' in promql else 0
        return {pod: v[column] for pod, v in self._side(promql).items()}


def _run(analysis: Analysis, looks: int):
    status = CanaryStatus(phase=Phase.PROGRESSING)
    result = None
    for k in range(looks + 1):
        result = analysis.evaluate(status, 1000.0 + 10 * k, ("v1", "v2"))
        status = status.model_copy(update={"analysis_state": result.state})
        if result.verdict is not None and result.verdict.decision != "continue":
            break
    return result


def test_one_failing_canary_pod_is_rolled_back_by_the_pod_test_and_named():
    analysis = _analysis(perPod=True)
    analysis.source = PodSource(bad=0.5)
    result = _run(analysis, 20)
    assert result.verdict.decision == "rollback"
    pods = result.summary["pods"]
    assert pods["decision"] == "rollback" and "canary pod c0" in pods["message"]
    assert any(c.name.startswith("pods") and not c.passed for c in result.verdict.checks)


def test_healthy_pods_leave_promotion_to_the_pooled_tests():
    analysis = _analysis(perPod=True)
    analysis.source = PodSource(bad=0.01)
    result = _run(analysis, 5)
    assert result.summary["pods"]["decision"] == "continue"
    assert set(result.summary["pods"]["pods"]) == {f"c{i}" for i in range(5)}
    assert dict(analysis._judges())["errors"].alpha == pytest.approx(0.025)


def test_auto_looks_follow_the_error_rate_within_their_bounds():
    analysis = _analysis(interval="auto", minInterval="5s", maxInterval="30s")
    state = {"firstLook": 1000.0, "lastLook": 1060.0}
    # 60 s with 600 errors: 20 errors take 2 s -> the shortest look.
    busy = {"errors": [[1000, 50, 9000, 550]]}
    # 60 s with 6 errors: 20 errors take 200 s -> the longest look.
    quiet = {"errors": [[1000, 1, 9000, 5]]}
    assert analysis._next_interval(state, busy) == 5
    assert analysis._next_interval(state, quiet) == 30
    assert _analysis(interval="10s")._next_interval(state, quiet) == 10


def test_sequential_analysis_looks_adapt_by_default_within_5_to_60_s():
    analysis = _analysis()
    assert analysis.config.interval == "auto"
    assert (analysis.config.min_interval, analysis.config.max_interval) == (5, 60)
    state = {"firstLook": 1000.0, "lastLook": 1060.0}
    assert analysis._next_interval(state, {"errors": [[1000, 50, 9000, 550]]}) == 5
    assert analysis._next_interval(state, {"errors": [[1000, 1, 9000, 5]]}) == 60


def test_threshold_judge_checks_every_10_s_by_default():
    analysis = _analysis(judge="threshold")
    assert analysis.config.interval == 10
    assert analysis._next_interval({"firstLook": 0.0, "lastLook": 60.0}, {}) == 10


def test_auto_looks_are_looked_at_in_a_rollout():
    analysis = _analysis(interval="auto", minInterval="5s", maxInterval="30s")
    analysis.source = PodSource(bad=0.01, per_second=True)
    status = CanaryStatus(phase=Phase.PROGRESSING)
    looks = 0
    for second in range(0, 121):
        result = analysis.evaluate(status, 1000.0 + second, ("v1", "v2"))
        status = status.model_copy(update={"analysis_state": result.state})
        looks = len(result.state.get("looks", {}).get("errors", []))
    # 10 errors per second: 20 errors take 2 s, so every look is the shortest, 5 s.
    assert looks == 120 // 5


@pytest.mark.parametrize(
    "block",
    [
        {"interval": "auto", "judge": "threshold"},
        {"interval": "auto", "minInterval": "20s", "maxInterval": "10s"},
        {"interval": "0.5s"},
    ],
)
def test_bad_look_settings_are_spec_errors(block):
    with pytest.raises(SpecError):
        _analysis(**block)


def test_per_pod_looks_store_what_the_pooled_test_takes_and_replay_it_exactly():
    # c0 fails half its requests: the pooled test's rows keep its errors trimmed to what
    # its siblings and the stable explain, and replaying the rows gives the verdict of a
    # judge fed the looks with their pods.
    analysis = _analysis(perPod=True)
    analysis.source = PodSource(bad=0.5)
    status = CanaryStatus(phase=Phase.PROGRESSING)
    direct = SequentialJudge(alpha=0.025)
    for k in range(3):
        result = analysis.evaluate(status, 1000.0 + 10 * k, ("v1", "v2"))
        status = status.model_copy(update={"analysis_state": result.state})
    rows = result.state["looks"]["errors"]
    assert len(rows) == 2 and all(len(row) == 9 for row in rows)
    assert rows[0][0] == 100.0  # 5 canary pods x 20 requests: the direct judge's batch below
    assert rows[0][1] == pytest.approx(10.8) and rows[0][4] < rows[0][1]
    source = analysis.source
    for _ in rows:
        expected = direct.observe(
            Batch(
                100.0, 10.8, 900.0, 9.0,
                canary_pods=tuple((p, *v) for p, v in source.canary.items()),
                stable_pods=tuple((p, *v) for p, v in source.stable.items()),
            )
        )  # fmt: skip
    replayed = analysis._replay(result.state["looks"])["errors"]
    assert replayed.rollback_evalue == pytest.approx(expected.rollback_evalue)
    assert result.state["errorsDispersion"] == pytest.approx(expected.dispersion)


def test_looks_stored_without_pods_still_replay():
    assert _batch_from_row([100, 1, 900, 9]) == Batch(100, 1, 900, 9)
    summary = _batch_from_row([100, 1, 900, 9, 1, 8, 7.5, 8, 1]).pod_summary
    assert summary == PodSummary(1, 8, 7.5, 8, 1)


class StreamSource:
    """Prometheus answers from a list of looks (canary and stable requests and errors)."""

    def __init__(self, looks: list[tuple[float, float, float, float]]) -> None:
        self.looks = looks
        self.index = 0

    def query(self, promql: str, *, at: float | None = None) -> float | None:
        look = self.looks[min(self.index // 4, len(self.looks) - 1)]
        self.index += 1  # four queries per look: canary and stable, requests and errors
        canary = 'version="v2"' in promql
        errors = 'code=~"5.."' in promql
        return look[(0 if canary else 2) + (1 if errors else 0)]


def _looks(seed: int, count: int, ratio: float) -> list[tuple[float, float, float, float]]:
    rng = random.Random(seed)
    return [
        (100.0, float(poisson(100 * 0.01 * ratio, rng)), 900.0, float(poisson(9.0, rng)))
        for _ in range(count)
    ]


def test_looks_past_the_budget_are_folded_into_the_state_and_still_count(monkeypatch):
    # With a budget of 5 looks, 12 looks leave 5 rows and 7 folded into the judge's
    # state: the replayed evidence is that of a judge that saw all 12 looks.
    monkeypatch.setattr(analysis_module, "MAX_LOOKS", 5)
    looks = _looks(3, 12, ratio=1.0)
    analysis = _analysis(interval="10s")
    analysis.source = StreamSource(looks)
    status = CanaryStatus(phase=Phase.PROGRESSING)
    for k in range(13):
        result = analysis.evaluate(status, 1000.0 + 10 * k, ("v1", "v2"))
        status = status.model_copy(update={"analysis_state": result.state})
    assert len(result.state["looks"]["errors"]) == 5
    assert result.state["folded"]["errors"]["looks"] == 7
    direct = SequentialJudge()
    for look in looks:
        expected = direct.observe(Batch(*look))
    replayed = analysis._replay(result.state["looks"], result.state["folded"])["errors"]
    assert replayed.look == expected.look == 12
    assert replayed.rollback_evalue == pytest.approx(expected.rollback_evalue)
    assert replayed.promote_evalue == pytest.approx(expected.promote_evalue)
    assert replayed.dispersion == pytest.approx(expected.dispersion)
    # the look schedule still counts the folded looks' errors
    errors = sum(look[1] + look[3] for look in looks)
    assert result.state["folded"]["errors"]["errors"] + sum(
        row[1] + row[3] for row in result.state["looks"]["errors"]
    ) == pytest.approx(errors)


def test_a_decision_among_folded_looks_stays_the_decision(monkeypatch):
    monkeypatch.setattr(analysis_module, "MAX_LOOKS", 3)
    analysis = _analysis(interval="10s")
    state: dict = {}
    rows = [list(look) for look in _looks(5, 10, ratio=20.0)]
    decided = SequentialJudge()
    verdicts = [decided.observe(Batch(*row)) for row in rows]
    assert verdicts[-1].decision == "rollback"  # a 20x canary: decided within 10 looks
    analysis._fold(state, "errors", rows)
    assert len(rows) == 3 and state["folded"]["errors"]["final"]["decision"] == "rollback"
    replayed = analysis._replay({"errors": rows}, state["folded"])["errors"]
    assert replayed == verdicts[-1]

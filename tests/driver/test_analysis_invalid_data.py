"""The driver's analysis never promotes on a look whose data is missing or invalid, keeps
saying what was wrong until a good look, and resumes on good data."""

from __future__ import annotations

from canaryctl.core.models import CanaryStatus, Phase, parse_spec
from canaryctl.driver.analysis import Analysis, parse_analysis
from canaryctl.errors import AnalysisError

SPEC = parse_spec(
    {
        "name": "app",
        "namespace": "shop",
        "stable": "app-v1",
        "canary": "app-v2",
        "service": "app",
        "steps": [{"setWeight": 50}],
        "analysis": {"prometheus": {"url": "http://prom:9090"}, "interval": "10s"},
    }
)
#: Forty looks with the same 1% error rate on equal traffic: ample evidence to promote.
EVIDENCE = [[10000.0, 100.0, 10000.0, 100.0]] * 40


class Source:
    """Answers error counts, or raises what `fault` says (a garbage answer)."""

    def __init__(self) -> None:
        self.fault: str | None = None

    def query(self, promql: str, *, at: float | None = None) -> float | None:
        if self.fault == "nan":
            return None
        if self.fault is not None:
            raise AnalysisError(f"prometheus at http://prom:9090, query {promql!r}: {self.fault}")
        return 100.0 if 'code=~"5.."' in promql else 10000.0


def _status(state: dict) -> CanaryStatus:
    return CanaryStatus(phase=Phase.PROGRESSING, weight=50, analysis_state=state)


def test_evidence_already_enough_does_not_promote_on_a_garbage_look_then_does_on_good_data():
    """Regression: a look answered with HTML (or NaN) still promoted on earlier looks."""
    config = parse_analysis(SPEC)
    assert config is not None
    source = Source()
    analysis = Analysis(SPEC, config, source=source)  # type: ignore[arg-type]
    state = {"lastLook": 0.0, "firstLook": 0.0, "looks": {"errors": EVIDENCE}}
    for fault, named in (("HTTP 200, not a JSON answer: '<html>'", "not a JSON answer"),
                         ("nan", "no data from Prometheus")):  # fmt: skip
        source.fault = fault
        result = analysis.evaluate(_status(state), state["lastLook"] + 10, ("v1", "v2"))
        assert result.verdict is None, "no promotion on this look"
        assert result.warning is not None and named in result.warning
        assert result.summary is not None and named in result.summary["warning"]
        state = result.state or {}
        # Between looks, the trouble stays on record and still holds promotion.
        between = analysis.evaluate(_status(state), state["lastLook"] + 1, ("v1", "v2"))
        assert between.verdict is None
        assert between.warning is not None and named in between.warning
    source.fault = None
    result = analysis.evaluate(_status(state), state["lastLook"] + 10, ("v1", "v2"))
    assert result.warning is None
    assert result.verdict is not None and result.verdict.decision == "promote"
    assert len((result.state or {})["looks"]["errors"]) == len(EVIDENCE) + 1

"""The analysis table of the live view and `get`: one row per metric, one per canary pod."""

from __future__ import annotations

from rich.console import Console

from canaryctl.cli.views import _analysis_table


def render(analysis: dict) -> str:
    console = Console(width=140, record=True)
    console.print(_analysis_table(analysis))
    return console.export_text()


def test_each_metric_and_each_canary_pod_gets_a_row_with_its_evidence():
    text = render(
        {
            "errors": {"decision": "continue", "rollbackEvalue": 2.5, "rollbackThreshold": 60.0,
                       "totals": {"canaryErrors": 3, "canaryRequests": 400}},
            "latency p95": {"decision": "continue", "rollbackEvalue": 1.2,
                            "rollbackThreshold": 60.0, "tailBound": 0.25},
            "pods": {"decision": "continue", "rollbackEvalue": 9.0, "rollbackThreshold": 600.0,
                     "pods": {"app-v2-abc": 9.0, "app-v2-def": 0.5}},
        }
    )  # fmt: skip
    assert "latency p95 (> 0.25 s)" in text
    assert "pod app-v2-abc" in text and "9 / 600" in text
    assert "pod app-v2-def" in text and "0.5 / 600" in text
    assert "2.5 / 60" in text

"""Build the Grafana dashboard with grafana-foundation-sdk (a dev dependency), not by hand.

    python -m canaryctl.dashboards.generate          # rewrite the committed JSON files
    python -m canaryctl.dashboards.generate --check  # exit 1 if they are out of date

Panels, in order: the seed's requests by version (its exact query), error ratio and
p50/p99 latency by version (the seed app's metrics), then the operator's metrics: canary
weight and phase over time, analysis decisions and the judges' e-values. Variables:
datasource, namespace, app (the seed's `app` label) and canary (the Canary's name).
`PANELS` is the single list of queries: the dashboard and its tests read it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from canaryctl.dashboards import DASHBOARD

#: The copy at the top of the repository, where users look for it (same content).
REPO_COPY = Path(__file__).resolve().parents[3] / "dashboards" / "canaryctl.json"

APP = 'namespace="$namespace",app="$app"'
CANARY = 'namespace="$namespace",name="$canary"'
WINDOW = "2m"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    """One time-series panel; `source` says whose metrics it reads: app or operator."""

    title: str
    queries: tuple[Query, ...]
    unit: str
    source: str  # "app" | "operator"
    description: str = ""


def _ratio_by_version(bad: str, total: str) -> str:
    # `or ... * 0`: a version with no failing requests has a 0 ratio, not a missing series.
    by = "sum by (version)"
    return f"({by} ({bad}) or {by} ({total}) * 0) / {by} ({total})"


def _quantile(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (version, le) "
        f"(rate(request_duration_seconds_bucket{{{APP}}}[{WINDOW}])))"
    )


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "Requests by version",
        (Query('sum(rate(http_requests_total{app="$app"}[2m])) by (version)', "{{version}}"),),
        "reqps", "app", "The seed's panel: requests per second served by each version.",
    ),
    PanelSpec(
        "Error ratio by version (5xx / all)",
        (Query(_ratio_by_version(
            f'rate(http_requests_total{{{APP},code=~"5.."}}[{WINDOW}])',
            f"rate(http_requests_total{{{APP}}}[{WINDOW}])",
        ), "{{version}}"),),
        "percentunit", "app",
    ),
    PanelSpec(
        "Latency p50 / p99 by version",
        (Query(_quantile(0.5), "p50 {{version}}"), Query(_quantile(0.99), "p99 {{version}}")),
        "s", "app",
    ),
    PanelSpec(
        "Canary weight",
        (Query(f"canaryctl_canary_weight{{{CANARY}}}", "weight"),),
        "percent", "operator", "Traffic weight the operator asks of the router.",
    ),
    PanelSpec(
        "Phase",
        (Query(f"canaryctl_canary_phase{{{CANARY}}} == 1", "{{phase}}"),),
        "none", "operator", "The rollout's phase over time (one series per phase).",
    ),
    PanelSpec(
        "Analysis decisions",
        (Query(
            f"sum by (check, result) (increase(canaryctl_analysis_checks_total{{{CANARY}}}"
            f"[{WINDOW}]))",
            "{{check}} {{result}}",
        ),),
        "short", "operator", "Checks evaluated per result (pass / fail) over 2 minutes.",
    ),
    PanelSpec(
        "Judge e-values (rollback side)",
        (Query(f"canaryctl_judge_evalue{{{CANARY}}}", "{{metric}}"),),
        "short", "operator",
        "Sequential judges' e-values; the canary is rolled back when one reaches 1/alpha.",
    ),
)  # fmt: skip


def build() -> dict:
    """The dashboard as Grafana's JSON model (a plain dict, keys sorted when written)."""
    from grafana_foundation_sdk.builders.dashboard import (
        Dashboard,
        DatasourceVariable,
        QueryVariable,
    )
    from grafana_foundation_sdk.builders.prometheus import Dataquery
    from grafana_foundation_sdk.builders.timeseries import Panel
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

    ds = DataSourceRef(type_val="prometheus", uid="${datasource}")

    def variable(name: str, query: str) -> QueryVariable:
        return (
            QueryVariable(name).label(name).datasource(ds).query(query)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )  # fmt: skip

    board = (
        Dashboard("canaryctl")
        .uid("canaryctl")
        .tags(["canaryctl", "canary", "progressive-delivery"])
        .description("Canary rollouts: the app's traffic by version and canaryctl's decisions.")
        .refresh("10s")
        .time("now-30m", "now")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(variable("namespace", "label_values(http_requests_total, namespace)"))
        .with_variable(
            variable("app", 'label_values(http_requests_total{namespace="$namespace"}, app)')
        )
        .with_variable(
            variable(
                "canary", 'label_values(canaryctl_canary_weight{namespace="$namespace"}, name)'
            )
        )
    )
    for spec in PANELS:
        panel = (
            Panel().title(spec.title).unit(spec.unit).datasource(ds).height(8).span(12)
            .description(spec.description or spec.title)
        )  # fmt: skip
        for j, q in enumerate(spec.queries):
            panel = panel.with_target(
                Dataquery().expr(q.expr).legend_format(q.legend).ref_id("ABCD"[j]).datasource(ds)
            )
        if spec.title == "Canary weight":
            panel = panel.min(0).max(100)
        board = board.with_panel(panel)
    return json.loads(JSONEncoder(sort_keys=True).encode(board.build()))


def render() -> str:
    """The dashboard file's exact text."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args()
    text = render()
    in_repo = (REPO_COPY.parents[1] / "pyproject.toml").exists()  # not from an installed wheel
    targets = [DASHBOARD, REPO_COPY] if in_repo else [DASHBOARD]
    if args.check:
        stale = [str(p) for p in targets if not p.exists() or p.read_text() != text]
        if stale:
            sys.exit(f"stale: {', '.join(stale)}; run python -m canaryctl.dashboards.generate")
        return
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""canaryctl's Grafana dashboard: `canaryctl.json` here (shipped in the wheel), generated
by `python -m canaryctl.dashboards.generate` from typed builders; a test keeps them equal."""

from __future__ import annotations

from pathlib import Path

#: The generated dashboard, as shipped (Grafana JSON model).
DASHBOARD = Path(__file__).with_name("canaryctl.json")

"""Judges turn per-look request and error counts into continue / promote / rollback.

`SequentialJudge` compares canary with stable and may stop at any look without
inflating false rollbacks; `ThresholdJudge` reproduces Flagger/Argo per-interval
success-rate checks.
"""

from canaryctl.core.judges._batch import Batch, PodCounts, PodSummary
from canaryctl.core.judges._schedule import (
    DEFAULT_MAX_INTERVAL,
    DEFAULT_MIN_INTERVAL,
    DEFAULT_TARGET_ERRORS,
    LookSchedule,
)
from canaryctl.core.judges._verdict import Decision, Verdict
from canaryctl.core.judges.latency import Histogram, RelativeLatencyJudge
from canaryctl.core.judges.panel import Panel, PanelVerdict, split_alpha
from canaryctl.core.judges.pods import PodOutlierJudge
from canaryctl.core.judges.sequential import SequentialJudge
from canaryctl.core.judges.threshold import ThresholdJudge

__all__ = [
    "DEFAULT_MAX_INTERVAL",
    "DEFAULT_MIN_INTERVAL",
    "DEFAULT_TARGET_ERRORS",
    "Batch",
    "Decision",
    "Histogram",
    "LookSchedule",
    "Panel",
    "PanelVerdict",
    "PodCounts",
    "PodOutlierJudge",
    "PodSummary",
    "RelativeLatencyJudge",
    "SequentialJudge",
    "ThresholdJudge",
    "Verdict",
    "split_alpha",
]

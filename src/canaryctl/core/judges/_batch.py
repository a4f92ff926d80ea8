"""One look's request and error counts for canary and stable, optionally per pod."""

from __future__ import annotations

import math
from dataclasses import dataclass

from canaryctl.core.judges._pods import PodCounts, PodSummary, summarize

__all__ = ["EMPTY", "Batch", "PodCounts", "PodSummary"]


@dataclass(frozen=True, slots=True)
class Batch:
    """Counts observed since the previous look (increments, not running totals).

    Counts are floats as well as ints because Prometheus `increase()` extrapolates.
    A batch is never rejected on construction: judges must turn bad data into a
    "no data" verdict rather than crash the rollout loop, so validation lives in
    `problem()`.

    For a latency judgement, build the batch with `Batch.from_latency`: requests
    slower than the threshold take the place of errors.

    `canary_pods` and `stable_pods` optionally break the look down by pod
    (`sum by (pod)`): the pooled test leaves one pod's excess out of its evidence and
    the stable's pods tell how bursty errors are within a look (see `_pods`), and
    the canary's pods let `PodOutlierJudge` test each pod on its own. `pod_summary`
    is what the pooled test takes from them, for looks replayed without their pods.
    They are evidence of that look only: adding batches drops them.
    """

    canary_requests: float
    canary_errors: float
    stable_requests: float
    stable_errors: float
    canary_pods: tuple[PodCounts, ...] = ()
    stable_pods: tuple[PodCounts, ...] = ()
    pod_summary: PodSummary | None = None

    @classmethod
    def from_latency(
        cls,
        canary_requests: float,
        canary_slow: float,
        stable_requests: float,
        stable_slow: float,
    ) -> Batch:
        """Batch whose "errors" are requests slower than a latency threshold.

        With a Prometheus histogram, slow = count - bucket{le=threshold}.
        """
        return cls(canary_requests, canary_slow, stable_requests, stable_slow)

    def problem(self) -> str | None:
        """Why this batch cannot be used as evidence, or None if it can."""
        values = (
            self.canary_requests,
            self.canary_errors,
            self.stable_requests,
            self.stable_errors,
        )
        if any(not isinstance(v, int | float) or isinstance(v, bool) for v in values):
            return "counts are not numbers"
        if any(math.isnan(v) or math.isinf(v) for v in values):
            return "counts are NaN or infinite"
        if any(v < 0 for v in values):
            return "counts are negative (counter reset?)"
        if self.canary_errors > self.canary_requests or self.stable_errors > self.stable_requests:
            return "more errors than requests"
        if self.canary_requests == 0:
            return "the canary received no requests"
        return None

    def pod_problem(self) -> str | None:
        """Why the look's per-pod counts cannot be used, or None if they can.

        Bad pod counts void only the pod evidence, never the look's totals: a test
        that dropped looks for what their pods show would choose its evidence.
        """
        for _, requests, errors in (*self.canary_pods, *self.stable_pods):
            if not (math.isfinite(requests) and math.isfinite(errors)) or requests < 0:
                return "pod counts are NaN, infinite or negative"
            if errors < 0 or errors > requests:
                return "a pod has negative errors or more errors than requests"
        if self.pod_summary is not None:
            return self.pod_summary.problem()
        return None

    def pods(self, dispersion: float = 1.0) -> PodSummary | None:
        """What the pooled test takes from the look's pods (None: no per-pod counts),
        `dispersion` being the one known before the look (see `_pods`); None too when
        they are unusable (`pod_problem`)."""
        if self.pod_problem() is not None:
            return None
        if self.pod_summary is not None:
            return self.pod_summary
        if not (self.canary_pods or self.stable_pods):
            return None
        counts = (
            self.canary_requests,
            self.canary_errors,
            self.stable_requests,
            self.stable_errors,
        )
        return summarize(counts, self.canary_pods, self.stable_pods, dispersion)

    @property
    def canary_share(self) -> float:
        """Fraction of this batch's requests that went to the canary."""
        total = self.canary_requests + self.stable_requests
        return self.canary_requests / total if total > 0 else 0.0

    def __add__(self, other: Batch) -> Batch:
        return Batch(
            self.canary_requests + other.canary_requests,
            self.canary_errors + other.canary_errors,
            self.stable_requests + other.stable_requests,
            self.stable_errors + other.stable_errors,
        )

    def to_dict(self) -> dict[str, float]:
        """Plain mapping, e.g. for a status field."""
        return {
            "canaryRequests": self.canary_requests,
            "canaryErrors": self.canary_errors,
            "stableRequests": self.stable_requests,
            "stableErrors": self.stable_errors,
        }


EMPTY = Batch(0, 0, 0, 0)

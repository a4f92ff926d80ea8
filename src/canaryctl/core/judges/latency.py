"""Relative latency: the canary's slow tail against the stable's, from histogram buckets.

No fixed threshold: at each look the boundary is the histogram bucket bound at
the stable's `quantile` (say p95), read from the stable's requests of *earlier*
looks. The look's canary and stable requests above that bound become a `Batch`
(slow requests take the place of errors), judged by the same anytime-valid
e-process as errors: R = (canary share above b) / (stable share above b), null
R <= 1 + tolerance.

Why the boundary must come from earlier looks. The e-process multiplies, look by
look, a likelihood ratio whose expectation given the past is <= 1 under the null.
That holds for any boundary b fixed before the look: if canary and stable
durations have the same distribution, their shares above b are equal for every
b, so R = 1 at whatever b is used; more generally the null is "the canary's share
above b is at most (1 + tolerance) x the stable's, at every bound used". A
boundary chosen from earlier looks is such a predictable choice, and the
boundary may move between looks. A boundary chosen from the same look's stable
counts is not: it would be picked where the stable's tail happens to be thin in
this very look, making the stable's slow count small and the canary look worse;
the conditional binomial model of the look would no longer hold.

Which bound. The largest bucket bound at or below the stable's quantile, so the
tail above it holds at least 1 - quantile of the stable's requests: more slow
requests per look means more evidence, and a tail regression that moves the
quantile shows up as a larger canary share above it. Coarse buckets (e.g. the
Prometheus client defaults) make the boundary land well below the quantile; the
test stays valid, it just compares a wider tail.

Until the stable has shown `min_tail_requests` requests above some bound, there
is no boundary and the look adds no evidence (verdict "no-boundary"); a fixed
threshold (`fixed_bound`) skips the choice altogether.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from canaryctl.core.judges._batch import Batch
from canaryctl.core.judges._verdict import CONTINUE, Verdict
from canaryctl.core.judges.sequential import SequentialJudge
from canaryctl.errors import SpecError


@dataclass(frozen=True, slots=True)
class Histogram:
    """One version's request durations in one look: cumulative counts per bucket bound.

    `cumulative[i]` counts requests at most `bounds[i]` seconds (Prometheus `le`);
    `count` is all requests (the `+Inf` bucket).
    """

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]
    count: float

    def problem(self) -> str | None:
        """Why these counts cannot be used, or None."""
        if len(self.bounds) != len(self.cumulative) or not self.bounds:
            return "bucket bounds and counts do not match"
        values = (*self.cumulative, self.count)
        if any(not math.isfinite(v) or v < 0 for v in values):
            return "counts are negative, NaN or infinite"
        if any(b >= a for a, b in zip(self.bounds[1:], self.bounds, strict=False)):
            return "bucket bounds are not increasing"
        return None

    def above(self, bound: float) -> float:
        """Requests slower than `bound` (which must be one of the bounds)."""
        index = self.bounds.index(bound)
        # Extrapolated counts can be slightly non-monotone: keep the result in range.
        return min(self.count, max(0.0, self.count - self.cumulative[index]))

    def __add__(self, other: Histogram) -> Histogram:
        if self.bounds != other.bounds:
            raise ValueError("histograms with different bucket bounds")
        return Histogram(
            self.bounds,
            tuple(a + b for a, b in zip(self.cumulative, other.cumulative, strict=True)),
            self.count + other.count,
        )


def tail_bound(stable: Histogram, quantile: float, min_tail_requests: float = 20) -> float | None:
    """The largest bucket bound at or below the stable's `quantile`, or None if too few data.

    "At or below" means the stable's share above it is at least 1 - quantile; the
    tail above it must also hold `min_tail_requests` requests.
    """
    if stable.count <= 0:
        return None
    best = None
    for bound, cumulative in zip(stable.bounds, stable.cumulative, strict=True):
        tail = stable.count - cumulative
        # The tolerance keeps 1 - 0.99 (0.010000000000000009) from excluding an exact 1%.
        if tail / stable.count >= 1.0 - quantile - 1e-12 and tail >= min_tail_requests:
            best = bound
    return best


class RelativeLatencyJudge:
    """Sequential test of the canary's share of requests above the stable's quantile bound.

    Keyword arguments other than those below go to the inner `SequentialJudge`
    (alpha, beta, tolerance, promote_ratio, ...). The kill switch is off: a slow
    request is not a failed one.
    """

    def __init__(
        self,
        quantile: float = 0.95,
        *,
        fixed_bound: float | None = None,
        min_tail_requests: float = 20,
        **judge: Any,
    ) -> None:
        if not 0 < quantile < 1:
            raise SpecError("latency.quantile", f"must be in (0, 1), got {quantile}")
        if fixed_bound is not None and not (math.isfinite(fixed_bound) and fixed_bound > 0):
            raise SpecError("latency.threshold", f"must be positive seconds, got {fixed_bound}")
        self.quantile = quantile
        self.fixed_bound = fixed_bound
        self.min_tail_requests = min_tail_requests
        judge.setdefault("max_canary_error_rate", None)
        self.judge = SequentialJudge(**judge)
        self._stable_past: Histogram | None = None
        self._look = 0
        self._last: Verdict | None = None
        self.bound: float | None = fixed_bound

    def observe(
        self, canary: Histogram | tuple[Histogram, Histogram], stable: Histogram | None = None
    ) -> Verdict:
        """One look's histograms of both versions (increments since the previous look);
        also accepts the pair as one argument, as a `Panel` passes it."""
        if stable is None:
            canary, stable = canary  # type: ignore[misc]
        assert isinstance(canary, Histogram)
        self._look += 1
        problem = canary.problem() or stable.problem()
        if problem is None and canary.bounds != stable.bounds:
            problem = "canary and stable have different bucket bounds"
        if problem is not None:
            return self._idle("invalid-counts", f"no data: {problem}")
        bound = self.fixed_bound
        if bound is None:
            past = self._stable_past
            # The boundary comes from earlier looks only (see the module docstring).
            bound = tail_bound(past, self.quantile, self.min_tail_requests) if past else None
            self._stable_past = stable if past is None else past + stable
        self.bound = bound
        if bound is None:
            return self._idle("no-boundary", "no data: learning the stable's latency quantile")
        if bound not in canary.bounds:
            return self._idle("invalid-counts", f"no data: no bucket with bound {bound:g}")
        batch = Batch.from_latency(
            canary.count, canary.above(bound), stable.count, stable.above(bound)
        )
        self._last = self.judge.observe(batch)
        return self._last

    def _idle(self, reason: str, message: str) -> Verdict:
        """A look that adds no evidence: the inner judge is not called (its looks count
        towards its promotion warm-up); its last evidence is reported."""
        last = self._last
        if last is not None and last.final:
            return last
        return Verdict(
            decision=CONTINUE,
            reason=reason,
            message=message,
            look=self._look,
            totals=last.totals if last else Batch(0, 0, 0, 0),
            rollback_evalue=last.rollback_evalue if last else 1.0,
            promote_evalue=last.promote_evalue if last else 1.0,
            rollback_threshold=self.judge.rollback_threshold,
            promote_threshold=self.judge.promote_threshold,
        )

    def state(self) -> dict[str, Any]:
        """JSON-ready state to resume: the inner judge's and the stable's past histogram."""
        past = self._stable_past
        return {
            "look": self._look,
            "judge": self.judge.state(),
            "stablePast": None
            if past is None
            else {"bounds": list(past.bounds), "cumulative": list(past.cumulative),
                  "count": past.count},
        }  # fmt: skip

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Resume from `state()` of an identically configured judge."""
        try:
            self.judge.load_state(state["judge"])
            past = state["stablePast"]
            self._stable_past = (
                None
                if past is None
                else Histogram(
                    tuple(float(b) for b in past["bounds"]),
                    tuple(float(c) for c in past["cumulative"]),
                    float(past["count"]),
                )
            )
            self._look = int(state["look"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError("latency judge state", f"cannot be restored: {exc}") from exc


def histogram(bounds: Sequence[float], cumulative: Sequence[float], count: float) -> Histogram:
    """Convenience constructor from sequences."""
    return Histogram(tuple(float(b) for b in bounds), tuple(float(c) for c in cumulative), count)

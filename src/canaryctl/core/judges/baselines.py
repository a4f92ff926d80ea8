"""Reference judges that mimic other tools, for benchmarks; not used by the driver.

* `ArgoLikeJudge`: Argo Rollouts AnalysisRun semantics: `count` measurements,
  fail when failed measurements exceed `failure_limit` (Argo's failureLimit).
  The Flagger-like baseline is `ThresholdJudge` itself.
* `ZTestJudge`: a two-proportion z-test (canary worse than stable) on the
  cumulative counts at every look, at a fixed level per look; the classical
  "peeking" procedure whose false-alarm rate grows with the number of looks.
* `MannWhitneyJudge`: Kayenta-like: each interval compares the canary's error
  rates over sub-intervals with stable's using a Mann-Whitney U test, and fails
  the canary when they are significantly higher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

from canaryctl.core.judges._batch import EMPTY, Batch
from canaryctl.core.judges._verdict import CONTINUE, PROMOTE, ROLLBACK, Decision, Verdict


class ArgoLikeJudge:
    """Success-rate measurements; rollback when failures > failure_limit, promote after count."""

    def __init__(self, min_success_rate: float = 0.99, failure_limit: int = 0, count: int = 10):
        self.min_success_rate = min_success_rate
        self.failure_limit = failure_limit
        self.count = count
        self._look = 0
        self._failures = 0
        self._totals = EMPTY
        self._final: Verdict | None = None

    def observe(self, batch: Batch) -> Verdict:
        """One measurement; a look without data counts as failed, like a NaN result."""
        if self._final is not None:
            return self._final
        self._look += 1
        self._totals = self._totals + batch
        ok = batch.problem() is None
        rate = 1.0 - batch.canary_errors / batch.canary_requests if ok else None
        if rate is None or rate < self.min_success_rate:
            self._failures += 1
        if self._failures > self.failure_limit:
            return self._end(ROLLBACK, f"{self._failures} failed measurements", rate)
        if self._look >= self.count:
            return self._end(PROMOTE, f"{self.count} measurements done", rate)
        return _verdict(CONTINUE, "measuring", self._look, self._totals, success_rate=rate)

    def _end(self, decision: Decision, message: str, rate: float | None) -> Verdict:
        self._final = _verdict(decision, message, self._look, self._totals, success_rate=rate)
        return self._final


class ZTestJudge:
    """Cumulative one-sided two-proportion z-test at every look; promote after `looks`."""

    def __init__(self, alpha: float = 0.05, looks: int = 10):
        self.critical = NormalDist().inv_cdf(1.0 - alpha)
        self.looks = looks
        self._look = 0
        self._totals = EMPTY
        self._final: Verdict | None = None

    def observe(self, batch: Batch) -> Verdict:
        """Add the look's counts and test the totals."""
        if self._final is not None:
            return self._final
        self._look += 1
        if batch.problem() is None:
            self._totals = self._totals + batch
        z = two_proportion_z(self._totals)
        if z > self.critical:
            self._final = _verdict(ROLLBACK, f"z = {z:.2f}", self._look, self._totals)
            return self._final
        if self._look >= self.looks:
            self._final = _verdict(PROMOTE, f"z = {z:.2f}", self._look, self._totals)
            return self._final
        return _verdict(CONTINUE, f"z = {z:.2f}", self._look, self._totals)


class MannWhitneyJudge:
    """Per interval, canary vs stable sub-interval error rates; fail when canary is higher."""

    def __init__(self, alpha: float = 0.05, intervals: int = 10):
        self.alpha = alpha
        self.intervals = intervals
        self._look = 0
        self._totals = EMPTY
        self._final: Verdict | None = None

    def observe(self, sub_batches: Sequence[Batch]) -> Verdict:
        """Judge one interval given its sub-interval batches."""
        if self._final is not None:
            return self._final
        self._look += 1
        usable = [b for b in sub_batches if b.problem() is None and b.stable_requests > 0]
        for b in usable:
            self._totals = self._totals + b
        canary = [b.canary_errors / b.canary_requests for b in usable]
        stable = [b.stable_errors / b.stable_requests for b in usable]
        p = mann_whitney_greater(canary, stable) if usable else 1.0
        # Kayenta's two-sided interval at confidence 1 - alpha, read in the "High" direction.
        if p < self.alpha / 2:
            self._final = _verdict(
                ROLLBACK, f"canary higher, p = {p:.3g}", self._look, self._totals
            )
            return self._final
        if self._look >= self.intervals:
            self._final = _verdict(PROMOTE, "all intervals passed", self._look, self._totals)
            return self._final
        return _verdict(CONTINUE, f"p = {p:.3g}", self._look, self._totals)


def two_proportion_z(totals: Batch) -> float:
    """z statistic of canary error rate minus stable's, pooled variance; 0 if undefined."""
    nc, ns = totals.canary_requests, totals.stable_requests
    if nc <= 0 or ns <= 0:
        return 0.0
    pooled = (totals.canary_errors + totals.stable_errors) / (nc + ns)
    variance = pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / ns)
    if variance <= 0:
        return 0.0
    return (totals.canary_errors / nc - totals.stable_errors / ns) / math.sqrt(variance)


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value that x tends to be larger than y.

    Normal approximation with tie correction and continuity correction, as used
    for small samples with ties; returns 1.0 when every value is tied.
    """
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        return 1.0
    pooled = sorted((v, i < n) for i, v in enumerate([*x, *y]))
    ranks_x = 0.0
    tie_term = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j < len(pooled) and pooled[j][0] == pooled[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2.0
        ranks_x += mid_rank * sum(1 for k in range(i, j) if pooled[k][1])
        t = j - i
        tie_term += t**3 - t
        i = j
    u = ranks_x - n * (n + 1) / 2.0
    total = n + m
    variance = n * m / 12.0 * ((total + 1) - tie_term / (total * (total - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n * m / 2.0 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _verdict(
    decision: Decision,
    message: str,
    look: int,
    totals: Batch,
    *,
    success_rate: float | None = None,
) -> Verdict:
    return Verdict(
        decision=decision,
        reason=decision if decision != CONTINUE else "collecting",
        message=message,
        look=look,
        totals=totals,
        success_rate=success_rate,
    )

"""ThresholdJudge: Flagger/Argo-style checks of the canary's success rate per interval.

One call to `observe` is one check (Flagger's `interval`, Argo's measurement):

* success rate >= `min_success_rate`: a successful check; after `promote_after`
  successful checks (Flagger's iterations, not necessarily consecutive) the judge
  promotes.
* success rate < `min_success_rate`: a failed check; when failed checks reach
  `failure_limit` the judge rolls back. This is Flagger's `threshold`
  (rollback at failedChecks >= threshold); Argo's `failureLimit: L` (fail when
  failures > L) is `failure_limit = L + 1`. Failures are counted over the whole
  analysis, not consecutively, as both tools do.
* with `inconclusive_floor` set, a rate in [inconclusive_floor, min_success_rate)
  is inconclusive instead of failed: the verdict is "continue" with
  `inconclusive=True`, which the driver turns into a pause (Argo's behaviour).
* a check without data (fewer than `min_requests` canary requests, or invalid
  counts) is a measurement error, counted apart from failures: after more than
  `consecutive_error_limit` of them in a row the judge rolls back (Argo's
  `consecutiveErrorLimit`, default 4). A check with data resets the run.
"""

from __future__ import annotations

from canaryctl.core.judges._batch import EMPTY, Batch
from canaryctl.core.judges._verdict import CONTINUE, PROMOTE, ROLLBACK, Decision, Verdict
from canaryctl.errors import SpecError


class ThresholdJudge:
    """Absolute success-rate checks with failure, error and promotion counters."""

    def __init__(
        self,
        min_success_rate: float = 0.99,
        failure_limit: int = 5,
        promote_after: int = 10,
        *,
        consecutive_error_limit: int = 4,
        inconclusive_floor: float | None = None,
        min_requests: float = 1,
    ) -> None:
        if not 0 <= min_success_rate <= 1:
            raise SpecError("min_success_rate", f"must be in [0, 1], got {min_success_rate}")
        if failure_limit < 1:
            raise SpecError("failure_limit", f"must be >= 1, got {failure_limit}")
        if promote_after < 1:
            raise SpecError("promote_after", f"must be >= 1, got {promote_after}")
        if consecutive_error_limit < 0:
            raise SpecError(
                "consecutive_error_limit", f"must be >= 0, got {consecutive_error_limit}"
            )
        if inconclusive_floor is not None and not 0 <= inconclusive_floor <= min_success_rate:
            raise SpecError(
                "inconclusive_floor", f"must be in [0, min_success_rate], got {inconclusive_floor}"
            )
        if not min_requests > 0:
            raise SpecError("min_requests", f"must be > 0, got {min_requests}")
        self.min_success_rate = min_success_rate
        self.failure_limit = failure_limit
        self.promote_after = promote_after
        self.consecutive_error_limit = consecutive_error_limit
        self.inconclusive_floor = inconclusive_floor
        self.min_requests = min_requests
        self._look = 0
        self._successes = 0
        self._failures = 0
        self._errors_in_a_row = 0
        self._totals = EMPTY
        self._final: Verdict | None = None

    def observe(self, batch: Batch) -> Verdict:
        """Run one check on this interval's counts. Promote and rollback are absorbing."""
        if self._final is not None:
            return self._final
        self._look += 1
        problem = batch.problem()
        reason = "no-canary-traffic" if batch.canary_requests == 0 else "invalid-counts"
        if problem is None and batch.canary_requests < self.min_requests:
            problem = f"only {batch.canary_requests:g} canary requests (< {self.min_requests:g})"
            reason = "too-few-requests"
        if problem is not None:
            self._errors_in_a_row += 1
            if self._errors_in_a_row > self.consecutive_error_limit:
                return self._decide(
                    ROLLBACK,
                    "consecutive-errors",
                    f"{self._errors_in_a_row} checks in a row without data "
                    f"(limit {self.consecutive_error_limit}): {problem}",
                )
            return self._verdict(CONTINUE, reason, "no data")

        self._errors_in_a_row = 0
        self._totals = self._totals + batch
        rate = 1.0 - batch.canary_errors / batch.canary_requests
        if rate >= self.min_success_rate:
            self._successes += 1
            if self._successes >= self.promote_after:
                return self._decide(
                    PROMOTE,
                    "checks-passed",
                    f"{self._successes} successful checks; last success rate {rate:.3%}",
                    rate,
                )
            return self._verdict(
                CONTINUE,
                "check-passed",
                f"success rate {rate:.3%} >= {self.min_success_rate:.3%} "
                f"({self._successes}/{self.promote_after})",
                rate,
            )
        floor = self.inconclusive_floor
        if floor is not None and rate >= floor:
            return self._verdict(
                CONTINUE,
                "inconclusive",
                f"success rate {rate:.3%} between {floor:.3%} and {self.min_success_rate:.3%}",
                rate,
                inconclusive=True,
            )
        self._failures += 1
        if self._failures >= self.failure_limit:
            return self._decide(
                ROLLBACK,
                "failure-limit",
                f"{self._failures} failed checks (limit {self.failure_limit}); "
                f"last success rate {rate:.3%} < {self.min_success_rate:.3%}",
                rate,
            )
        return self._verdict(
            CONTINUE,
            "check-failed",
            f"success rate {rate:.3%} < {self.min_success_rate:.3%} "
            f"({self._failures}/{self.failure_limit} failures)",
            rate,
        )

    def _verdict(
        self,
        decision: Decision,
        reason: str,
        message: str,
        rate: float | None = None,
        *,
        inconclusive: bool = False,
    ) -> Verdict:
        return Verdict(
            decision=decision,
            reason=reason,
            message=message,
            look=self._look,
            totals=self._totals,
            success_rate=rate,
            successful_checks=self._successes,
            failed_checks=self._failures,
            consecutive_errors=self._errors_in_a_row,
            inconclusive=inconclusive,
        )

    def _decide(
        self, decision: Decision, reason: str, message: str, rate: float | None = None
    ) -> Verdict:
        self._final = self._verdict(decision, reason, message, rate)
        return self._final

"""SequentialJudge: an anytime-valid comparison of canary and stable error rates.

Two e-processes run side by side on the canary's share of errors (see `_eprocess`
for the model and the proof of validity):

* rollback: null R <= R0 = 1 + tolerance against a mixture of alternatives on a
  log grid over [1.3 R0, 4 R0] (or `rollback_ratios`), each weighted by the
  inverse of the evidence one error carries for it (`information_weights`: the
  small regressions, slow to show, weigh most; the large ones win in a few looks
  whatever their weight); roll back when it reaches 1/alpha. However often we
  look, a canary whose error rate is within the tolerance of stable's is rolled
  back with probability at most alpha.
* promotion: null R >= promote_ratio against alternatives on a log grid over
  [promote_ratio / 10, promote_ratio / 1.05]; promote when it reaches 1/beta. A
  canary at least promote_ratio times worse than stable is promoted with
  probability at most beta.

R is the ratio of the canary's error rate to stable's. Both tests condition on
the errors seen, so they need no stable baseline rate, and the canary's share
may change from look to look (weight steps, autoscaling, diurnal load).

Bursty errors. The guarantee assumes independent errors. Real errors come in
bursts, which would make a few looks look like strong evidence. Four defences,
none of which costs validity under the independent model:

* each look's likelihood ratio is raised to 1/phi, phi being the dispersion of
  error counts estimated from earlier looks (`dispersion_prior` stands in for
  it over the first `dispersion_prior_looks` looks, before any is known; with
  `math.inf` looks phi stays at the prior). The default prior is 1: the first
  looks' estimate is pulled towards Poisson rather than inflated, since an
  inflated prior cost 4-12% of exposure in the busiest cells of the benchmark and
  did not lower false rollbacks under bursts there (the per-look cap does);
* one look may multiply an e-value by at most threshold^(1/min_decisive_looks),
  so no single look decides alone (by default at least two looks are needed);
* a promotion can only be decided after `promote_warmup_looks` looks and
  `promote_warmup_errors` errors, once burstiness is known: promoting late is
  cheap, promoting wrongly is not. A dry spell of canary errors between bursts
  would otherwise read as a healthy canary. The warm-up's looks are not thrown
  away: they weigh the promotion mixture's alternatives (the ratios the data
  favour), while its e-value stays at 1 (`MixtureEProcess.restart`). So a canary
  the warm-up saw failing more than stable needs far more evidence after it than
  a dry spell gives, and a good one is promoted sooner (its weights sit near its
  ratio);
* with per-pod counts (`Batch.canary_pods` / `stable_pods`, or a stored
  `pod_summary`), one pod's excess over its siblings is left out of the evidence
  for a decision (the canary's pods in the rollback test and the kill switch, the
  stable's in the promotion test), and the stable's pods measure phi from the
  first look on (`_pods`: trimmed counts are never larger, so each factor is at
  most the untrimmed one, pointwise).

Tuning. The defaults suit an unknown regression and bursty errors. When the
regression worth catching is known (say 2x) and errors are independent, a
point alternative (`rollback_ratios=(2, 2)`), `tolerance=0`,
`min_decisive_looks=1` and a fixed dispersion of 1 (`dispersion_prior=1`,
`dispersion_prior_looks=math.inf`) make the rollback test Wald's SPRT for that
regression: the fastest test at level alpha for it, slower for others. None of
this changes the bound on false rollbacks; independence is the assumption.

Latency uses the same test on counts of slow requests: feed a separate judge with
`Batch.from_latency(...)` batches (requests above a histogram bucket's bound).

Missing or invalid data (no canary requests, NaN, negative counts, more errors
than requests) never moves either e-process; the verdict is "continue" with the
message "no data". Promotion also needs `min_canary_requests` in total, so a
canary whose traffic or metrics are broken is not promoted on the strength of
stable's errors alone. The kill switch rolls back at once when the canary's error
rate is above `max_canary_error_rate` (None disables it), whatever stable does, over
the latest looks that hold at least `kill_switch_min_requests` canary requests
together (one look at busy canaries, the last few at quiet ones). It is a guard
against gross failures, not a test: judged over fewer requests (one 5-s look of a
canary serving 10 req/s is 50 requests) a burst of errors on the canary's pods of a
healthy version fires it, which the tests' own evidence is tempered against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from canaryctl.core.judges._batch import EMPTY, Batch
from canaryctl.core.judges._dispersion import DispersionEstimate
from canaryctl.core.judges._eprocess import MixtureEProcess, information_weights, log_grid
from canaryctl.core.judges._verdict import CONTINUE, PROMOTE, ROLLBACK, Decision, Verdict
from canaryctl.errors import SpecError

# exp() of more than ~709 overflows; e-values this large only appear at a
# decision and are reported capped so that status stays valid JSON.
_MAX_LOG_EVALUE = 690.0
# Lets k looks each at the per-look cap reach the threshold despite rounding.
_CAP_SLACK = 1e-9
# Default rollback alternatives, as multiples of 1 + tolerance. A mixture pays for
# its width (about the log of its number of points, in nats of evidence, with equal
# weights; the information weights shift that price onto the large regressions): over
# [1.05, 20] x the 2x regression needed about 1.5 looks more than over [1.2, 7.5], and
# [1.3, 4] with 8 points cuts the mean exposure to a 2x regression by 4-15% more
# (benchmark grid, 5-s looks). Regressions beyond 4x still win quickly: the point at 4x
# gathers evidence against them faster than against 2x, and the kill switch catches the
# gross ones.
_LOW, _HIGH = 1.3, 4.0
# The most looks the kill switch's window spans, however few requests they hold.
_KILL_WINDOW_LOOKS = 60


class SequentialJudge:
    """Anytime-valid canary judge; call `observe` once per look with that look's increments."""

    def __init__(
        self,
        alpha: float = 0.05,
        beta: float = 0.05,
        tolerance: float = 0.1,
        promote_ratio: float = 1.5,
        *,
        grid_size: int = 8,
        rollback_ratios: tuple[float, float] | None = None,
        min_decisive_looks: int = 2,
        dispersion_prior: float = 1.0,
        dispersion_prior_looks: float = 4.0,
        promote_warmup_looks: int = 18,
        promote_warmup_errors: float = 100,
        min_canary_requests: float = 100,
        max_canary_error_rate: float | None = 0.5,
        kill_switch_min_requests: float = 100,
    ) -> None:
        _check_open_unit("alpha", alpha)
        _check_open_unit("beta", beta)
        _check("tolerance", tolerance, tolerance >= 0, ">= 0")
        _check("promote_ratio", promote_ratio, promote_ratio > 0, "> 0")
        _check("grid_size", grid_size, grid_size >= 1, ">= 1")
        null = 1.0 + tolerance
        low, high = rollback_ratios or (_LOW * null, _HIGH * null)
        if not (null < low <= high < math.inf):
            raise SpecError(
                "rollback_ratios",
                f"must satisfy 1 + tolerance = {null:g} < low <= high < inf, got ({low}, {high})",
            )
        _check("min_decisive_looks", min_decisive_looks, min_decisive_looks >= 1, ">= 1")
        _check("dispersion_prior", dispersion_prior, dispersion_prior >= 1, ">= 1")
        _check(
            "dispersion_prior_looks", dispersion_prior_looks, dispersion_prior_looks >= 0, ">= 0"
        )
        _check("promote_warmup_looks", promote_warmup_looks, promote_warmup_looks >= 0, ">= 0")
        _check("promote_warmup_errors", promote_warmup_errors, promote_warmup_errors >= 0, ">= 0")
        _check("min_canary_requests", min_canary_requests, min_canary_requests >= 0, ">= 0")
        if max_canary_error_rate is not None:
            _check(
                "max_canary_error_rate",
                max_canary_error_rate,
                0 < max_canary_error_rate <= 1,
                "in (0, 1]",
            )
        self.alpha = alpha
        self.beta = beta
        self.tolerance = tolerance
        self.promote_ratio = promote_ratio
        self.min_decisive_looks = min_decisive_looks
        self.promote_warmup_looks = promote_warmup_looks
        self.promote_warmup_errors = promote_warmup_errors
        self.min_canary_requests = min_canary_requests
        self.max_canary_error_rate = max_canary_error_rate
        self.kill_switch_min_requests = kill_switch_min_requests
        # The kill switch's window: (canary requests, canary errors) of the latest looks,
        # no more of them than it takes to hold `kill_switch_min_requests` requests.
        self._kill_window: list[tuple[float, float]] = []
        # low == high is a point alternative: one grid point says it all.
        ratios = log_grid(low, high, grid_size if high > low else 1)
        self._rollback = MixtureEProcess(null, ratios, information_weights(null, ratios, _LOW))
        self._promote = MixtureEProcess(
            promote_ratio, log_grid(promote_ratio / 10.0, promote_ratio / 1.05, grid_size)
        )
        self._dispersion = DispersionEstimate(dispersion_prior, dispersion_prior_looks)
        self._totals = EMPTY
        self._look = 0
        self._final: Verdict | None = None

    @property
    def rollback_threshold(self) -> float:
        """1 / alpha."""
        return 1.0 / self.alpha

    @property
    def promote_threshold(self) -> float:
        """1 / beta."""
        return 1.0 / self.beta

    def observe(self, batch: Batch) -> Verdict:
        """Weigh one look's counts and decide. Promote and rollback are absorbing."""
        if self._final is not None:
            return self._final
        self._look += 1
        if batch.problem() is not None:
            reason = "no-canary-traffic" if batch.canary_requests == 0 else "invalid-counts"
            return self._verdict(CONTINUE, reason, "no data")

        # phi comes from earlier looks only, which keeps the tempered ratios supermartingales.
        phi = self._dispersion.value()
        temper = 1.0 / phi
        share = batch.canary_share
        s, f = batch.canary_errors, batch.stable_errors
        # With per-pod counts one pod's excess over its siblings is not evidence for a
        # decision: the rollback test weighs the canary's errors trimmed of it, the
        # promotion test the stable's (`_pods`; never more than the untrimmed counts).
        pods = batch.pods(phi)
        s_rollback = min(s, pods.canary_errors) if pods else s
        # The kill switch asks whether the canary fails as a whole: one pod's burst does not.
        s_whole = min(s, pods.canary_errors_whole) if pods else s
        f_promote = min(f, pods.stable_errors) if pods else f
        step = self._max_log_step(self.rollback_threshold)
        self._rollback.update(s_rollback, f, share, temper, step)
        warmed_up = self._warmed_up()
        step = self._max_log_step(self.promote_threshold)
        self._promote.update(s, f_promote, share, temper, step)
        if not warmed_up:
            # Until the warm-up ends the looks only teach the promotion mixture which
            # ratios the data favour; its e-value stays at 1 (`MixtureEProcess.restart`).
            self._promote.restart()
        self._dispersion.add(batch.canary_requests, s, batch.stable_requests, f)
        if pods:
            self._dispersion.add_spread(pods.stable_chi2, pods.stable_df)
        self._totals = self._totals + batch

        killed = self._kill_switch(batch.canary_requests, s_whole)
        if killed is not None:
            return self._decide(ROLLBACK, "kill-switch", killed)
        if self._rollback.log_value >= math.log(self.rollback_threshold):
            message = (
                f"canary error rate above {1 + self.tolerance:.3g}x stable's (e-value "
                f"{self._evalue(self._rollback):.3g} >= {self.rollback_threshold:.3g}; "
                f"{self._rates()})"
            )
            return self._decide(ROLLBACK, "evidence", message)
        if self._promote.log_value >= math.log(self.promote_threshold):
            if self._totals.canary_requests >= self.min_canary_requests:
                message = (
                    f"canary error rate below {self.promote_ratio:.3g}x stable's (e-value "
                    f"{self._evalue(self._promote):.3g} >= {self.promote_threshold:.3g}; "
                    f"{self._rates()})"
                )
                return self._decide(PROMOTE, "evidence", message)
            message = (
                f"evidence suffices but only {self._totals.canary_requests:g} of "
                f"{self.min_canary_requests:g} canary requests seen"
            )
            return self._verdict(CONTINUE, "min-canary-requests", message)
        return self._verdict(CONTINUE, "collecting", f"collecting evidence ({self._rates()})")

    def state(self) -> dict[str, Any]:
        """JSON-ready evidence of an undecided judge, to resume after a restart.

        A decided judge needs no state: its last verdict is the decision.
        """
        return {
            "look": self._look,
            "totals": self._totals.to_dict(),
            "rollback": self._rollback.state(),
            "promote": self._promote.state(),
            "dispersion": self._dispersion.state(),
            "killWindow": [list(look) for look in self._kill_window],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Resume from `state()` of a judge with the same configuration."""
        try:
            self._rollback.load(state["rollback"])
            self._promote.load(state["promote"])
            self._dispersion.load(state["dispersion"])
            totals = state["totals"]
            self._totals = Batch(
                float(totals["canaryRequests"]),
                float(totals["canaryErrors"]),
                float(totals["stableRequests"]),
                float(totals["stableErrors"]),
            )
            self._look = int(state["look"])
            # Absent in states stored before the window existed: the window starts anew.
            window = [(float(r), float(e)) for r, e in state.get("killWindow", ())]
            if any(not (math.isfinite(r) and math.isfinite(e)) for r, e in window):
                raise ValueError("killWindow holds a non-finite count")
            self._kill_window = window
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SpecError("judge state", f"cannot be restored: {exc}") from exc
        self._final = None

    def _kill_switch(self, requests: float, errors: float) -> str | None:
        """Add one look to the kill switch's window; why it fires, or None."""
        limit = self.max_canary_error_rate
        if limit is None:
            return None
        window = self._kill_window
        window.append((requests, errors))
        # Drop the oldest looks the window can do without: it stays the shortest run of
        # latest looks that holds enough requests (or all looks, while they hold fewer).
        while len(window) > 1 and sum(r for r, _ in window[1:]) >= self.kill_switch_min_requests:
            window.pop(0)
        # A canary that trickles (a request or less per look) keeps a bounded window
        # (stored with the judge's state): over that many looks it is no gross failure.
        del window[:-_KILL_WINDOW_LOOKS]
        total = sum(r for r, _ in window)
        failed = sum(e for _, e in window)
        if total < self.kill_switch_min_requests or failed <= limit * total:
            return None
        looks = f"the last {len(window)} looks" if len(window) > 1 else "the last look"
        return (
            f"canary error rate {failed / total:.1%} above the kill switch {limit:.1%} "
            f"({failed:g} of {total:g} canary requests in {looks})"
        )

    def _warmed_up(self) -> bool:
        errors = self._totals.canary_errors + self._totals.stable_errors
        return self._look > self.promote_warmup_looks and errors >= self.promote_warmup_errors

    def _max_log_step(self, threshold: float) -> float:
        if self.min_decisive_looks == 1:
            return math.inf
        return math.log(threshold) / self.min_decisive_looks + _CAP_SLACK

    def _rates(self) -> str:
        t = self._totals
        canary = t.canary_errors / t.canary_requests if t.canary_requests else 0.0
        stable = t.stable_errors / t.stable_requests if t.stable_requests else 0.0
        return f"canary {canary:.3%} vs stable {stable:.3%} errors over {self._look} looks"

    @staticmethod
    def _evalue(process: MixtureEProcess) -> float:
        return math.exp(min(process.log_value, _MAX_LOG_EVALUE))

    def _ratio_estimate(self) -> float | None:
        t = self._totals
        if t.canary_requests <= 0 or t.stable_requests <= 0 or t.stable_errors <= 0:
            return None
        return (t.canary_errors / t.canary_requests) / (t.stable_errors / t.stable_requests)

    def _verdict(self, decision: Decision, reason: str, message: str) -> Verdict:
        return Verdict(
            decision=decision,
            reason=reason,
            message=message,
            look=self._look,
            totals=self._totals,
            rollback_evalue=self._evalue(self._rollback),
            promote_evalue=self._evalue(self._promote),
            rollback_threshold=self.rollback_threshold,
            promote_threshold=self.promote_threshold,
            ratio_estimate=self._ratio_estimate(),
            dispersion=self._dispersion.value(),
        )

    def _decide(self, decision: Decision, reason: str, message: str) -> Verdict:
        self._final = self._verdict(decision, reason, message)
        return self._final


def _check(field: str, value: float, ok: bool, expected: str) -> None:
    if not ok:
        raise SpecError(field, f"must be {expected}, got {value}")


def _check_open_unit(field: str, value: float) -> None:
    _check(field, value, 0 < value < 1, "in (0, 1)")

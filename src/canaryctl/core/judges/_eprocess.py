"""Mixture likelihood-ratio e-process for the canary's share of errors.

Model. In look t the canary gets a share rho_t of the requests. With error rates
p_c and p_s and R = p_c / p_s, and errors arriving as Poisson counts, the number
of canary errors S_t given the look's total errors S_t + F_t is
Binomial(S_t + F_t, theta_t(R)) with

    theta_t(R) = rho_t R / (rho_t R + 1 - rho_t),

whatever the (unknown) stable error rate. The likelihood ratio of an alternative
r against a boundary null r0 for one look is

    (theta_t(r) / theta_t(r0))^S_t * ((1 - theta_t(r)) / (1 - theta_t(r0)))^F_t
      = exp(S_t log(r / r0) - (S_t + F_t) log((1 + rho_t (r - 1)) / (1 + rho_t (r0 - 1)))).

Validity. Write theta, theta0, theta1 for theta_t at the true R, at r0 and at r.
Given the past and S_t + F_t = n, the expected factor is

    (theta theta1 / theta0 + (1 - theta)(1 - theta1) / (1 - theta0))^n
      = (1 + (theta - theta0)(theta1 - theta0) / (theta0 (1 - theta0)))^n.

theta_t is increasing in R, so when the null side and the alternative lie on
opposite sides of r0 (R <= r0 < r for the rollback test, r < r0 <= R for the
promotion test) the bracket is at most 1: the product is a nonnegative
supermartingale for every R in the composite null, not only at its boundary.
A fixed-weight mixture of supermartingales is one, and raising each look's factor
to a power 1/phi_t <= 1 chosen before the look keeps E[factor] <= 1 by Jensen's
inequality. Ville's inequality then gives P(sup_t M_t >= 1/alpha) <= alpha: the
test may stop at any look, however often it looks, and rho_t may change between
looks (the argument is conditional on it).

When errors are Binomial rather than Poisson and R = 1, S_t given n is
hypergeometric, which is dominated in convex order by the Binomial with the same
mean (Hoeffding 1963), so the bound still holds there; for R != 1 and error
rates of a few percent the Binomial model is close, and the tolerance absorbs it.

The guarantee rests on errors being independent. Bursts (many errors from one
pod in one look) break that; `_dispersion` estimates how much and tempers the
evidence, and `max_log_step` bounds what a single look can add.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def log_grid(low: float, high: float, size: int) -> list[float]:
    """`size` points spaced evenly in log between `low` and `high` inclusive."""
    if size == 1:
        return [math.sqrt(low * high)]
    step = math.log(high / low) / (size - 1)
    return [low * math.exp(i * step) for i in range(size)]


def log_sum_exp(values: Sequence[float]) -> float:
    """log(sum(exp(v))) without overflow."""
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def information_weights(
    null_ratio: float, alternatives: Sequence[float], nearest: float = 1.3
) -> list[float]:
    """Prior weights proportional to 1 / log(r / r0)^2, normalised to sum to 1.

    The evidence one error carries against the null grows about as log(r / r0)^2 for
    an alternative r near it (the Kullback-Leibler divergence of the binomial share
    is close to a constant times that over the default grid), so an alternative
    close to the null needs many more errors to reach the threshold than a far one.
    A mixture pays log(1 / w) nats for an alternative of weight w; weighing each
    alternative by the inverse of its information per error spends that price where
    errors are plentiful (a large regression, decided in a few looks whatever its
    weight) and spares the regressions that are hard to see. Alternatives closer to
    the null than `nearest` times it weigh as if they were at `nearest`: otherwise a
    grid starting just above the null would put nearly all the weight on a point
    whose evidence can barely grow, and every regression would wait for it.
    """
    floor = math.log(nearest)
    raw = [max(math.log(r / null_ratio), floor) ** -2 for r in alternatives]
    total = math.fsum(raw)
    return [w / total for w in raw]


class MixtureEProcess:
    """M_t = sum_j w_j prod_t Lambda_t(r_j)^(1/phi_t) against null ratio r0, in log space.

    The weights w_j are fixed before any look (uniform unless given). The reported
    e-value K_t grows by at most `max_look_evalue` per look:
    K_t = K_{t-1} min(M_t / M_{t-1}, c). Given the past, E[M_t / M_{t-1}] <= 1,
    so K is a supermartingale too; the cap stops one look (a burst of errors on
    one pod) from deciding alone.
    """

    __slots__ = (
        "_log_alt",
        "_log_capped",
        "_log_lambda",
        "_log_mix",
        "_log_weights",
        "alternatives",
        "null_ratio",
    )

    def __init__(
        self,
        null_ratio: float,
        alternatives: Sequence[float],
        weights: Sequence[float] | None = None,
    ) -> None:
        self.null_ratio = null_ratio
        self.alternatives = tuple(alternatives)
        self._log_alt = [math.log(r / null_ratio) for r in self.alternatives]
        if weights is None:
            weights = [1.0 / len(self.alternatives)] * len(self.alternatives)
        if (
            len(weights) != len(self.alternatives)
            or not all(w > 0 for w in weights)
            or not math.isclose(math.fsum(weights), 1.0)
        ):
            raise ValueError("weights must be one positive weight per alternative, summing to 1")
        self._log_weights = [math.log(w) for w in weights]
        self._log_lambda = [0.0] * len(self.alternatives)
        self._log_mix = 0.0  # log M_0 = log sum_j w_j = 0
        self._log_capped = 0.0

    def update(
        self,
        canary_errors: float,
        stable_errors: float,
        share: float,
        temper: float,
        max_log_step: float = math.inf,
    ) -> None:
        """Fold in one look: errors on each side, canary request share, exponent 1/phi."""
        errors = canary_errors + stable_errors
        if errors == 0 or share <= 0:
            return  # every factor is exactly 1
        null_term = math.log1p(share * (self.null_ratio - 1.0))
        lam = self._log_lambda
        for j, r in enumerate(self.alternatives):
            step = canary_errors * self._log_alt[j] - errors * (
                math.log1p(share * (r - 1.0)) - null_term
            )
            lam[j] += step * temper
        log_mix = self._mixture()
        self._log_capped += min(log_mix - self._log_mix, max_log_step)
        self._log_mix = log_mix

    def restart(self) -> None:
        """Set K back to 1, keeping the alternatives' likelihoods (a warm-up look).

        The looks so far then act as a learned prior: from here on M_t / M_{t-1} is the
        mixture's factor with weights proportional to w_j Lambda(r_j) so far, which
        favour the ratios the data favour, and it still has conditional mean <= 1 under
        the null. K restarted at 1 is therefore a nonnegative supermartingale from its
        last restart on, and Ville's inequality bounds the chance it ever reaches 1/beta
        by beta, as for a process started afresh; a decision is only taken after the
        last restart.
        """
        self._log_capped = 0.0

    @property
    def log_value(self) -> float:
        """log K_t; 0 before any evidence."""
        return self._log_capped

    def state(self) -> dict[str, Any]:
        """Per-alternative log likelihood ratios and the capped value, enough to resume."""
        return {"logLambda": list(self._log_lambda), "logValue": self._log_capped}

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore from `state()` of an identically configured process."""
        log_lambda = [float(v) for v in state["logLambda"]]
        if len(log_lambda) != len(self._log_lambda):
            raise ValueError("state has a different grid size")
        self._log_lambda = log_lambda
        self._log_mix = self._mixture()
        self._log_capped = float(state["logValue"])

    def _mixture(self) -> float:
        return log_sum_exp(
            [lam + w for lam, w in zip(self._log_lambda, self._log_weights, strict=True)]
        )

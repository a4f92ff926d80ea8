"""How much more variable error counts are than the Poisson model assumes.

Real errors come in bursts (a pod loses its database connection, a node is
drained), so per-look counts vary more than Poisson. The e-process treats every
error as independent evidence; with bursts it would over-count. We estimate the
Pearson dispersion phi = Var / mean of each arm's per-look error counts around
that arm's pooled error rate (so a canary that is uniformly worse does not look
dispersed), and the sequential judge raises each look's likelihood ratio to the
power 1/phi -- the quasi-likelihood correction. For errors arriving in clusters of
size K, phi = E[K^2] / E[K], which is the exponent that keeps the tempered ratio a
supermartingale to second order. Only to second order: with large bursts the
far alternatives (R many times the tolerance) still over-react, which is why the
judge also caps what one look can add; benchmarks/analysis.py measures the limit.

Per-pod counts. When looks carry the stable's counts per pod, the spread of
errors across the stable's pods within each look is a second, faster estimate of
the same phi (a burst from one pod shows at once as one pod far above its
siblings; with P pods a look adds P - 1 degrees of freedom instead of 1). Only
the stable's pods are used: a canary pod far above its siblings is a finding, not
noise, and must not temper the evidence against the canary.

Only past looks enter the estimate used at a look, and the tempered ratio is a
supermartingale under the Poisson model for any phi >= 1 fixed before the look,
so this never costs validity; it only costs some speed when data are clean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from canaryctl.core.judges._pods import stable_spread


class _Arm:
    """Running sums for one side: looks, requests, errors, sum of errors^2 / requests."""

    __slots__ = ("errors", "looks", "requests", "square")

    def __init__(self) -> None:
        self.looks = 0
        self.requests = 0.0
        self.errors = 0.0
        self.square = 0.0

    def add(self, requests: float, errors: float) -> None:
        if requests <= 0:
            return
        self.looks += 1
        self.requests += requests
        self.errors += errors
        self.square += errors * errors / requests

    def chi2_and_df(self) -> tuple[float, int]:
        """Pearson chi-square around the pooled rate, and its degrees of freedom.

        sum_t (x_t - n_t p)^2 / (n_t p) with p = X / N expands to Q N / X - X, so
        the running sums above are enough.
        """
        if self.looks < 2 or self.errors <= 0:
            return 0.0, max(self.looks - 1, 0)
        chi2 = self.square * self.requests / self.errors - self.errors
        return max(chi2, 0.0), self.looks - 1

    def state(self) -> list[float]:
        return [self.looks, self.requests, self.errors, self.square]

    def load(self, values: Sequence[float]) -> None:
        self.looks = int(values[0])
        self.requests, self.errors, self.square = (float(v) for v in values[1:4])


class DispersionEstimate:
    """Pooled Pearson dispersion of canary and stable error counts, with a prior.

    `prior_looks` pseudo-looks at `prior` stand in for the looks not yet seen: at
    the first look nothing is known about bursts, so the prior is all there is.
    Infinitely many pseudo-looks fix the value at the prior, for streams known to
    be Poisson (the estimate from sparse counts is noisy, and flooring it at 1
    biases it up). The value is never below 1 (under-dispersion is not evidence).
    """

    __slots__ = ("_canary", "_pods_chi2", "_pods_df", "_stable", "prior", "prior_looks")

    def __init__(self, prior: float, prior_looks: float) -> None:
        self.prior = prior
        self.prior_looks = prior_looks
        self._canary = _Arm()
        self._stable = _Arm()
        self._pods_chi2 = 0.0
        self._pods_df = 0

    def value(self) -> float:
        """Current phi >= 1."""
        if math.isinf(self.prior_looks):
            return max(self.prior, 1.0)
        chi_c, df_c = self._canary.chi2_and_df()
        chi_s, df_s = self._stable.chi2_and_df()
        chi = chi_c + chi_s + self._pods_chi2
        df = df_c + df_s + self._pods_df
        if df + self.prior_looks == 0:
            return max(self.prior, 1.0)
        phi = (chi + self.prior * self.prior_looks) / (df + self.prior_looks)
        return max(phi, 1.0)

    def add(
        self,
        canary_requests: float,
        canary_errors: float,
        stable_requests: float,
        stable_errors: float,
    ) -> None:
        """Record one look (after its evidence was weighed with the previous value)."""
        self._canary.add(canary_requests, canary_errors)
        self._stable.add(stable_requests, stable_errors)

    def add_pods(self, pods: Sequence[tuple[str, float, float]]) -> None:
        """Record the stable's per-pod (name, requests, errors) of one look.

        Pearson chi-square of the pods' errors around the look's pooled rate, with
        (pods with requests) - 1 degrees of freedom; a look without errors says nothing.
        """
        self.add_spread(*stable_spread(pods))

    def add_spread(self, chi2: float, df: float) -> None:
        """Record a look's spread of the stable's errors across its pods (`stable_spread`)."""
        self._pods_chi2 += chi2
        self._pods_df += int(df)

    def state(self) -> dict[str, list[float]]:
        """Running sums, enough to resume."""
        return {
            "canary": self._canary.state(),
            "stable": self._stable.state(),
            "pods": [self._pods_chi2, self._pods_df],
        }

    def load(self, state: Mapping[str, Sequence[float]]) -> None:
        """Restore from `state()`."""
        self._canary.load(state["canary"])
        self._stable.load(state["stable"])
        pods = state.get("pods", (0.0, 0))
        self._pods_chi2, self._pods_df = float(pods[0]), int(pods[1])

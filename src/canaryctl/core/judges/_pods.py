"""What a look's per-pod counts tell the pooled test: one pod's excess is not evidence.

Errors come in bursts from one pod (a lost connection, a bad node). In the pooled
test such a burst on the canary weighs as a strong sign of a regression, and on
the stable as a strong sign of a healthy canary. With counts per pod (`sum by
(pod)`), a look shows the burst for what it is: one pod far above its siblings.
Two things follow, both in `PodSummary`:

* Trimming. Each pod's errors above what its siblings explain are left out of the
  evidence *for* a decision: the canary's pods are trimmed in the rollback test,
  the stable's pods in the promotion test. A pod with requests n gets at most
  tau = e + Z sqrt(phi e) + K phi errors, e = n * max(siblings' error rate, the
  other version's error rate) in the same look and phi the dispersion known before
  the look (`_dispersion`): bursts as large as those already seen are left to the
  tempering by 1/phi, and only bursts beyond them (or any burst before any is
  known, at the first looks) are trimmed. A uniformly worse canary is not trimmed
  (its siblings are as bad as it is), nor is a stable pod that fails like the
  canary. Trimming only ever lowers the count that speaks for a decision, and each
  test's likelihood ratio is monotone in that count (the rollback ratio grows with
  the canary's errors, the promotion ratio with the stable's), so every trimmed
  factor is at most the untrimmed one, pointwise: the e-processes stay
  supermartingales wherever they were, whatever the trimming rule and even when
  the rule reads the current look. Trimming can cost speed, never validity. The
  kill switch, which asks whether the canary fails as a whole, counts the canary's
  errors trimmed with phi = 1 (no burst is a failure of the whole canary).
* Dispersion. The spread of the stable's errors across its pods within the look
  (Pearson chi-square around the look's pooled stable rate, pods - 1 degrees of
  freedom) is a fast estimate of how bursty errors are (`_dispersion`). Only the
  stable's pods: a canary pod far above its siblings is a finding, not noise.

A canary pod that fails far more than its siblings is therefore trimmed in the
pooled test and caught by the per-pod test (`PodOutlierJudge`), which compares
each pod with the stable untrimmed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: (pod name, requests, errors) of one pod in one look.
PodCounts = tuple[str, float, float]

# A pod keeps up to e + Z sqrt(phi e) + K phi errors, e the errors its siblings' rate
# predicts. With independent errors (phi = 1) a pod goes past that in at most about 1
# look in 1000 (Poisson tails: 1e-5 at e = 1, 3e-4 at 10, 7e-4 at 100, 1e-3 at 300),
# and then by a few errors, so trimming costs next to no evidence without bursts.
TRIM_Z = 3.0
TRIM_K = 3.0


@dataclass(frozen=True, slots=True)
class PodSummary:
    """Five numbers per look: what the pooled test takes from per-pod counts.

    Small enough to be kept for every look of a rollout (the pods themselves are not).
    """

    canary_errors: float  # the canary's errors with each pod's excess trimmed
    stable_errors: float  # the stable's errors with each pod's excess trimmed
    stable_chi2: float  # spread of the stable's errors across its pods
    stable_df: float  # its degrees of freedom (pods with requests - 1; 0 without errors)
    # The canary's errors with any burst trimmed (phi = 1), for the kill switch: it asks
    # whether the canary fails as a whole, which one pod's burst does not show.
    canary_errors_whole: float

    def problem(self) -> str | None:
        """Why these numbers cannot be used, or None if they can."""
        if any(not math.isfinite(v) or v < 0 for v in self.to_row()):
            return "pod summary is NaN, infinite or negative"
        return None

    def to_row(self) -> list[float]:
        """The five numbers, for storage (`PodSummary(*row)` restores them)."""
        return [
            self.canary_errors,
            self.stable_errors,
            self.stable_chi2,
            self.stable_df,
            self.canary_errors_whole,
        ]


def summarize(
    counts: tuple[float, float, float, float],
    canary_pods: Sequence[PodCounts],
    stable_pods: Sequence[PodCounts],
    dispersion: float = 1.0,
) -> PodSummary:
    """The look's `PodSummary` from its (canary requests, canary errors, stable requests,
    stable errors), its pods and the dispersion known before it; a side without pods is
    left untrimmed."""
    canary_requests, canary_errors, stable_requests, stable_errors = counts
    canary_rate = canary_errors / canary_requests if canary_requests > 0 else 0.0
    stable_rate = stable_errors / stable_requests if stable_requests > 0 else 0.0
    chi2, df = stable_spread(stable_pods)
    return PodSummary(
        canary_errors=max(0.0, canary_errors - excess(canary_pods, stable_rate, dispersion)),
        stable_errors=max(0.0, stable_errors - excess(stable_pods, canary_rate, dispersion)),
        stable_chi2=chi2,
        stable_df=float(df),
        canary_errors_whole=max(0.0, canary_errors - excess(canary_pods, stable_rate)),
    )


def excess(pods: Sequence[PodCounts], other_rate: float, dispersion: float = 1.0) -> float:
    """Errors of these pods above what their siblings (or the other version) explain,
    bursts of the known `dispersion` included."""
    phi = max(1.0, dispersion)
    requests = math.fsum(n for _, n, _ in pods)
    errors = math.fsum(e for _, _, e in pods)
    total = 0.0
    for _, n, e in pods:
        if n <= 0 or e <= 0:
            continue
        siblings = requests - n
        sibling_rate = (errors - e) / siblings if siblings > 0 else 0.0
        expected = n * max(sibling_rate, other_rate)
        total += max(0.0, e - (expected + TRIM_Z * math.sqrt(phi * expected) + TRIM_K * phi))
    return total


def stable_spread(pods: Sequence[PodCounts]) -> tuple[float, int]:
    """Pearson chi-square of the pods' errors around their pooled rate, and its df.

    A look without errors, or with fewer than two pods with requests, says nothing.
    """
    used = [(n, e) for _, n, e in pods if n > 0]
    requests = math.fsum(n for n, _ in used)
    errors = math.fsum(e for _, e in used)
    if len(used) < 2 or errors <= 0:
        return 0.0, 0
    rate = errors / requests
    # A pod so small that it expects no errors at all (n * rate underflows) says nothing.
    terms = [(e - n * rate) ** 2 / (n * rate) for n, e in used if n * rate > 0]
    if len(terms) < 2:
        return 0.0, 0
    return math.fsum(terms), len(terms) - 1

"""Several metrics, one error budget: sequential judges decided together.

A canary is usually judged on more than one metric: errors, latency, and metrics
of the user's own (templates). If each ran its own test at level alpha, a good
canary would be rolled back with probability up to k * alpha. The panel splits
the budget instead.

Rule.
* Metric i gets alpha_i = alpha * w_i / sum(w) (equal weights by default) and its
  rollback threshold is 1 / alpha_i. The panel rolls back as soon as any metric
  reaches its threshold (or its kill switch fires).
* The panel promotes once every metric has promoted, each at its own beta
  (rollback-only members such as the per-pod test take part in the budget but
  do not vote on promotion).
  A metric that has promoted stays promoted (its judge is absorbing); the others
  keep looking.

Guarantees (proof sketch).
* False rollbacks. Let G be the metrics on which the canary is good (within
  tolerance). For i in G, metric i's rollback e-process is a nonnegative
  supermartingale with respect to its own data, so Ville's inequality gives
  P(it ever reaches 1/alpha_i) <= alpha_i. The panel falsely rolls back only if
  one of them does, so by the union bound
      P(false rollback) <= sum_{i in G} alpha_i <= alpha,
  at any number of looks and under any dependence between the metrics (errors
  and latency of the same requests are correlated; the union bound does not
  care). Averaging e-values would be tighter but needs all metrics to be
  supermartingales in one common filtration, which correlated metrics do not
  give for free.
* Wrong promotions. The panel promotes only if every metric promoted. If the
  canary is bad on metric i (at least promote_ratio x stable), that needed
  metric i's promotion e-process to reach 1/beta_i, which happens with
  probability <= beta_i: wrong promotions are bounded per metric, with no split.
* Cost: the rollback threshold of each metric grows from 1/alpha to k/alpha,
  i.e. log(k) more nats of evidence (about 23% more with two metrics, 37% with
  three at alpha = 0.05).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from canaryctl.core.judges._verdict import CONTINUE, PROMOTE, ROLLBACK, Decision, Verdict
from canaryctl.errors import SpecError


class Judge(Protocol):
    """What a panel member does: one look's batch in, a verdict out."""

    def observe(self, data: Any, /) -> Verdict: ...


def split_alpha(alpha: float, weights: Mapping[str, float]) -> dict[str, float]:
    """Each metric's share of the false-rollback budget, proportional to its weight."""
    if not 0 < alpha < 1:
        raise SpecError("alpha", f"must be in (0, 1), got {alpha}")
    if not weights:
        raise SpecError("metrics", "at least one metric is needed")
    for name, weight in weights.items():
        if not (weight > 0 and weight < float("inf")):
            raise SpecError(f"metrics.{name}.weight", f"must be a positive number, got {weight}")
    total = sum(weights.values())
    return {name: alpha * weight / total for name, weight in weights.items()}


@dataclass(frozen=True, slots=True)
class PanelVerdict:
    """The panel's decision at one look and each metric's verdict behind it."""

    decision: Decision
    reason: str
    message: str
    verdicts: Mapping[str, Verdict]

    @property
    def final(self) -> bool:
        """True once the panel has promoted or rolled back."""
        return self.decision != CONTINUE


def combine(
    verdicts: Mapping[str, Verdict | None], veto_only: frozenset[str] = frozenset()
) -> PanelVerdict:
    """Any rollback rolls back; promotion needs every metric promoted; else continue.

    A metric without a verdict yet (no data so far) holds promotion. Metrics in
    `veto_only` (e.g. the per-pod test) can roll back but never hold promotion.
    """
    known = {name: v for name, v in verdicts.items() if v is not None}
    for name, verdict in known.items():
        if verdict.decision == ROLLBACK:
            return PanelVerdict(ROLLBACK, verdict.reason, f"{name}: {verdict.message}", known)
    voters = [name for name in verdicts if name not in veto_only]
    if voters and all(name in known and known[name].decision == PROMOTE for name in voters):
        message = "; ".join(f"{name}: {known[name].message}" for name in voters)
        return PanelVerdict(PROMOTE, "evidence", message, known)
    waiting = [name for name in voters if name not in known or known[name].decision != PROMOTE]
    message = f"waiting for evidence on {', '.join(waiting)}" if waiting else "collecting"
    return PanelVerdict(CONTINUE, "collecting", message, known)


class Panel:
    """Sequential judges for several metrics under one false-rollback budget alpha.

    `judges` maps a metric name to a factory taking that metric's alpha share, so
    each judge keeps its own tolerance, promote ratio and beta.
    """

    def __init__(
        self,
        alpha: float,
        judges: Mapping[str, Callable[[float], Judge]],
        weights: Mapping[str, float] | None = None,
    ) -> None:
        shares = split_alpha(alpha, weights or dict.fromkeys(judges, 1.0))
        if set(shares) != set(judges):
            raise SpecError("metrics", "weights must name exactly the panel's metrics")
        self.alpha = alpha
        self.shares = shares
        self.judges: dict[str, Judge] = {
            name: factory(shares[name]) for name, factory in judges.items()
        }
        self.veto_only = frozenset(
            name for name, judge in self.judges.items() if not getattr(judge, "promotes", True)
        )
        self._last: dict[str, Verdict | None] = dict.fromkeys(judges)
        self._final: PanelVerdict | None = None

    def observe(self, batches: Mapping[str, Any]) -> PanelVerdict:
        """One look: each metric's data, a `Batch` or for relative latency a pair of
        histograms (None or missing = no data for that metric)."""
        if self._final is not None:
            return self._final
        for name, judge in self.judges.items():
            batch = batches.get(name)
            if batch is not None:
                self._last[name] = judge.observe(batch)
        verdict = combine(self._last, self.veto_only)
        if verdict.final:
            self._final = verdict
        return verdict

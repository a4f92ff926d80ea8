"""One bad pod: each canary pod's errors against the stable's, on its own.

A canary pod on a bad node or with a poisoned cache fails far more than its
siblings, but in the canary's total it is diluted by the healthy pods. With
per-pod counts (`Batch.canary_pods`), each canary pod gets its own sequential
test against the whole stable: R_pod = (pod's error rate) / (stable's), null
R_pod <= 1 + tolerance (default 1: a pod may fail up to twice as often as the
stable before it counts as an outlier; pods differ a little by nature).

Budget. The first `max_pods` canary pods seen (in order of first appearance,
which is fixed by the past) each get alpha / max_pods; later pods are judged
only through the canary's total. By the union bound the pod tests together roll
back a canary with every pod within tolerance with probability at most alpha,
and inside a `Panel` this alpha is the pods' share of the rollout's budget.

This judge only ever rolls back: promotion is the business of the pooled tests.
Each pod test uses the stable's per-pod counts for its dispersion estimate, so a
stable pod that bursts makes every pod test more careful, never less.
"""

from __future__ import annotations

import math
from typing import Any

from canaryctl.core.judges._batch import EMPTY, Batch
from canaryctl.core.judges._verdict import CONTINUE, ROLLBACK, Verdict
from canaryctl.core.judges.sequential import SequentialJudge
from canaryctl.errors import SpecError


class PodOutlierJudge:
    """Sequential tests of each canary pod against the stable; rollback-only."""

    promotes = False

    def __init__(
        self,
        alpha: float = 0.05,
        *,
        tolerance: float = 1.0,
        max_pods: int = 10,
        **judge: Any,
    ) -> None:
        if max_pods < 1:
            raise SpecError("pods.maxPods", f"must be >= 1, got {max_pods}")
        if not 0 < alpha < 1:
            raise SpecError("alpha", f"must be in (0, 1), got {alpha}")
        self.alpha = alpha
        self.max_pods = max_pods
        judge.setdefault("max_canary_error_rate", None)
        self._make = lambda: SequentialJudge(alpha / max_pods, tolerance=tolerance, **judge)
        SequentialJudge(alpha / max_pods, tolerance=tolerance, **judge)  # validate now
        self.pods: dict[str, SequentialJudge] = {}
        self._look = 0
        self._final: Verdict | None = None

    @property
    def rollback_threshold(self) -> float:
        """Each pod's threshold: max_pods / alpha."""
        return self.max_pods / self.alpha

    def observe(self, batch: Batch) -> Verdict:
        """One look; pods absent from it simply add no evidence."""
        if self._final is not None:
            return self._final
        self._look += 1
        if batch.problem() is not None or not batch.canary_pods:
            return self._verdict("no-pod-data", "no per-pod data in this look")
        for name, requests, errors in batch.canary_pods:
            judge = self.pods.get(name)
            if judge is None:
                if len(self.pods) >= self.max_pods:
                    continue  # beyond the budget: judged through the canary's total only
                judge = self.pods[name] = self._make()
            if requests <= 0:
                continue
            pod_batch = Batch(
                requests, errors, batch.stable_requests, batch.stable_errors,
                stable_pods=batch.stable_pods,
            )  # fmt: skip
            verdict = judge.observe(pod_batch)
            if verdict.decision == ROLLBACK:
                self._final = Verdict(
                    decision=ROLLBACK,
                    reason="pod-outlier",
                    message=f"canary pod {name}: {verdict.message}",
                    look=self._look,
                    totals=verdict.totals,
                    rollback_evalue=verdict.rollback_evalue,
                    rollback_threshold=verdict.rollback_threshold,
                    ratio_estimate=verdict.ratio_estimate,
                    dispersion=verdict.dispersion,
                )
                return self._final
        return self._verdict("collecting", "no canary pod stands out")

    def state(self) -> dict[str, Any]:
        """JSON-ready evidence of an undecided judge: each pod's test, in order of appearance."""
        return {"look": self._look, "pods": {n: j.state() for n, j in self.pods.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        """Resume from `state()` of an identically configured judge."""
        try:
            pods = {}
            for name, pod_state in state["pods"].items():
                judge = self._make()
                judge.load_state(pod_state)
                pods[str(name)] = judge
            if len(pods) > self.max_pods:
                raise ValueError("more pods than max_pods")
            self.pods = pods
            self._look = int(state["look"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SpecError("pod judge state", f"cannot be restored: {exc}") from exc
        self._final = None

    def evidence(self) -> dict[str, float]:
        """Each pod's rollback e-value, for the live view and `get`."""
        return {
            name: math.exp(min(float(judge.state()["rollback"]["logValue"]), 690.0))
            for name, judge in self.pods.items()
        }

    def _verdict(self, reason: str, message: str) -> Verdict:
        evidence = self.evidence()
        top = max(evidence, key=evidence.__getitem__) if evidence else None
        if top is not None:
            message = f"{message}; highest pod e-value {evidence[top]:.3g} ({top})"
        return Verdict(
            decision=CONTINUE,
            reason=reason,
            message=message,
            look=self._look,
            totals=EMPTY,
            rollback_evalue=evidence[top] if top is not None else 1.0,
            rollback_threshold=self.rollback_threshold,
        )

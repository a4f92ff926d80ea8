"""What a judge says after one look, with the evidence behind it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from canaryctl.core.judges._batch import Batch

Decision = Literal["continue", "promote", "rollback"]

CONTINUE: Decision = "continue"
PROMOTE: Decision = "promote"
ROLLBACK: Decision = "rollback"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A judge's decision at one look and the numbers that produced it.

    Fields that do not apply to a judge are None (e.g. e-values for the threshold
    judge). `reason` is a stable machine-readable code; `message` is for humans.
    """

    decision: Decision
    reason: str
    message: str
    look: int
    totals: Batch
    rollback_evalue: float | None = None
    promote_evalue: float | None = None
    rollback_threshold: float | None = None
    promote_threshold: float | None = None
    ratio_estimate: float | None = None
    dispersion: float | None = None
    success_rate: float | None = None
    successful_checks: int | None = None
    failed_checks: int | None = None
    consecutive_errors: int | None = None
    inconclusive: bool = False

    @property
    def final(self) -> bool:
        """True once the judge has promoted or rolled back (absorbing)."""
        return self.decision != CONTINUE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping with camelCase keys, for a Kubernetes status field."""
        out: dict[str, Any] = {
            "decision": self.decision,
            "reason": self.reason,
            "message": self.message,
            "look": self.look,
            "totals": self.totals.to_dict(),
            "inconclusive": self.inconclusive,
        }
        optional = {
            "rollbackEvalue": self.rollback_evalue,
            "promoteEvalue": self.promote_evalue,
            "rollbackThreshold": self.rollback_threshold,
            "promoteThreshold": self.promote_threshold,
            "ratioEstimate": self.ratio_estimate,
            "dispersion": self.dispersion,
            "successRate": self.success_rate,
            "successfulChecks": self.successful_checks,
            "failedChecks": self.failed_checks,
            "consecutiveErrors": self.consecutive_errors,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Back from `to_dict()` (e.g. a decision kept in a status)."""
        totals = data.get("totals") or {}
        return cls(
            decision=data["decision"],
            reason=data["reason"],
            message=data["message"],
            look=int(data["look"]),
            totals=Batch(
                float(totals.get("canaryRequests", 0.0)),
                float(totals.get("canaryErrors", 0.0)),
                float(totals.get("stableRequests", 0.0)),
                float(totals.get("stableErrors", 0.0)),
            ),
            rollback_evalue=data.get("rollbackEvalue"),
            promote_evalue=data.get("promoteEvalue"),
            rollback_threshold=data.get("rollbackThreshold"),
            promote_threshold=data.get("promoteThreshold"),
            ratio_estimate=data.get("ratioEstimate"),
            dispersion=data.get("dispersion"),
            success_rate=data.get("successRate"),
            successful_checks=data.get("successfulChecks"),
            failed_checks=data.get("failedChecks"),
            consecutive_errors=data.get("consecutiveErrors"),
            inconclusive=bool(data.get("inconclusive", False)),
        )

"""Kubernetes-style conditions of a Canary, derived from the rollout status (pure).

Conditions follow the `metav1.Condition` shape: `type`, `status` ("True", "False",
"Unknown"), `observedGeneration`, `lastTransitionTime` (RFC 3339), `reason` (CamelCase)
and `message`. A condition keeps its `lastTransitionTime` while its status does not change.

- `Progressing`: True while a rollout is under way (Pending to RollingBack), its message
  saying what it waits for now (`holdReason`) and its latest transition; False once it has
  ended (reason Succeeded or RolledBack) or before any rollout (Idle).
- `Promoted`: True after a promotion; False after a rollback (reason says why); Unknown
  while the rollout runs.
- `Ready`: True while traffic is on a version with the capacity it needs and the spec is
  accepted; False while rolling back, while the stable is degraded, or for an invalid spec
  (reason InvalidSpec, message naming the field), or while the API server refuses the
  operator's writes (reason WriteDenied: an admission policy or webhook, naming the object
  and the policy's message).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from canaryctl.core.models import CanaryStatus, PauseReason, Phase

PROGRESSING = "Progressing"
PROMOTED = "Promoted"
READY = "Ready"
CONDITION_TYPES = (PROGRESSING, PROMOTED, READY)

_REASON = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")
_MESSAGE_LIMIT = 32768


def rfc3339(epoch: float) -> str:
    """Epoch seconds as the RFC 3339 UTC time Kubernetes uses (second precision)."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reason(text: str, fallback: str) -> str:
    """A CamelCase reason as metav1.Condition requires (no spaces or dashes)."""
    words = re.split(r"[^A-Za-z0-9_,:]+", text)
    camel = "".join(w[:1].upper() + w[1:] for w in words if w)
    return camel if camel and _REASON.fullmatch(camel) else fallback


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: float,
) -> list[dict[str, Any]]:
    """Return `conditions` with `type_` set; lastTransitionTime changes only with status."""
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != status
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "observedGeneration": int(generation or 0),
        "lastTransitionTime": rfc3339(now)
        if changed
        else previous.get("lastTransitionTime", rfc3339(now)),  # type: ignore[union-attr]
        "reason": _reason(reason, type_),
        "message": message[:_MESSAGE_LIMIT],
    }
    out = [dict(c) for c in conditions if c.get("type") != type_]
    out.append(condition)
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return sorted(out, key=lambda c: (order.get(c.get("type", ""), len(order)), c.get("type")))


def conditions_for(
    status: CanaryStatus | None,
    generation: int | None,
    now: float,
    previous: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The three conditions describing `status` (None: no rollout has started yet)."""
    phase = status.phase if status is not None else None
    detail = (status.message or status.reason) if status is not None else ""
    if phase is None:
        progressing = ("False", "Idle", "no rollout has started")
    elif phase.terminal:
        progressing = ("False", phase.value, detail or f"rollout {phase.value}")
    else:
        step = f"step {status.step_index + 1}, weight {status.weight}%"  # type: ignore[union-attr]
        # What holds the rollout now (the machine's hold) first: it says why it does not
        # move; the latest transition follows.
        hold = status.hold_reason  # type: ignore[union-attr]
        text = "; ".join(part for part in (hold, detail) if part)
        progressing = ("True", phase.value, f"{step}: {text}" if text else step)
    if phase is Phase.SUCCEEDED:
        promoted = ("True", "Succeeded", detail or "the canary was promoted")
    elif phase is Phase.ROLLED_BACK:
        why = status.reason or "RolledBack"  # type: ignore[union-attr]
        promoted = ("False", why, detail or "the canary was rolled back")
    else:
        promoted = ("Unknown", "Progressing" if phase else "Idle", "no promotion yet")
    if phase is Phase.ROLLING_BACK:
        ready = ("False", "RollingBack", detail or "traffic is moving back to the stable")
    elif phase is Phase.PAUSED and status.pause_reason is PauseReason.STABLE_DEGRADED:  # type: ignore[union-attr]
        ready = ("False", "StableDegraded", detail or "the stable lost ready replicas")
    else:
        ready = ("True", "Ready", "the spec is accepted and traffic is served")
    out: list[dict[str, Any]] = list(previous)
    for type_, (state, reason, message) in zip(
        CONDITION_TYPES, (progressing, promoted, ready), strict=True
    ):
        out = set_condition(out, type_, state, reason, message, generation, now)
    return out


def invalid_spec_conditions(
    field: str,
    reason: str,
    generation: int | None,
    now: float,
    previous: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Conditions of a Canary whose spec was refused: Ready False, naming the field."""
    return set_condition(
        previous, READY, "False", "InvalidSpec", f"{field}: {reason}", generation, now
    )


def denied_conditions(
    object_: str,
    reason: str,
    generation: int | None,
    now: float,
    previous: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Conditions of a Canary whose writes the API server refuses (an admission policy or
    webhook, validation, RBAC): Ready False, naming the object and the server's message."""
    return set_condition(
        previous, READY, "False", "WriteDenied", f"writing {object_} was denied: {reason}",
        generation, now,
    )  # fmt: skip


def verdict_text(status: CanaryStatus | None) -> str:
    """One word or two for the Verdict printer column, explaining where the rollout stands."""
    if status is None:
        return ""
    if status.phase is Phase.SUCCEEDED:
        return "Promoted"
    if status.phase in (Phase.ROLLED_BACK, Phase.ROLLING_BACK):
        return status.reason or "RolledBack"
    failing = sorted(name for name, check in status.checks.items() if not check.passed)
    if failing:
        return "Failing: " + ",".join(failing)
    return "Passing" if status.checks else ""


def step_text(status: CanaryStatus | None, steps: int) -> str:
    """`2/5`: the current step (1-based) over all steps, as the live view shows it."""
    if status is None:
        return f"0/{steps}"
    return f"{min(status.step_index + 1, steps)}/{steps}"

"""What the engine tells its front ends (CLI views, operator events) after each tick."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class VersionState:
    """Replica counts of one side of the canary."""

    name: str
    desired: int
    ready: int
    exists: bool = True


@dataclass(frozen=True)
class Snapshot:
    """The rollout as the last tick saw it; everything a live view shows."""

    name: str
    namespace: str
    phase: str
    step: int
    steps: int
    desired_weight: int
    effective_weight: float | None
    stable: VersionState
    canary: VersionState
    message: str
    elapsed: float
    stage: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    analysis: dict[str, Any] | None = None
    # The latest record of each gate (`checks` is the history: changes and analysis looks).
    current_checks: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    pause_reason: str | None = None
    pause_until: float | None = None
    # What the rollout waits for now (the stored status' holdReason); "" while it moves.
    hold_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the --output json event payload)."""
        return asdict(self)


@dataclass(frozen=True)
class Notice:
    """One transition or warning, in Kubernetes Event terms."""

    type: str  # Normal | Warning
    reason: str
    message: str


class Sink(Protocol):
    """A front end that receives notices and snapshots."""

    def notice(self, notice: Notice) -> None:
        """Called once per transition or warning."""
        ...

    def snapshot(self, snap: Snapshot) -> None:
        """Called after every tick."""
        ...

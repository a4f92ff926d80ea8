"""The traffic router interface: a small set of idempotent operations per provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class Change:
    """One object change a router makes or would make (for plans, dry runs and logs)."""

    verb: str  # create | patch | scale | delete
    obj: str  # kind/name, e.g. "deployment/app-v1"
    detail: str

    def __str__(self) -> str:
        return f"{self.verb} {self.obj}: {self.detail}"


class Router(Protocol):
    """What the engine needs from any way of splitting traffic.

    Every method is idempotent and level-triggered: calling it again after a crash, or
    when the cluster is already in the wanted state, changes nothing.
    """

    kind: str

    def reconcile(self) -> list[Change]:
        """Validate the referenced objects (SpecError if bad), changing nothing.

        Returns the changes the first `set_weight` will make (objects to create or patch).
        """
        ...

    def set_weight(
        self, weight: int, *, replicas: tuple[int, int] | None = None, dry_run: bool = False
    ) -> list[Change]:
        """Move towards `weight` percent on the canary, destination capacity first.

        `replicas` is the (stable, canary) replica count the engine wants at this weight;
        routers that split by pod ratio realise the weight with it, others ignore it.
        """
        ...

    def get_weight(self) -> float | None:
        """The canary share actually in effect in the cluster (None if it cannot be read)."""
        ...

    def serving(self, side: Literal["stable", "canary"]) -> int:
        """Pods of `side`'s version still listed as serving in the EndpointSlices of the
        Services this router sends (or may send) that version's traffic through."""
        ...

    def promote(self, *, retire: bool = True, dry_run: bool = False) -> list[Change]:
        """After full traffic on the canary: make it the new stable and retire the old one.

        With `retire=False` only the routing moves (routes and the stable Service serve
        the new version) and the old pods keep running, so they can drain first.
        """
        ...

    def cleanup(self, *, dry_run: bool = False) -> list[Change]:
        """Remove what the router created (after promotion or rollback)."""
        ...

"""Leader election on a `coordination.k8s.io/v1` Lease: of several operator processes,
exactly one acts.

The rules are client-go's: a candidate takes the Lease only when its holder has not
renewed it for `lease_seconds`, measured on the candidate's own clock from the moment it
last saw the Lease change (so clocks of different machines never need to agree). The
holder renews every `retry_seconds`; when it has not managed to renew for
`renew_deadline` seconds (shorter than `lease_seconds`), it stops acting on its own,
before anybody else may take over: a deposed leader never writes next to a new one.
Every write is guarded by the Lease's resourceVersion, so two candidates never both win.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger(__name__)


class LeaderElector:
    """Keeps trying to hold one Lease; `acting()` says whether this process may act now."""

    def __init__(
        self,
        client: Client,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_seconds: float = 15.0,
        renew_deadline: float = 10.0,
        retry_seconds: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_seconds < renew_deadline < lease_seconds:
            raise ValueError("need retry_seconds < renew_deadline < lease_seconds")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.retry_seconds = retry_seconds
        self.on_change = on_change
        self.clock = clock
        self._renewed_at: float | None = None  # our clock, last successful renewal
        self._seen: tuple[str | None, str | None] = (None, None)  # holder, resourceVersion
        self._seen_at = 0.0
        self._answered_at: float | None = None  # our clock, last answer about the Lease
        self._was_acting = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- public ---------------------------------------------------------------------------

    def acting(self) -> bool:
        """True while this process holds the Lease and renewed it within the renew deadline."""
        renewed = self._renewed_at
        return renewed is not None and self.clock() - renewed < self.renew_deadline

    def in_contact(self) -> bool:
        """True while the API server answered about the Lease within the lease duration
        (held by anybody, or absent): this process can reach it and may take over."""
        answered = self._answered_at
        return answered is not None and self.clock() - answered < self.lease_seconds

    def start(self) -> None:
        """Run the election in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        """Stop competing; with `release`, hand the Lease over at once (graceful shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.retry_seconds + 5)
        was = self.acting()
        self._renewed_at = None
        self._notify()
        if release and was:
            self._release()

    def try_once(self) -> bool:
        """One round of acquire-or-renew; returns whether this process holds the Lease."""
        now = self.clock()
        try:
            lease = self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                log.warning("reading lease %s: %s", self.name, exc.status.message)
                return False
            self._answered_at = now
            return self._create(now)
        self._answered_at = now
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity or None
        seen = (holder, lease.metadata.resourceVersion)
        if seen != self._seen:
            self._seen, self._seen_at = seen, now
        duration = spec.leaseDurationSeconds or self.lease_seconds
        if holder not in (None, self.identity) and now - self._seen_at < duration:
            return False  # someone else holds a live lease
        return self._write(lease, holder, now)

    # --- internals ------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.try_once()
            except Exception:  # never let the election thread die: log and retry
                log.exception("leader election round failed")
            self._notify()
            self._stop.wait(self.retry_seconds)

    def _notify(self) -> None:
        acting = self.acting()
        if acting != self._was_acting:
            self._was_acting = acting
            log.info("%s leadership of lease %s", "took" if acting else "lost", self.name)
            if self.on_change is not None:
                self.on_change(acting)

    def _micro_now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def _create(self, now: float) -> bool:
        lease = Lease(
            metadata=ObjectMeta(name=self.name, namespace=self.namespace),
            spec=LeaseSpec(
                holderIdentity=self.identity,
                leaseDurationSeconds=int(self.lease_seconds),
                acquireTime=self._micro_now(),
                renewTime=self._micro_now(),
                leaseTransitions=0,
            ),
        )
        try:
            self.client.create(lease, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 409:
                log.warning("creating lease %s: %s", self.name, exc.status.message)
            return False
        self._renewed_at = now
        return True

    def _write(self, lease: Lease, holder: str | None, now: float) -> bool:
        spec = lease.spec or LeaseSpec()
        taking = holder != self.identity
        spec.holderIdentity = self.identity
        spec.leaseDurationSeconds = int(self.lease_seconds)
        spec.renewTime = self._micro_now()
        if taking:
            spec.acquireTime = self._micro_now()
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
        lease.spec = spec
        try:
            # replace carries the resourceVersion we read: a concurrent writer makes it fail
            self.client.replace(lease, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 409:
                log.warning("renewing lease %s: %s", self.name, exc.status.message)
            return False
        self._renewed_at = now
        return True

    def _release(self) -> None:
        try:
            lease = self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec is None or lease.spec.holderIdentity != self.identity:
                return
            lease.spec.holderIdentity = None
            self.client.replace(lease, namespace=self.namespace)
        except ApiError as exc:
            log.warning("releasing lease %s: %s", self.name, exc.status.message)

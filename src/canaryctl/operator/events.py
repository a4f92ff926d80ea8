"""Kubernetes Events on Canary resources (`kubectl describe canary` and `kubectl get events`).

Posting an Event is one API request; a reconcile never waits for it. `emit` builds the
Event (stamped with the time of the decision it tells of, so `kubectl get events` orders
them as they happened) and puts it on a bounded queue; one worker thread posts them in
order. A full queue (the API server far behind) drops the Event rather than holding a
rollout: Events are for people, the Canary's status is the record. Every outcome is
counted in `canaryctl_events_total{result="posted"|"dropped"|"failed"}`.

`emit` returns a `Posted` handle: a caller that must know its own Event is out before it
goes on (the finalizer, before it lets the Canary go) waits on that one Event, with a
bound, and asks for it to be posted next (`urgent`), never for the whole queue: under a
mass deletion each finalizer waits for one request, not for everyone else's Events.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import ObjectReference
from lightkube.resources.core_v1 import Event

from canaryctl.kube import events as kube_events

log = logging.getLogger(__name__)

COMPONENT = "canaryctl-operator"
#: Events waiting to be posted at most; beyond that new ones are dropped (and counted).
QUEUE_SIZE = 1000


class Posted:
    """The outcome of one emitted Event: `wait` until it was posted, failed or dropped."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.result = ""  # "posted", "failed" or "dropped" once done

    def _finish(self, result: str) -> None:
        self.result = result
        self._done.set()

    def wait(self, timeout: float) -> bool:
        """True once the Event is out (posted, or given up on); False after `timeout`."""
        return self._done.wait(timeout)


class Recorder:
    """Records one Event per transition, verdict or operator action on a Canary."""

    def __init__(
        self,
        client: Client,
        api_version: str = "canaryctl.dev/v1alpha1",
        *,
        counter: Any | None = None,
        maxsize: int = QUEUE_SIZE,
    ) -> None:
        self.client = client
        self.api_version = api_version
        self._counter = counter  # a prometheus Counter labelled by result, or None
        self._maxsize = maxsize
        self._queue: collections.deque[tuple[Event, Posted] | None] = collections.deque()
        self._cond = threading.Condition()
        self._pending = 0  # queued or being posted
        self._worker = threading.Thread(target=self._run, name="events", daemon=True)
        self._worker.start()

    def emit(
        self,
        canary: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        *,
        urgent: bool = False,
    ) -> Posted:
        """Queue an Event about `canary` (a Canary body); never blocks, never raises.

        `urgent` puts it at the head of the queue (someone waits on it). The returned
        handle tells when it is out.
        """
        meta = canary["metadata"]
        involved = ObjectReference(
            apiVersion=self.api_version,
            kind="Canary",
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid"),
        )
        event = kube_events.build(involved, type_, reason, message, component=COMPONENT)
        log.info("%s/%s %s %s: %s", meta["namespace"], meta["name"], type_, reason, message)
        posted = Posted()
        with self._cond:
            # An urgent Event is never dropped for a full queue: one waits on it, and there
            # is at most one per finalizer at a time.
            if len(self._queue) >= self._maxsize and not urgent:
                self._count("dropped")
                log.warning("event queue full: dropped event %s", reason)
                posted._finish("dropped")
                return posted
            if urgent:
                self._queue.appendleft((event, posted))
            else:
                self._queue.append((event, posted))
            self._pending += 1
            self._cond.notify_all()
        return posted

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued Event is posted (or failed); False on timeout.

        For shutting down; a reconcile waits on its own Event's `Posted` instead.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Post what is queued (up to `timeout`), then stop the worker."""
        self.flush(timeout)
        with self._cond:
            self._queue.append(None)
            self._cond.notify_all()
        self._worker.join(timeout)

    def _next(self) -> tuple[Event, Posted] | None:
        with self._cond:
            while not self._queue:
                self._cond.wait()
            return self._queue.popleft()

    def _run(self) -> None:
        while (item := self._next()) is not None:
            event, posted = item
            result = "failed"
            try:
                self.client.create(event, namespace=event.metadata.namespace)
                result = "posted"
            except ApiError as exc:
                log.warning("could not record event %s: %s", event.reason, exc.status.message)
            except Exception as exc:  # the worker must outlive any one request
                log.warning("could not record event %s: %s", event.reason, exc)
            finally:
                self._count(result)
                posted._finish(result)
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def _count(self, result: str) -> None:
        if self._counter is not None:
            self._counter.labels(result).inc()

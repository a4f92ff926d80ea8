"""Kubernetes Events on Canary resources (`kubectl describe canary` and `kubectl get events`).

Posting an Event is one API request; a reconcile never waits for it. `emit` builds the
Event (stamped with the time of the decision it tells of, so `kubectl get events` orders
them as they happened) and puts it on a bounded queue; one worker thread posts them in
order. A full queue (the API server far behind) drops the Event rather than holding a
rollout: Events are for people, the Canary's status is the record. Every outcome is
counted in `canaryctl_events_total{result="posted"|"dropped"|"failed"}`.
"""

from __future__ import annotations

import logging
import queue
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
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize)
        self._cond = threading.Condition()
        self._pending = 0  # queued or being posted
        self._worker = threading.Thread(target=self._run, name="events", daemon=True)
        self._worker.start()

    def emit(self, canary: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an Event about `canary` (a Canary body); never blocks, never raises."""
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
        with self._cond:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self._count("dropped")
                log.warning("event queue full: dropped event %s", reason)
                return
            self._pending += 1

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued Event is posted (or failed); False on timeout."""
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
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return  # the worker is a daemon thread: it ends with the process
        self._worker.join(timeout)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self.client.create(event, namespace=event.metadata.namespace)
                self._count("posted")
            except ApiError as exc:
                self._count("failed")
                log.warning("could not record event %s: %s", event.reason, exc.status.message)
            except Exception as exc:  # the worker must outlive any one request
                self._count("failed")
                log.warning("could not record event %s: %s", event.reason, exc)
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def _count(self, result: str) -> None:
        if self._counter is not None:
            self._counter.labels(result).inc()

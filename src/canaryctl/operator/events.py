"""Kubernetes Events on Canary resources (`kubectl describe canary` and `kubectl get events`)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

log = logging.getLogger(__name__)

COMPONENT = "canaryctl-operator"


class Recorder:
    """Records one Event per transition, verdict or operator action on a Canary."""

    def __init__(self, client: Client, api_version: str = "canaryctl.dev/v1alpha1") -> None:
        self.client = client
        self.api_version = api_version

    def emit(self, canary: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an Event about `canary` (a Canary body); failures are logged, not raised."""
        meta = canary["metadata"]
        now = dt.datetime.now(dt.UTC)
        event = Event(
            metadata=ObjectMeta(
                name=f"{meta['name']}.{uuid.uuid4().hex[:12]}", namespace=meta["namespace"]
            ),
            involvedObject=ObjectReference(
                apiVersion=self.api_version,
                kind="Canary",
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            source=EventSource(component=COMPONENT),
            firstTimestamp=now,
            lastTimestamp=now,
            count=1,
            reportingComponent=COMPONENT,
        )
        log.info("%s/%s %s %s: %s", meta["namespace"], meta["name"], type_, reason, message)
        try:
            self.client.create(event, namespace=meta["namespace"])
        except ApiError as exc:
            log.warning("could not record event %s: %s", reason, exc.status.message)

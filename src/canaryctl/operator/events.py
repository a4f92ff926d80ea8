"""Kubernetes Events on Canary resources (`kubectl describe canary` and `kubectl get events`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import ObjectReference

from canaryctl.kube import events as kube_events

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
        involved = ObjectReference(
            apiVersion=self.api_version,
            kind="Canary",
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid"),
        )
        event = kube_events.build(involved, type_, reason, message, component=COMPONENT)
        log.info("%s/%s %s %s: %s", meta["namespace"], meta["name"], type_, reason, message)
        try:
            self.client.create(event, namespace=meta["namespace"])
        except ApiError as exc:
            log.warning("could not record event %s: %s", reason, exc.status.message)

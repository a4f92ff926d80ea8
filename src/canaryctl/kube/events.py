"""Kubernetes Events about a rollout, attached to the canary Deployment."""

from __future__ import annotations

import datetime as dt
import uuid

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from canaryctl.errors import ClusterError

COMPONENT = "canaryctl"


def emit(
    client: Client, namespace: str, deployment: str, type_: str, reason: str, message: str
) -> None:
    """Record one Event (shown by `kubectl describe deploy` and `kubectl get events`)."""
    now = dt.datetime.now(dt.UTC)
    event = Event(
        metadata=ObjectMeta(name=f"{deployment}.{uuid.uuid4().hex[:10]}", namespace=namespace),
        involvedObject=ObjectReference(
            apiVersion="apps/v1", kind="Deployment", name=deployment, namespace=namespace
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
    try:
        client.create(event, namespace=namespace)
    except ApiError as exc:
        raise ClusterError(f"recording event {reason}: {exc.status.message}") from exc

"""Kubernetes Events about a rollout: one builder for any involved object.

The engine attaches Events to the canary Deployment; the operator attaches them to the Canary
resource. Both go through `build` so an Event looks the same whoever records it.
"""

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
MAX_MESSAGE = 1024  # the API server rejects longer Event messages


def build(
    involved: ObjectReference,
    type_: str,
    reason: str,
    message: str,
    component: str = COMPONENT,
) -> Event:
    """An Event about `involved` (which must name its namespace), stamped now, count 1."""
    now = dt.datetime.now(dt.UTC)
    return Event(
        # A random suffix: several Events about one object must not collide by name.
        metadata=ObjectMeta(
            name=f"{involved.name}.{uuid.uuid4().hex[:12]}", namespace=involved.namespace
        ),
        involvedObject=involved,
        type=type_,
        reason=reason,
        message=message[:MAX_MESSAGE],
        source=EventSource(component=component),
        firstTimestamp=now,
        lastTimestamp=now,
        count=1,
        reportingComponent=component,
    )


def emit(
    client: Client, namespace: str, deployment: str, type_: str, reason: str, message: str
) -> None:
    """Record one Event (shown by `kubectl describe deploy` and `kubectl get events`)."""
    involved = ObjectReference(
        apiVersion="apps/v1", kind="Deployment", name=deployment, namespace=namespace
    )
    try:
        client.create(build(involved, type_, reason, message), namespace=namespace)
    except ApiError as exc:
        raise ClusterError(f"recording event {reason}: {exc.status.message}") from exc

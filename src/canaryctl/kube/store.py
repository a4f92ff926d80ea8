"""Rollout state kept in the cluster, so any process can resume or steer a rollout.

`RolloutStore` is the interface the Engine and the CLI use; it has two backends:
- `ConfigMapStore` (this module; `Store` is the same class): zero-install mode, used by
  `canaryctl rollout`;
- `canaryctl.kube.canary_store.CanaryStore`: operator mode, backed by a `Canary` resource
  (spec in `.spec`, rollout status in the `.status` subresource).
One rollout has exactly one record in one backend: never two sources of truth.

Zero-install mode keeps one ConfigMap per canary, ``canaryctl-<name>``, in the canary's
namespace:
- ``data.spec`` / ``data.status``: the rollout's spec and status as JSON;
- annotation ``canaryctl.dev/command``: the latest user command as JSON
  (``{"action": "promote", "full": false, "id": "..."}``), written by
  ``canaryctl promote|abort|pause|resume`` from any terminal; the driving process acts on
  each id once (the status remembers the last id it acted on);
- annotations ``canaryctl.dev/holder`` and ``canaryctl.dev/renewed``: a lease, so that two
  ``canaryctl rollout`` processes never both act on one canary.
Every write carries the resourceVersion it was computed from: a concurrent write makes it
fail with ConflictError instead of silently overwriting another actor's change.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from canaryctl.errors import ClusterError, ConflictError, RecordError, RolloutNotFound

PREFIX = "canaryctl-"
COMMAND = "canaryctl.dev/command"
HOLDER = "canaryctl.dev/holder"
RENEWED = "canaryctl.dev/renewed"
LABELS = {"app.kubernetes.io/managed-by": "canaryctl"}
COMMANDS = ("promote", "abort", "pause", "resume")
LEASE_SECONDS = 15.0
#: A driver at rest (nothing new to store) renews its lease only once it is this old: a
#: third of the lease, so two renewals can fail in a row before anyone may take over.
RENEW_AFTER = LEASE_SECONDS / 3


Source = Literal["configmap", "canary"]


@dataclass
class Record:
    """One canary's stored spec, status, pending command and lease.

    `spec` is the camelCase spec mapping (as `CanarySpec.model_dump(by_alias=True)` writes
    it for ConfigMaps; as the user wrote it, plus name and namespace, for a Canary).
    `status` is `CanaryStatus.to_dict()` or None before the first decision. `command` is
    the latest user command; the Engine acknowledges it by storing its id as the status'
    `lastCommandId`. `holder`/`renewed` are the lease (ConfigMap backend only).
    `resource_version` guards every write. `source` tells the backend, `generation` is
    the Canary's metadata.generation when read (None for ConfigMaps); `spec_hash` the
    fingerprint of the Canary's spec when read, and `status_extra` the Canary's status
    keys around the rollout status (conditions, observedGeneration); both Canary only.
    """

    name: str
    namespace: str
    spec: dict[str, Any]
    status: dict[str, Any] | None = None
    command: dict[str, Any] | None = None
    holder: str | None = None
    renewed: float = 0.0
    resource_version: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    source: Source = "configmap"
    generation: int | None = None
    spec_hash: str | None = None
    status_extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class RolloutStore(Protocol):
    """Where one rollout's record lives: what the Engine and the CLI need, nothing more.

    Every write is guarded by `Record.resource_version` and raises ConflictError when
    another actor wrote in between; the Engine persists each decision with `update`
    before acting on it.
    """

    #: "configmap" or "canary": shown by `canaryctl get`.
    source: Source

    def describe(self, name: str) -> str:
        """The object holding the record, for messages (e.g. `configmap/canaryctl-app`)."""
        ...

    def get(self, name: str, namespace: str) -> Record | None:
        """The stored record, or None when there is none."""
        ...

    def list(self, namespace: str | None) -> list[Record]:
        """Every record in a namespace (None: all namespaces)."""
        ...

    def create(self, record: Record) -> Record:
        """Store the record of a new rollout; ConflictError if one exists."""
        ...

    def update(self, record: Record) -> Record:
        """Write status (and lease) back, only if nobody wrote since it was read."""
        ...

    def send_command(self, name: str, namespace: str, action: str, full: bool = False) -> Record:
        """Leave a user command (promote, abort, pause, resume) for the driving process.

        Raises RolloutNotFound when there is no record of that name.
        """
        ...

    def lease_free(self, record: Record, me: str, now: float) -> bool:
        """Whether process `me` may drive this rollout now."""
        ...


def identity() -> str:
    """This process, as a lease holder: host and pid (so a dead holder can be recognised)."""
    return f"{socket.gethostname()}/{os.getpid()}"


def holder_is_dead(holder: str | None) -> bool:
    """True when the holder ran on this host and its pid no longer exists."""
    if not holder or "/" not in holder:
        return True
    host, _, pid = holder.rpartition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine: only the lease expiry can tell
    return not os.path.exists(f"/proc/{pid}")


class ConfigMapStore:
    """The zero-install backend: one ConfigMap `canaryctl-<name>` per rollout.

    Reads and writes Records; all writes use optimistic concurrency. The lease lives in
    the ConfigMap's annotations and is renewed by every `update` of the driving process.
    """

    source: Source = "configmap"

    def __init__(self, client: Client) -> None:
        self.client = client

    def describe(self, name: str) -> str:
        """`configmap/canaryctl-<name>`."""
        return f"configmap/{PREFIX}{name}"

    def lease_free(self, record: Record, me: str, now: float) -> bool:
        """Free, held by `me`, expired, or held by a dead process on this host."""
        return lease_free(record, me, now)

    def get(self, name: str, namespace: str) -> Record | None:
        """The stored record, or None when no rollout of that name exists."""
        try:
            cm = self.client.get(ConfigMap, PREFIX + name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise ClusterError(f"reading configmap/{PREFIX}{name}: {exc.status.message}") from exc
        return _to_record(name, namespace, cm)

    def list(self, namespace: str | None) -> list[Record]:
        """Every stored rollout in a namespace (or all namespaces)."""
        cms = self.client.list(ConfigMap, namespace=namespace or "*", labels=LABELS)
        return [
            _to_record(cm.metadata.name[len(PREFIX) :], cm.metadata.namespace, cm)
            for cm in cms
            if cm.metadata.name.startswith(PREFIX) and "spec" in (cm.data or {})
        ]

    def create(self, record: Record) -> Record:
        """Store a new rollout; ConflictError if one of that name already exists."""
        cm = ConfigMap(
            metadata=ObjectMeta(
                name=PREFIX + record.name,
                namespace=record.namespace,
                labels={**LABELS, "canaryctl.dev/canary": record.name},
                annotations=_annotations(record),
            ),
            data=_data(record),
        )
        try:
            created = self.client.create(cm, namespace=record.namespace)
        except ApiError as exc:
            if exc.status.code == 409:
                raise ConflictError(f"rollout {record.name} already exists") from exc
            raise ClusterError(
                f"creating configmap/{PREFIX}{record.name}: {exc.status.message}"
            ) from exc
        return _to_record(record.name, record.namespace, created)

    def update(self, record: Record) -> Record:
        """Write spec, status, command and lease back, only if nobody wrote in between."""
        cm = ConfigMap(
            metadata=ObjectMeta(
                name=PREFIX + record.name,
                namespace=record.namespace,
                labels={**LABELS, "canaryctl.dev/canary": record.name},
                annotations=_annotations(record),
                resourceVersion=record.resource_version,
            ),
            data=_data(record),
        )
        try:
            stored = self.client.replace(cm, namespace=record.namespace)
        except ApiError as exc:
            if exc.status.code == 409:
                raise ConflictError(
                    f"configmap/{PREFIX}{record.name} was changed by another actor"
                ) from exc
            if exc.status.code == 404:
                raise ConflictError(f"configmap/{PREFIX}{record.name} was deleted") from exc
            raise ClusterError(
                f"updating configmap/{PREFIX}{record.name}: {exc.status.message}"
            ) from exc
        return _to_record(record.name, record.namespace, stored)

    def send_command(self, name: str, namespace: str, action: str, full: bool = False) -> Record:
        """Leave a command for whoever drives the rollout (retried on conflicts)."""
        if action not in COMMANDS:
            raise ValueError(f"unknown command {action!r}")
        command = {"action": action, "full": full, "id": uuid.uuid4().hex[:12]}
        for _ in range(10):
            record = self.get(name, namespace)
            if record is None:
                raise RolloutNotFound(f"no rollout named {name} in namespace {namespace}")
            record.command = command
            try:
                return self.update(record)
            except ConflictError:
                continue
        raise ConflictError(f"could not store command {command} for {name}: too many conflicts")

    def delete(self, name: str, namespace: str) -> None:
        """Forget a rollout's record (the workloads are untouched)."""
        try:
            self.client.delete(ConfigMap, PREFIX + name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise ClusterError(
                    f"deleting configmap/{PREFIX}{name}: {exc.status.message}"
                ) from exc


#: The original name of the ConfigMap backend.
Store = ConfigMapStore


def lease_free(record: Record, me: str, now: float) -> bool:
    """Whether `me` may take or keep the lease."""
    if record.holder in (None, "", me):
        return True
    if now - record.renewed > LEASE_SECONDS:
        return True
    return holder_is_dead(record.holder)


def _annotations(record: Record) -> dict[str, str]:
    ann = dict(record.annotations)
    for key in (COMMAND, HOLDER, RENEWED):
        ann.pop(key, None)
    if record.command:
        ann[COMMAND] = json.dumps(record.command, sort_keys=True)
    if record.holder:
        ann[HOLDER] = record.holder
        ann[RENEWED] = f"{record.renewed:.3f}"
    return ann


def _data(record: Record) -> dict[str, str]:
    data = {"spec": json.dumps(record.spec, sort_keys=True)}
    if record.status is not None:
        data["status"] = json.dumps(record.status, sort_keys=True)
    return data


def _to_record(name: str, namespace: str, cm: ConfigMap) -> Record:
    data = cm.data or {}
    ann = dict(cm.metadata.annotations or {})
    where = f"configmap/{PREFIX}{name}"
    try:
        spec = json.loads(data.get("spec", "{}"))
        status = json.loads(data["status"]) if "status" in data else None
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"{where} holds invalid JSON ({exc}); restore it, or delete it to start the "
            "rollout anew (the Deployments stay as they are)"
        ) from exc
    if not isinstance(spec, dict):
        raise RecordError(f"{where}: data.spec is {type(spec).__name__}, not a JSON object")
    # An unreadable command is kept as its text: the Engine turns it into a safe pause.
    try:
        command = json.loads(ann[COMMAND]) if ann.get(COMMAND) else None
    except json.JSONDecodeError:
        command = ann[COMMAND]
    try:
        renewed = float(ann.get(RENEWED, "0") or 0)
    except ValueError:
        renewed = 0.0  # an unreadable lease counts as expired long ago
    return Record(
        name=name,
        namespace=namespace,
        spec=spec,
        status=status,
        command=command,
        holder=ann.get(HOLDER),
        renewed=renewed if renewed == renewed else 0.0,  # NaN: expired as well
        resource_version=cm.metadata.resourceVersion,
        annotations={k: v for k, v in ann.items() if k not in (COMMAND, HOLDER, RENEWED)},
    )

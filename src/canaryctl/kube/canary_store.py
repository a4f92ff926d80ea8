"""The operator's rollout store: a `Canary` resource holds one rollout's whole record.

- spec: the Canary's `.spec` (owned by the user; this store never writes it);
- status: the `.status` subresource holds the rollout status (`CanaryStatus` fields,
  camelCase) plus what `kubectl` users expect of a resource: `observedGeneration`,
  `conditions` (Progressing, Promoted, Ready in the metav1.Condition shape) and two
  display fields for the printer columns, `step` ("2/5") and `verdict`. Written with
  PUT on `/status` carrying the resourceVersion it was computed from, so a concurrent
  write fails with ConflictError (the Engine then decides again);
- commands: the same `canaryctl.dev/command` annotation as the ConfigMap backend, on the
  Canary; the Engine acknowledges a command by storing its id as `status.lastCommandId`.

Lease: none here, on purpose. In operator mode exactly one operator process acts at a
time (leader election on a coordination.k8s.io Lease), so `lease_free` always says yes
and `update` ignores `Record.holder`. This is safe only behind that leader election:
every status write is still guarded by resourceVersion, so even two writers could not
overwrite each other's decisions, but two actors could both act on one decision. Do not
use this store from a process that is not the elected leader (the CLI only reads it and
writes command annotations).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from canaryctl.core.conditions import conditions_for, step_text, verdict_text
from canaryctl.core.models import CanarySpec, CanaryStatus, parse_spec
from canaryctl.errors import ClusterError, ConflictError, RolloutNotFound, SpecError
from canaryctl.kube.canary import API_VERSION, KIND, Canary, as_mapping, flat_spec
from canaryctl.kube.store import COMMAND, COMMANDS, Record, Source

_LIST_ATTEMPTS = 10
#: Status keys this store adds around the rollout status; not part of `CanaryStatus`.
RESOURCE_STATUS_KEYS = ("observedGeneration", "conditions", "step", "verdict")


class CanaryStore:
    """Rollout records kept in Canary resources (operator mode); see the module docstring."""

    source: Source = "canary"

    def __init__(self, client: Client, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock

    def describe(self, name: str) -> str:
        """`canary/<name>`."""
        return f"canary/{name}"

    # --- reading ---------------------------------------------------------------

    def get(self, name: str, namespace: str) -> Record | None:
        """The Canary's record, or None when there is no Canary of that name."""
        try:
            obj = self.client.get(Canary, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise ClusterError(f"reading canary/{name}: {exc.status.message}") from exc
        return record_of(obj)

    def list(self, namespace: str | None) -> list[Record]:
        """Every Canary in a namespace (None: all); empty when the CRD is not installed."""
        try:
            return [record_of(obj) for obj in self.client.list(Canary, namespace=namespace or "*")]
        except ApiError as exc:
            if exc.status.code == 404:
                return []  # the CRD is not installed: there are no Canary resources
            raise ClusterError(f"listing canaries: {exc.status.message}") from exc

    # --- writing ---------------------------------------------------------------

    def create(self, record: Record) -> Record:
        """Canary resources are created by their users; this only reports the missing one."""
        raise ClusterError(
            f"no Canary named {record.name} in namespace {record.namespace}: "
            "create it with kubectl apply (the operator never creates Canary resources)"
        )

    def update(self, record: Record) -> Record:
        """Write the record's status to the status subresource, guarded by resourceVersion.

        The spec, holder and annotations of `record` are not written (the user owns the
        spec; operator mode has no per-rollout lease). observedGeneration moves to the
        generation read with the record once the status was decided for that spec.
        """
        status = CanaryStatus.from_dict(record.status) if record.status is not None else None
        previous = record.status_extra
        observed = previous.get("observedGeneration")
        if status is not None and status.observed_spec_hash == record.spec_hash:
            observed = record.generation
        body = resource_status(
            status,
            generation=observed,
            now=self.clock(),
            steps=_step_count(record.spec),
            previous=previous.get("conditions") or (),
        )
        obj = Canary.Status(
            apiVersion=API_VERSION,
            kind=KIND,
            metadata={
                "name": record.name,
                "namespace": record.namespace,
                "resourceVersion": record.resource_version,
            },
            status=body,
        )
        try:
            stored = self.client.replace(obj, record.name, namespace=record.namespace)
        except ApiError as exc:
            if exc.status.code == 409:
                raise ConflictError(f"canary/{record.name} was changed by another actor") from exc
            if exc.status.code == 404:
                raise ConflictError(f"canary/{record.name} was deleted") from exc
            raise ClusterError(
                f"writing the status of canary/{record.name}: {exc.status.message}"
            ) from exc
        return record_of(stored)

    def write_conditions(
        self,
        name: str,
        namespace: str,
        conditions: Sequence[Mapping[str, Any]],
        observed_generation: int | None = None,
        resource_version: str | None = None,
    ) -> None:
        """Set `status.conditions` (and observedGeneration) without touching the rest.

        For the operator's own verdicts on a Canary that has no rollout to decide, such as
        an invalid spec (`core.conditions.invalid_spec_conditions`). With
        `resource_version` the write fails with ConflictError if the Canary changed.
        """
        patch: dict[str, Any] = {"status": {"conditions": [dict(c) for c in conditions]}}
        if observed_generation is not None:
            patch["status"]["observedGeneration"] = observed_generation
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        try:
            self.client.patch(
                Canary.Status, name, patch, namespace=namespace, patch_type=PatchType.MERGE
            )
        except ApiError as exc:
            if exc.status.code == 409:
                raise ConflictError(f"canary/{name} was changed by another actor") from exc
            raise ClusterError(
                f"writing the conditions of canary/{name}: {exc.status.message}"
            ) from exc

    def write_routes(
        self,
        name: str,
        namespace: str,
        routes: Mapping[str, Any] | None,
        previous: Mapping[str, Any] | None,
        resource_version: str,
    ) -> Any:
        """Set `status.routes` (None: remove it) without touching the rest, guarded by
        `resource_version` (ConflictError if the Canary changed since). Returns the value
        stored (an API server with a CRD from before the field prunes it: None).

        A merge patch merges mappings, so the keys of `previous` (the stored value) that
        `routes` no longer has are removed explicitly (an nginx router's `ingress` must
        not stay beside the `httproute` that replaced it).
        """
        value: dict[str, Any] | None = None
        if routes is not None:
            value = {k: None for k in (previous or {}) if k not in routes}
            value.update(routes)
        patch = {
            "metadata": {"resourceVersion": resource_version},
            "status": {"routes": value},
        }
        try:
            stored = self.client.patch(
                Canary.Status, name, patch, namespace=namespace, patch_type=PatchType.MERGE
            )
        except ApiError as exc:
            if exc.status.code in (404, 409):
                raise ConflictError(f"canary/{name} was changed by another actor") from exc
            raise ClusterError(
                f"writing the routes of canary/{name}: {exc.status.message}"
            ) from exc
        return (as_mapping(stored).get("status") or {}).get("routes")

    def send_command(self, name: str, namespace: str, action: str, full: bool = False) -> Record:
        """Set the command annotation on the Canary (a merge patch: the latest one wins)."""
        if action not in COMMANDS:
            raise ValueError(f"unknown command {action!r}")
        command = {"action": action, "full": full, "id": uuid.uuid4().hex[:12]}
        patch = {"metadata": {"annotations": {COMMAND: json.dumps(command, sort_keys=True)}}}
        try:
            stored = self.client.patch(
                Canary, name, patch, namespace=namespace, patch_type=PatchType.MERGE
            )
        except ApiError as exc:
            if exc.status.code == 404:
                raise RolloutNotFound(f"no rollout named {name} in namespace {namespace}") from exc
            raise ClusterError(f"sending {action} to canary/{name}: {exc.status.message}") from exc
        return record_of(stored)

    def lease_free(self, record: Record, me: str, now: float) -> bool:
        """Always True: the operator's leader election is the lease (module docstring)."""
        return True


def owner_of(client: Client, spec: CanarySpec) -> str | None:
    """Why a Canary resource owns this rollout, or None: same name or same Deployments.

    For `canaryctl rollout`, which must not drive what the operator drives. A cluster
    without the CRD (or a user not allowed to list Canaries) has no owner to report.
    """
    for attempt in range(_LIST_ATTEMPTS):
        try:
            canaries = list(client.list(Canary, namespace=spec.namespace))
            break
        except ApiError as exc:
            if exc.status.code in (403, 404):
                return None
            # A CRD that was just installed answers 503 while its storage initialises.
            if (exc.status.code or 0) < 500 or attempt == _LIST_ATTEMPTS - 1:
                raise ClusterError(
                    f"listing canaries in {spec.namespace}: {exc.status.message}"
                ) from exc
            time.sleep(0.5)
    mine = set(spec.pair)
    for obj in canaries:
        data = as_mapping(obj)
        name = (data.get("metadata") or {}).get("name", "")
        if name == spec.name:
            return f"canary/{name} in namespace {spec.namespace} has the same name"
        try:
            theirs = set(parse_spec(flat_spec(data)).pair)
        except SpecError:
            raw = data.get("spec") or {}
            target = (raw.get("targetRef") or {}).get("name")
            theirs = {raw.get("stable"), raw.get("canary"), target, f"{target}-primary"}
        shared = sorted(mine & theirs - {None})
        if shared:
            return f"canary/{name} in namespace {spec.namespace} drives deployment/{shared[0]}"
    return None


# --- mapping between the resource and a Record -----------------------------------------


def record_of(obj: Any) -> Record:
    """A Record of a Canary object (lightkube resource or mapping).

    `spec` is the validated spec in its canonical camelCase form when it is valid (so it
    compares equal to what an Engine built from it holds), else the user's mapping.
    """
    data = as_mapping(obj)
    meta = data.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    try:
        spec_model: CanarySpec | None = parse_spec(flat_spec(data))
    except SpecError:
        spec_model = None
    spec = (
        spec_model.model_dump(mode="json", by_alias=True)
        if spec_model is not None
        else dict(data.get("spec") or {})
    )
    status_data = dict(data.get("status") or {})
    around = {k: status_data.pop(k) for k in RESOURCE_STATUS_KEYS if k in status_data}
    try:
        command = json.loads(annotations[COMMAND]) if annotations.get(COMMAND) else None
    except json.JSONDecodeError as exc:
        raise ClusterError(f"canary/{meta.get('name')}: invalid {COMMAND} annotation") from exc
    return Record(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        spec=spec,
        # A status with no phase holds only conditions (e.g. an invalid spec): no rollout.
        status=status_data if status_data.get("phase") else None,
        command=command,
        resource_version=meta.get("resourceVersion"),
        annotations={k: v for k, v in annotations.items() if k != COMMAND},
        source="canary",
        generation=meta.get("generation"),
        spec_hash=spec_model.resolved().fingerprint if spec_model is not None else None,
        status_extra=around,
    )


def resource_status(
    status: CanaryStatus | None,
    *,
    generation: int | None,
    now: float,
    steps: int,
    previous: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The Canary's `.status` for a rollout status: its fields, conditions, display fields."""
    # Unset fields are left out rather than null (the API server refuses null in an enum);
    # CanaryStatus reads them back as their defaults.
    written = status.to_dict() if status is not None else {}
    body: dict[str, Any] = {k: v for k, v in written.items() if v is not None}
    body["conditions"] = conditions_for(status, generation, now, previous)
    if generation is not None:
        body["observedGeneration"] = generation
    body["step"] = step_text(status, steps)
    body["verdict"] = verdict_text(status)
    return body


def _step_count(spec: Mapping[str, Any]) -> int:
    """Steps of the spec, counted as the live view and `canaryctl get` count them."""
    steps = spec.get("steps")
    return len(steps) if isinstance(steps, list) else 0

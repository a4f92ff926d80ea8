"""Managed mode's ConfigMaps and Secrets (Flagger's behaviour).

Each one the target's template reads is copied to `<name>-primary` (labelled
`canaryctl.dev/primary-of: <target>`, owned by the Canary) and the primary's template
reads the copies. A config change therefore reaches only the canary (the target reads
the original) until promotion, which copies the new data over before the template; the
copies go with the Canary. The data itself is never logged.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ConfigMap, Secret

from canaryctl.errors import ClusterError
from canaryctl.operator.owned import OWNED, PRIMARY_OF, SUFFIX, Owner, owner_ref, release


def _ref_slots(template: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Every place a pod template names a ConfigMap or Secret: (kind, holder, field), the
    name being `holder[field]` (so a copy can be rewritten in place)."""
    spec = template.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    for c in containers:
        for env in c.get("env") or []:
            source = env.get("valueFrom") or {}
            yield "ConfigMap", source.get("configMapKeyRef") or {}, "name"
            yield "Secret", source.get("secretKeyRef") or {}, "name"
        for env_from in c.get("envFrom") or []:
            yield "ConfigMap", env_from.get("configMapRef") or {}, "name"
            yield "Secret", env_from.get("secretRef") or {}, "name"
    for volume in spec.get("volumes") or []:
        yield "ConfigMap", volume.get("configMap") or {}, "name"
        yield "Secret", volume.get("secret") or {}, "secretName"
        for source in (volume.get("projected") or {}).get("sources") or []:
            yield "ConfigMap", source.get("configMap") or {}, "name"
            yield "Secret", source.get("secret") or {}, "name"


def config_refs(template: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The ConfigMaps and Secrets a pod template reads: {("ConfigMap"|"Secret", name)}."""
    return {(kind, holder[field]) for kind, holder, field in _ref_slots(template)
            if holder.get(field)}  # fmt: skip


def config_copy_name(name: str) -> str:
    """The primary's copy of a ConfigMap or Secret the target reads (Flagger's naming)."""
    return f"{name}{SUFFIX}"


def with_config_copies(template: Mapping[str, Any]) -> dict[str, Any]:
    """The template reading the primary's copies (`<name>-primary`) instead of the target's
    ConfigMaps and Secrets, so a config change reaches only the canary until promotion."""
    out = copy.deepcopy(dict(template))
    for _kind, holder, field in _ref_slots(out):
        if holder.get(field):
            holder[field] = config_copy_name(holder[field])
    return out


def config_copy(
    kind: str, source: Mapping[str, Any], target: str, owner: Owner | None
) -> dict[str, Any]:
    """The primary's copy of a ConfigMap or Secret (a dict for server-side apply): the
    same data under `<name>-primary`, owned by the Canary. The data is never logged."""
    meta = source["metadata"]
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": config_copy_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {**OWNED, PRIMARY_OF: target},
        },
    }
    for key in ("data", "binaryData", "type"):
        if source.get(key):
            body[key] = source[key]
    if owner is not None:
        body["metadata"]["ownerReferences"] = [owner_ref(owner)]
    return body


def data_checksum(obj: Mapping[str, Any]) -> str:
    """Checksum of a ConfigMap's or Secret's data (the data itself is never kept or logged)."""
    data = {k: obj.get(k) for k in ("data", "binaryData", "stringData") if obj.get(k)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


_CONFIG_KINDS = {"ConfigMap": ConfigMap, "Secret": Secret}


def copy_configs(
    client: Client, namespace: str, template: Mapping[str, Any], target: str,
    owner: Owner | None,
) -> list[str]:  # fmt: skip
    """Write the primary's copies of the configs `template` reads, with their current data
    (server-side apply: idempotent). A config that does not exist is skipped: the primary
    then misses it as the target does. Returns the copies written."""
    written = []
    for kind, name in sorted(config_refs(template)):
        res = _CONFIG_KINDS[kind]
        try:
            source = client.get(res, name, namespace=namespace).to_dict()
        except ApiError as exc:
            if exc.status.code == 404:
                continue
            raise ClusterError(f"reading {kind.lower()}/{name}: {exc.status.message}") from exc
        body = config_copy(kind, source, target, owner)
        try:
            client.apply(res.from_dict(body), namespace=namespace, force=True)
        except ApiError as exc:
            raise ClusterError(
                f"copying {kind.lower()}/{name} to {body['metadata']['name']}: {exc.status.message}"
            ) from exc
        written.append(f"{kind.lower()}/{body['metadata']['name']}")
    return written


def delete_config_copies(client: Client, namespace: str, target: str) -> None:
    """Delete every config copy canaryctl made for the primary of `target`."""
    labels = {**OWNED, PRIMARY_OF: target}
    for kind, res in _CONFIG_KINDS.items():
        try:
            for obj in client.list(res, namespace=namespace, labels=labels):
                client.delete(res, obj.metadata.name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise ClusterError(f"deleting {kind} copies: {exc.status.message}") from exc


def release_config_copies(client: Client, namespace: str, target: str, owner_uid: str) -> None:
    """Keep the config copies of the primary of `target` when the Canary goes (a primary
    left serving reads them): take the Canary's ownerReference off each."""
    labels = {**OWNED, PRIMARY_OF: target}
    for kind, res in _CONFIG_KINDS.items():
        try:
            copies = [obj.to_dict() for obj in client.list(res, namespace=namespace, labels=labels)]
        except ApiError as exc:
            raise ClusterError(f"listing {kind} copies: {exc.status.message}") from exc
        for obj in copies:
            release(client, res, obj, owner_uid)

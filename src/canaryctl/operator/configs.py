"""Managed mode's ConfigMaps and Secrets (Flagger's behaviour).

Each one the target's template reads is copied, for each version the primary runs, to
`<name>-primary-<version>` (the version: the template hash being promoted; labelled
`canaryctl.dev/primary-of: <target>`, immutable, owned by the Canary), and the primary's
template reads those copies. A config change therefore reaches only the canary (the
target reads the original) until promotion, which writes new copies and, in the same
write as the template, points the primary at them: a copy is never changed in place, so
the primary's running pods (a mounted ConfigMap is refreshed in place by the kubelet)
keep the data they were started with until the promoted template replaces them, and a
rolled-back change never touches them. Copies the primary no longer reads are pruned
once it runs its new version; all go with the Canary. A same-named object canaryctl did
not make for this target is never overwritten. The data itself is never logged.
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

from canaryctl.errors import ClusterError, ConflictError, NameTaken
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


#: Characters of the version (template hash) in a copy's name.
VERSION_CHARS = 10


def config_copy_name(name: str, version: str) -> str:
    """The primary's copy of a ConfigMap or Secret the target reads, for the primary's
    version `version` (the template hash it runs): `<name>-primary-<version>`. Named by
    the template hash, not by the data, so the name tells nothing about a Secret's data
    that the primary's annotations do not already show."""
    return f"{name}{SUFFIX}-{version[:VERSION_CHARS]}"


def with_config_copies(template: Mapping[str, Any], version: str) -> dict[str, Any]:
    """The template reading the primary's copies for `version` instead of the target's
    ConfigMaps and Secrets, so a config change reaches only the canary until promotion."""
    out = copy.deepcopy(dict(template))
    for _kind, holder, field in _ref_slots(out):
        if holder.get(field):
            holder[field] = config_copy_name(holder[field], version)
    return out


def config_copy(
    kind: str, source: Mapping[str, Any], target: str, owner: Owner | None, version: str
) -> dict[str, Any]:
    """The primary's copy of a ConfigMap or Secret for one version (a dict for server-side
    apply): the same data, immutable, marked as canaryctl's for `target` and owned by the
    Canary. The data is never logged."""
    meta = source["metadata"]
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": config_copy_name(meta["name"], version),
            "namespace": meta["namespace"],
            "labels": {**OWNED, PRIMARY_OF: target},
            "annotations": {PRIMARY_OF: target},
        },
        # Never changed in place: a new version is a new copy (see the module docstring).
        "immutable": True,
    }
    for key in ("data", "binaryData", "type"):
        if source.get(key):
            body[key] = source[key]
    if owner is not None:
        body["metadata"]["ownerReferences"] = [owner_ref(owner)]
    return body


def is_our_copy(obj: Mapping[str, Any], target: str) -> bool:
    """Whether canaryctl made `obj` as a config copy for the primary of `target`."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in OWNED.items()) and labels.get(PRIMARY_OF) == target


def data_checksum(obj: Mapping[str, Any]) -> str:
    """Checksum of a ConfigMap's or Secret's data (the data itself is never kept or logged)."""
    data = {k: obj.get(k) for k in ("data", "binaryData", "stringData") if obj.get(k)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


_CONFIG_KINDS = {"ConfigMap": ConfigMap, "Secret": Secret}


def _read(client: Client, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return client.get(_CONFIG_KINDS[kind], name, namespace=namespace).to_dict()
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise ClusterError(f"reading {kind.lower()}/{name}: {exc.status.message}") from exc


def copy_configs(
    client: Client, namespace: str, template: Mapping[str, Any], target: str,
    owner: Owner | None, version: str, checksums: Mapping[tuple[str, str], str],
    canary: str,
) -> list[str]:  # fmt: skip
    """Create the primary's copies for `version` of the configs `template` reads.

    `checksums` are the data checksums the version was decided on (what was analysed): a
    config whose data differs now is a newer change, so nothing is copied (ConflictError:
    decide again). A copy that exists already is left as it is (immutable, same version);
    a same-named object that is not canaryctl's copy for `target` is refused (NameTaken
    naming it and the Canary `canary`), never overwritten. A config that does not exist
    is skipped: the primary then misses it as the target does. Returns the copies created.
    """
    written = []
    for kind, name in sorted(config_refs(template)):
        source = _read(client, kind, name, namespace)
        if source is None:
            continue
        if data_checksum(source) != checksums.get((kind, name)):
            raise ConflictError(f"{kind.lower()}/{name} changed after its version was decided")
        body = config_copy(kind, source, target, owner, version)
        copy_name = body["metadata"]["name"]
        existing = _read(client, kind, copy_name, namespace)
        if existing is not None:
            if not is_our_copy(existing, target):
                raise NameTaken(
                    "targetRef",
                    f"{kind.lower()}/{copy_name} exists in {namespace} and was not made by "
                    f"canaryctl for deployment/{target}: canary {namespace}/{canary} needs "
                    f"that name for the primary's copy of {kind.lower()}/{name} and never "
                    "overwrites someone else's object; rename or delete it",
                )
            continue
        try:
            client.apply(_CONFIG_KINDS[kind].from_dict(body), namespace=namespace)
        except ApiError as exc:
            raise ClusterError(
                f"copying {kind.lower()}/{name} to {copy_name}: {exc.status.message}"
            ) from exc
        written.append(f"{kind.lower()}/{copy_name}")
    return written


def prune_config_copies(
    client: Client, namespace: str, target: str, template: Mapping[str, Any]
) -> list[str]:
    """Delete the copies for the primary of `target` that its `template` (already
    rewritten to read copies) no longer reads: earlier versions, once no pod runs them.
    Returns the copies deleted."""
    keep = config_refs(template)
    labels = {**OWNED, PRIMARY_OF: target}
    deleted = []
    for kind, res in _CONFIG_KINDS.items():
        try:
            names = [o.metadata.name for o in client.list(res, namespace=namespace, labels=labels)]
            for name in names:
                if (kind, name) not in keep:
                    client.delete(res, name, namespace=namespace)
                    deleted.append(f"{kind.lower()}/{name}")
        except ApiError as exc:
            if exc.status.code != 404:
                raise ClusterError(f"pruning {kind} copies: {exc.status.message}") from exc
    return deleted


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

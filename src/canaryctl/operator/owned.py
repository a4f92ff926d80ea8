"""What marks an object canaryctl created for a managed-mode Canary, and who owns it.

Everything the operator creates for a target `app` (the primary, its Services, the config
copies) carries the label `app.kubernetes.io/managed-by: canaryctl` and the annotation or
label `canaryctl.dev/primary-of: app`, and an ownerReference to the Canary, so it goes
with the Canary and a same-named object someone else made is never taken over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from canaryctl.kube.client import write_error

SUFFIX = "-primary"
PRIMARY_OF = "canaryctl.dev/primary-of"
OWNED = {"app.kubernetes.io/managed-by": "canaryctl"}


@dataclass(frozen=True)
class Owner:
    """The Canary that owns the primary (ownerReference: the primary goes with it)."""

    api_version: str
    kind: str
    name: str
    uid: str


def owner_ref(owner: Owner) -> dict[str, Any]:
    """The ownerReference to the Canary (the object goes with it)."""
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


def is_ours(obj: Mapping[str, Any], target: str) -> bool:
    """Whether canaryctl made `obj` for the primary of `target`."""
    meta = obj.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return all(labels.get(k) == v for k, v in OWNED.items()) and (
        annotations.get(PRIMARY_OF) == target
    )


def json_pointer(*parts: str) -> str:
    """A JSON Pointer (RFC 6901) to a field, for JSON patches."""
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def release(
    client: Client, resource: Any, obj: Mapping[str, Any], owner_uid: str,
    annotations: Mapping[str, str] | None = None,
) -> bool:  # fmt: skip
    """Take the Canary's ownerReference off `obj` (so the garbage collector keeps it when
    the Canary goes) and set `annotations`, in one patch guarded by its resourceVersion.
    Returns whether something was written; gone already is fine."""
    meta = obj["metadata"]
    refs = list(meta.get("ownerReferences") or [])
    kept = [ref for ref in refs if ref.get("uid") != owner_uid]
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}
    ]
    if len(kept) != len(refs):
        ops.append({"op": "replace", "path": "/metadata/ownerReferences", "value": kept}
                   if kept else {"op": "remove", "path": "/metadata/ownerReferences"})  # fmt: skip
    current = meta.get("annotations") or {}
    wanted = {k: v for k, v in (annotations or {}).items() if current.get(k) != v}
    if wanted and meta.get("annotations") is None:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": dict(wanted)})
    else:
        ops += [{"op": "add", "path": json_pointer("metadata", "annotations", k), "value": v}
                for k, v in wanted.items()]  # fmt: skip
    if len(ops) == 1:
        return False
    name = meta["name"]
    try:
        client.patch(resource, name, ops, namespace=meta["namespace"],
                     patch_type=PatchType.JSON)  # fmt: skip
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise write_error(
            exc,
            f"{resource.__name__.lower()}/{name} in {meta['namespace']} "
            "(releasing it from its Canary)",
        ) from exc
    return True

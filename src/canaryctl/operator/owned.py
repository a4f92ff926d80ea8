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

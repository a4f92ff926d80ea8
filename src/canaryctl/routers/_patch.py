"""Shared plumbing of the weight routers: read objects as JSON, patch exact paths under an
optimistic lock (retrying on conflict), and mark what canaryctl creates.

Every change to a user's object is a JSON patch of the paths canaryctl owns, computed from
the object as just read and sent with that read's resourceVersion. If anyone else wrote in
between, the API server answers 409; the object is read again and the patch recomputed,
so the other writer's change survives and ours still lands.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from collections.abc import Callable
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from canaryctl.errors import ClusterError, ConflictError, RouterError
from canaryctl.kube.workloads import api_message
from canaryctl.routers.base import Change

#: Labels on every object canaryctl creates; the second names the canary that made it.
MANAGED_BY = "app.kubernetes.io/managed-by"
CANARY_LABEL = "canaryctl.dev/canary"
#: How often a patch is recomputed after losing a race with another writer.
ATTEMPTS = 5

VirtualService = create_namespaced_resource(
    "networking.istio.io", "v1", "VirtualService", "virtualservices"
)
DestinationRule = create_namespaced_resource(
    "networking.istio.io", "v1", "DestinationRule", "destinationrules"
)
HTTPRoute = create_namespaced_resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
ReferenceGrant = create_namespaced_resource(
    "gateway.networking.k8s.io", "v1beta1", "ReferenceGrant", "referencegrants"
)

Obj = dict[str, Any]
#: Computes (JSON patch operations, changes they make) from the object as read.
Planner = Callable[[Obj], tuple[list[Obj], list[Change]]]


def managed_labels(canary: str) -> dict[str, str]:
    """Labels of an object canaryctl created for the canary named `canary`."""
    return {MANAGED_BY: "canaryctl", CANARY_LABEL: canary}


def is_managed(obj: Obj, canary: str) -> bool:
    """True when canaryctl created `obj` for this canary (so cleanup may delete it)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(MANAGED_BY) == "canaryctl" and labels.get(CANARY_LABEL) == canary


def cookie_regex(cookie: str) -> str:
    """Regex on the Cookie header matching `<cookie>=always` (NGINX's canary-by-cookie)."""
    return f"^(.*?;)?({re.escape(cookie)}=always)(;.*)?$"


def pointer(*parts: str | int) -> str:
    """A JSON pointer (RFC 6901) to the given path, escaping '~' and '/' in keys."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def read(client: Client, res: Any, name: str, namespace: str) -> Obj | None:
    """The object as plain JSON, or None when it does not exist."""
    try:
        obj = client.get(res, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise ClusterError(f"reading {_ref(res, name)} in {namespace}: {api_message(exc)}") from exc
    return obj.to_dict()


def patch(
    client: Client, res: Any, name: str, namespace: str, plan: Planner, *, dry_run: bool = False
) -> list[Change]:
    """Apply the patch `plan` computes from the current object; [] when nothing differs.

    The object must exist (RouterError otherwise). Conflicts are retried with a fresh read
    up to ATTEMPTS times, then raise ConflictError (the engine retries on its next tick).
    """
    for _ in range(ATTEMPTS):
        obj = read(client, res, name, namespace)
        if obj is None:
            raise RouterError(f"{_ref(res, name)} disappeared from {namespace}")
        ops, changes = plan(obj)
        if ops and stored_unchanged(obj, ops):
            # The server would store what it has (e.g. 20.0 written, 20 kept): no write, as
            # a write at rest bumps the generation and pushes config to every proxy.
            return []
        if not ops or dry_run:
            return changes
        # The lock: the write only succeeds against exactly the version the ops came from.
        lock = {"op": "replace", "path": "/metadata/resourceVersion"}
        lock["value"] = obj["metadata"]["resourceVersion"]
        try:
            client.patch(res, name, [lock, *ops], namespace=namespace, patch_type=PatchType.JSON)
        except ApiError as exc:
            if exc.status.code == 409:
                continue
            raise RouterError(
                f"patching {_ref(res, name)} in {namespace}: {api_message(exc)}"
            ) from exc
        return changes
    raise ConflictError(
        f"{_ref(res, name)} in {namespace} kept changing; giving up after {ATTEMPTS} attempts"
    )


def delete(
    client: Client, res: Any, name: str, namespace: str, why: str, *, dry_run: bool = False
) -> list[Change]:
    """Delete an object canaryctl created; [] when it is already gone."""
    if dry_run:
        return [Change("delete", _ref(res, name), why)]
    try:
        client.delete(res, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return []
        raise ClusterError(f"deleting {_ref(res, name)}: {api_message(exc)}") from exc
    return [Change("delete", _ref(res, name), why)]


def create(client: Client, obj: Any, why: str, *, dry_run: bool = False) -> list[Change]:
    """Create an object (a lightkube resource); a concurrent creation counts as done."""
    ref = _ref(type(obj), obj.metadata.name)
    if dry_run:
        return [Change("create", ref, why)]
    try:
        client.create(obj)
    except ApiError as exc:
        if exc.status.code == 409:
            return []
        raise RouterError(
            f"creating {ref} in {obj.metadata.namespace}: {api_message(exc)}"
        ) from exc
    return [Change("create", ref, why)]


def _ref(res: Any, name: str) -> str:
    return f"{res.__name__.lower()}/{name}"


def list_ops(path: tuple[str | int, ...], old: list[Any], new: list[Any]) -> list[Obj]:
    """JSON patch operations turning list `old` at `path` into `new`, item by item.

    Items equal in both lists are not written, so a user's entries that canaryctl leaves
    alone are neither moved into nor rewritten by its patch beyond index shifts.
    """
    keys = [[canonical(item) for item in items] for items in (old, new)]
    ops: list[Obj] = []
    # From the end backwards: an edit never shifts the indices of the edits still to come.
    matcher = difflib.SequenceMatcher(a=keys[0], b=keys[1], autojunk=False)
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "equal":
            continue
        shared = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for offset in range(shared):
            ops.append(
                {"op": "replace", "path": pointer(*path, i1 + offset), "value": new[j1 + offset]}
            )
        for index in reversed(range(i1 + shared, i2)):
            ops.append({"op": "remove", "path": pointer(*path, index)})
        for offset, item in enumerate(new[j1 + shared : j2]):
            ops.append({"op": "add", "path": pointer(*path, i1 + shared + offset), "value": item})
    return ops


def normalize(value: Any) -> Any:
    """`value` as the API server stores JSON: a float with an integral value is an integer.

    The server decodes JSON numbers and encodes them again, so `20.0` comes back as `20`;
    comparing what we would write with what we read must see these as equal.
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def canonical(value: Any) -> str:
    """A JSON text equal for two values exactly when the server would store them alike."""
    return json.dumps(normalize(value), sort_keys=True)


def _unpointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def apply_ops(obj: Obj, ops: list[Obj]) -> Obj:
    """The object after the JSON patch `ops` (add, replace, remove), as the server applies it.

    Raises KeyError/IndexError/ValueError when an operation does not fit the object.
    """
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = _unpointer(op["path"])
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op["op"] == "add":
                node.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "replace":
                node[index] = copy.deepcopy(op["value"])
            else:
                del node[index]
        elif op["op"] == "remove":
            del node[last]
        elif op["op"] in ("add", "replace"):
            node[last] = copy.deepcopy(op["value"])
        else:
            raise ValueError(f"unsupported JSON patch operation {op['op']!r}")
    return out


def stored_unchanged(obj: Obj, ops: list[Obj]) -> bool:
    """True when applying `ops` to `obj` leaves what the server stores as it is.

    The general guard against writes at rest for every router: whatever a planner computes,
    a patch that would store the same content (numbers normalised) is not sent.
    """
    try:
        after = apply_ops(obj, ops)
    except (KeyError, IndexError, ValueError, TypeError):
        return False  # let the server judge (and reject) a patch we cannot apply here
    return canonical(after) == canonical(obj)

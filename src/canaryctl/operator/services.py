"""Managed mode's Services (Flagger's layout).

The operator creates and owns `<service>-primary`, selecting the primary's pods, and
`<service>-canary`, selecting the target's pods (load tests and the weight routers'
canary backend). With a weight router (nginx, istio, gateway) the user's Service is
pointed at the primary, as Flagger's apex Service is: the selector keys the primary
rewrites are added with the primary's values and listed in the annotation
`canaryctl.dev/primary-selector` (removed again when the Canary goes), so the user's
Ingress, VirtualService or HTTPRoute, which name that Service, send stable traffic to
the primary and the router's canary backend (`<service>-canary`) sends the rest to the
target. The replicas router needs the Service to select both, so it is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Service
from lightkube.types import PatchType

from canaryctl.errors import ClusterError
from canaryctl.kube.client import write_error
from canaryctl.operator.owned import OWNED, PRIMARY_OF, Owner, is_ours, json_pointer, owner_ref

#: On the user's Service: selector keys the operator added to point it at the primary.
PRIMARY_SELECTOR = "canaryctl.dev/primary-selector"


def added_keys(service: Mapping[str, Any]) -> list[str]:
    """Selector keys the operator added to the user's Service (from its annotation)."""
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    return [k for k in (annotations.get(PRIMARY_SELECTOR) or "").split(",") if k]


def user_selector(service: Mapping[str, Any]) -> dict[str, str]:
    """The user's own selector: without the keys the operator added to point it at the
    primary (which a repointing at promotion may have changed meanwhile)."""
    added = set(added_keys(service))
    selector = (service.get("spec") or {}).get("selector") or {}
    return {k: v for k, v in selector.items() if k not in added}


def side_services(
    service: Mapping[str, Any], primary: Mapping[str, Any], target: Mapping[str, Any],
    owner: Owner | None,
) -> list[dict[str, Any]]:  # fmt: skip
    """`<service>-primary` (the primary's pods) and `<service>-canary` (the target's), with
    the user's Service's ports, for server-side apply."""
    meta = service["metadata"]
    ports = [
        {k: v for k, v in port.items() if k in ("name", "port", "targetPort", "protocol",
                                                "appProtocol") and v is not None}
        for port in (service.get("spec") or {}).get("ports") or []
    ]  # fmt: skip
    out = []
    for suffix, dep in (("-primary", primary), ("-canary", target)):
        selector = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": f"{meta['name']}{suffix}",
                "namespace": meta["namespace"],
                "labels": dict(OWNED),
                "annotations": {PRIMARY_OF: target["metadata"]["name"]},
            },
            "spec": {"selector": dict(selector), "ports": ports},
        }
        if owner is not None:
            body["metadata"]["ownerReferences"] = [owner_ref(owner)]
        out.append(body)
    return out


def _read_service(client: Client, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return client.get(Service, name, namespace=namespace).to_dict()
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise ClusterError(f"reading service/{name}: {exc.status.message}") from exc


def apply_service(client: Client, body: dict[str, Any]) -> bool:
    """Create or update a Service canaryctl owns (server-side apply). A Service of that
    name that someone else made is left alone (the router checks it fits); returns
    whether ours was written."""
    meta = body["metadata"]
    existing = _read_service(client, meta["name"], meta["namespace"])
    if existing is not None and not is_ours(existing, meta["annotations"][PRIMARY_OF]):
        return False
    try:
        client.apply(Service.from_dict(body), namespace=meta["namespace"], force=True)
    except ApiError as exc:
        raise ClusterError(f"applying service/{meta['name']}: {exc.status.message}") from exc
    return True


def delete_service(client: Client, name: str, namespace: str, target: str) -> None:
    """Delete a Service canaryctl made for the primary of `target` (gone already is fine)."""
    existing = _read_service(client, name, namespace)
    if existing is None or not is_ours(existing, target):
        return
    try:
        client.delete(Service, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code != 404:
            raise ClusterError(f"deleting service/{name}: {exc.status.message}") from exc


def point_at_primary(
    client: Client, service: Mapping[str, Any], primary: Mapping[str, Any], keys: Iterable[str]
) -> bool:
    """Point the user's Service at the primary's pods: each key in `keys` gets the
    primary's selector value. Returns True when something was written."""
    meta, selector = service["metadata"], (service.get("spec") or {}).get("selector") or {}
    wanted = ((primary.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    keys = sorted(keys)
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}
    ]
    for key in keys:
        if selector.get(key) != wanted[key]:
            ops.append({"op": "add", "path": json_pointer("spec", "selector", key),
                        "value": wanted[key]})  # fmt: skip
    recorded = ",".join(sorted(set(added_keys(service)) | set(keys)))
    if (meta.get("annotations") or {}).get(PRIMARY_SELECTOR) != recorded:
        if meta.get("annotations") is None:
            path, value = "/metadata/annotations", {PRIMARY_SELECTOR: recorded}
        else:
            path, value = json_pointer("metadata", "annotations", PRIMARY_SELECTOR), recorded
        ops.append({"op": "add", "path": path, "value": value})
    if len(ops) == 1:
        return False
    _patch_service(client, meta, ops)
    return True


def restore_service(client: Client, service: Mapping[str, Any]) -> bool:
    """Undo `point_at_primary`: remove the keys the operator added and its annotation."""
    meta, selector = service["metadata"], (service.get("spec") or {}).get("selector") or {}
    if PRIMARY_SELECTOR not in (meta.get("annotations") or {}):
        return False
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}
    ]
    ops += [{"op": "remove", "path": json_pointer("spec", "selector", k)}
            for k in added_keys(service) if k in selector]  # fmt: skip
    ops.append({"op": "remove", "path": json_pointer("metadata", "annotations", PRIMARY_SELECTOR)})
    _patch_service(client, meta, ops)
    return True


def _patch_service(client: Client, meta: Mapping[str, Any], ops: list[dict[str, Any]]) -> None:
    try:
        client.patch(Service, meta["name"], ops, namespace=meta["namespace"],
                     patch_type=PatchType.JSON)  # fmt: skip
    except ApiError as exc:
        raise write_error(exc, f"service/{meta['name']} in {meta['namespace']}") from exc

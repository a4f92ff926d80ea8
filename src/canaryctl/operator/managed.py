"""Managed mode (`spec.targetRef`): the operator keeps `<target>-primary` serving and turns
a change of the target's pod template, or of a ConfigMap/Secret it references, into a
rollout with the target as canary and the primary as stable.

This module only knows Deployments and hashes; which rollout runs, and when, is the
reconciler's business, and every traffic decision is the state machine's.

Labels: the primary's pods carry the target's labels, except that each key of the
target's selector that the Service does not select on gets the value `<value>-primary`.
So the Service selects the pods of both Deployments (the replicas router needs that) and
neither Deployment selects the other's pods.

Services (Flagger's layout): the operator creates and owns `<service>-primary`, selecting
the primary's pods, and `<service>-canary`, selecting the target's pods (load tests and
the weight routers' canary backend). With a weight router (nginx, istio, gateway) the
user's Service is pointed at the primary, as Flagger's apex Service is: the selector keys
the primary rewrites are added with the primary's values and listed in the annotation
`canaryctl.dev/primary-selector` (removed again when the Canary goes), so the user's
Ingress, VirtualService or HTTPRoute, which name that Service, send stable traffic to
the primary and the router's canary backend (`<service>-canary`) sends the rest to the
target. The replicas router needs the Service to select both, so it is left as it is.

ConfigMaps and Secrets (Flagger's behaviour): each one the target's template reads is
copied to `<name>-primary` (labelled `canaryctl.dev/primary-of: <target>`, owned by the
Canary) and the primary's template reads the copies. A config change therefore reaches
only the canary (the target reads the original) until promotion, which copies the new
data over before the template; the copies go with the Canary.

What the primary remembers (its own annotations, an object canaryctl owns):
- `canaryctl.dev/template-hash`: hash of the target template (and config) it runs;
- `canaryctl.dev/candidate-hash`: the target template the latest rollout tried;
- `canaryctl.dev/failed-hash`: a candidate that was rolled back (not tried again until
  the target changes once more).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Secret, Service
from lightkube.types import PatchType

from canaryctl.errors import ClusterError, ConflictError, SpecError

SUFFIX = "-primary"
TEMPLATE_HASH = "canaryctl.dev/template-hash"
CANDIDATE_HASH = "canaryctl.dev/candidate-hash"
FAILED_HASH = "canaryctl.dev/failed-hash"
CONFIG_CHECKSUM = "canaryctl.dev/config-checksum"
PRIMARY_OF = "canaryctl.dev/primary-of"
#: On the user's Service: selector keys the operator added to point it at the primary.
PRIMARY_SELECTOR = "canaryctl.dev/primary-selector"
OWNED = {"app.kubernetes.io/managed-by": "canaryctl"}


def primary_name(target: str) -> str:
    """The Deployment canaryctl creates and owns for a target."""
    return f"{target}{SUFFIX}"


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
        body["metadata"]["ownerReferences"] = [_owner_ref(owner)]
    return body


def data_checksum(obj: Mapping[str, Any]) -> str:
    """Checksum of a ConfigMap's or Secret's data (the data itself is never kept or logged)."""
    data = {k: obj.get(k) for k in ("data", "binaryData", "stringData") if obj.get(k)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _strip(template: Mapping[str, Any]) -> dict[str, Any]:
    """The template without what canaryctl itself writes into the primary's copy."""
    out = copy.deepcopy(dict(template))
    meta = out.setdefault("metadata", {}) or {}
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(CONFIG_CHECKSUM, None)
    meta["annotations"] = annotations or None
    out["metadata"] = {k: v for k, v in meta.items() if v not in (None, {}, [])}
    return out


def template_hash(template: Mapping[str, Any], checksums: Mapping[tuple[str, str], str]) -> str:
    """What decides "a new version": the pod template plus the checksum of each config it
    reads (a missing config counts as its own value, so creating it later is a change)."""
    refs = sorted(config_refs(template))
    payload = {
        "template": _strip(template),
        "config": [[kind, name, checksums.get((kind, name), "missing")] for kind, name in refs],
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_checksum(template: Mapping[str, Any], checksums: Mapping[tuple[str, str], str]) -> str:
    """One checksum over the referenced configs: in the primary's pod annotations, so its
    pods restart with the configuration that was analysed."""
    refs = sorted(config_refs(template))
    joined = ",".join(f"{k}/{n}={checksums.get((k, n), 'missing')}" for k, n in refs)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def rewritten_keys(target_selector: Mapping[str, str], service_selector: Mapping[str, str]):
    """Selector keys whose value the primary changes; SpecError when there are none."""
    keys = sorted(set(target_selector) - set(service_selector))
    if not keys:
        raise SpecError(
            "targetRef",
            f"every label of the target's selector {dict(target_selector)} is also in the "
            f"Service's selector {dict(service_selector)}: give the Deployment's selector one "
            "label the Service does not select on (e.g. `track: main`), so the primary's pods "
            "can be told apart while the Service serves both",
        )
    return keys


def _suffixed(labels: Mapping[str, str] | None, keys: Iterable[str]) -> dict[str, str]:
    out = dict(labels or {})
    for key in keys:
        if key in out:
            out[key] = f"{out[key]}{SUFFIX}"[:63]
    return out


@dataclass(frozen=True)
class Owner:
    """The Canary that owns the primary (ownerReference: the primary goes with it)."""

    api_version: str
    kind: str
    name: str
    uid: str


def primary_manifest(
    target: Mapping[str, Any],
    *,
    service_selector: Mapping[str, str],
    replicas: int,
    hash_: str,
    checksum: str,
    owner: Owner | None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The primary Deployment for a target (a dict for server-side apply)."""
    meta = target["metadata"]
    spec = target["spec"]
    selector = dict((spec.get("selector") or {}).get("matchLabels") or {})
    keys = rewritten_keys(selector, service_selector)
    template = with_config_copies(spec["template"])
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = _suffixed(tmeta.get("labels"), keys)
    tmeta["annotations"] = {**(tmeta.get("annotations") or {}), CONFIG_CHECKSUM: checksum}
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": primary_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {**_suffixed(meta.get("labels"), keys), **OWNED},
            "annotations": {
                **(annotations or {}),
                TEMPLATE_HASH: hash_,
                PRIMARY_OF: meta["name"],
            },
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _suffixed(selector, keys)},
            "template": template,
        },
    }
    for key in ("strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"):
        if spec.get(key) is not None:
            body["spec"][key] = spec[key]
    if owner is not None:
        body["metadata"]["ownerReferences"] = [_owner_ref(owner)]
    return body


def apply_primary(client: Client, body: dict[str, Any]) -> None:
    """Create or update the primary with server-side apply (canaryctl owns all of it)."""
    obj = Deployment.from_dict(body)
    try:
        client.apply(obj, namespace=body["metadata"]["namespace"], force=True)
    except ApiError as exc:
        raise ClusterError(
            f"applying deployment/{body['metadata']['name']}: {exc.status.message}"
        ) from exc


def annotate(
    client: Client, name: str, namespace: str, generation: int, values: Mapping[str, str]
) -> None:
    """Record hashes on the primary, guarded by the generation they were decided on."""
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/generation", "value": generation}
    ]
    for key, value in values.items():
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        ops.append({"op": "add", "path": path, "value": value})
    try:
        client.patch(Deployment, name, ops, namespace=namespace, patch_type=PatchType.JSON)
    except ApiError as exc:
        if exc.status.code in (409, 422):
            raise ConflictError(f"deployment/{name} changed while annotating it") from exc
        raise ClusterError(f"annotating deployment/{name}: {exc.status.message}") from exc


# --- Services ---------------------------------------------------------------------------


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


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
            body["metadata"]["ownerReferences"] = [_owner_ref(owner)]
        out.append(body)
    return out


def _owner_ref(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _read_service(client: Client, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return client.get(Service, name, namespace=namespace).to_dict()
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise ClusterError(f"reading service/{name}: {exc.status.message}") from exc


def _ours(obj: Mapping[str, Any], target: str) -> bool:
    meta = obj.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return all(labels.get(k) == v for k, v in OWNED.items()) and (
        annotations.get(PRIMARY_OF) == target
    )


def apply_service(client: Client, body: dict[str, Any]) -> bool:
    """Create or update a Service canaryctl owns (server-side apply). A Service of that
    name that someone else made is left alone (the router checks it fits); returns
    whether ours was written."""
    meta = body["metadata"]
    existing = _read_service(client, meta["name"], meta["namespace"])
    if existing is not None and not _ours(existing, meta["annotations"][PRIMARY_OF]):
        return False
    try:
        client.apply(Service.from_dict(body), namespace=meta["namespace"], force=True)
    except ApiError as exc:
        raise ClusterError(f"applying service/{meta['name']}: {exc.status.message}") from exc
    return True


def delete_service(client: Client, name: str, namespace: str, target: str) -> None:
    """Delete a Service canaryctl made for the primary of `target` (gone already is fine)."""
    existing = _read_service(client, name, namespace)
    if existing is None or not _ours(existing, target):
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
            ops.append({"op": "add", "path": _pointer("spec", "selector", key),
                        "value": wanted[key]})  # fmt: skip
    recorded = ",".join(sorted(set(added_keys(service)) | set(keys)))
    if (meta.get("annotations") or {}).get(PRIMARY_SELECTOR) != recorded:
        if meta.get("annotations") is None:
            path, value = "/metadata/annotations", {PRIMARY_SELECTOR: recorded}
        else:
            path, value = _pointer("metadata", "annotations", PRIMARY_SELECTOR), recorded
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
    ops += [{"op": "remove", "path": _pointer("spec", "selector", k)}
            for k in added_keys(service) if k in selector]  # fmt: skip
    ops.append({"op": "remove", "path": _pointer("metadata", "annotations", PRIMARY_SELECTOR)})
    _patch_service(client, meta, ops)
    return True


def _patch_service(client: Client, meta: Mapping[str, Any], ops: list[dict[str, Any]]) -> None:
    try:
        client.patch(Service, meta["name"], ops, namespace=meta["namespace"],
                     patch_type=PatchType.JSON)  # fmt: skip
    except ApiError as exc:
        if exc.status.code in (409, 422):
            raise ConflictError(f"service/{meta['name']} changed while repointing it") from exc
        raise ClusterError(f"patching service/{meta['name']}: {exc.status.message}") from exc


# --- config copies ----------------------------------------------------------------------

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

"""Managed mode (`spec.targetRef`): the operator keeps `<target>-primary` serving and turns
a change of the target's pod template, or of a ConfigMap/Secret it references, into a
rollout with the target as canary and the primary as stable.

This module only knows Deployments and hashes; which rollout runs, and when, is the
reconciler's business, and every traffic decision is the state machine's.

Labels: the primary's pods carry the target's labels, except that each key of the
target's selector that the Service does not select on gets the value `<value>-primary`.
So the Service selects the pods of both Deployments (the replicas router needs that) and
neither Deployment selects the other's pods.

Services and config copies: `services.py` (`<service>-primary`/`-canary`, pointing the
user's Service at the primary) and `configs.py` (`<name>-primary` copies of the
ConfigMaps and Secrets the target reads); what marks an object as canaryctl's: `owned.py`.

What the primary remembers (its own annotations, an object canaryctl owns):
- `canaryctl.dev/template-hash`: hash of the target template (and config) it runs;
- `canaryctl.dev/candidate-hash`: the target template the latest rollout tried;
- `canaryctl.dev/failed-hash`: a candidate that was rolled back (not tried again until
  the target changes once more);
- `canaryctl.dev/kept-for`: the uid of a deleted Canary whose finalizer left the primary
  serving, because the target could not take over (see the reconciler's finalizer).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from canaryctl.errors import ClusterError, SpecError
from canaryctl.kube.client import write_error
from canaryctl.operator.configs import config_refs, with_config_copies
from canaryctl.operator.owned import OWNED, PRIMARY_OF, SUFFIX, Owner, owner_ref

TEMPLATE_HASH = "canaryctl.dev/template-hash"
CANDIDATE_HASH = "canaryctl.dev/candidate-hash"
FAILED_HASH = "canaryctl.dev/failed-hash"
CONFIG_CHECKSUM = "canaryctl.dev/config-checksum"
KEPT_FOR = "canaryctl.dev/kept-for"


def primary_name(target: str) -> str:
    """The Deployment canaryctl creates and owns for a target."""
    return f"{target}{SUFFIX}"


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
    template = with_config_copies(spec["template"], hash_)
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
        body["metadata"]["ownerReferences"] = [owner_ref(owner)]
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
        raise write_error(exc, f"deployment/{name} in {namespace}") from exc

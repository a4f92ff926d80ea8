"""Managed mode's HorizontalPodAutoscalers (Flagger's behaviour).

The user's HPA scales the target (`app`); the operator keeps `<hpa>-primary`, the same
spec (metrics, behavior, minReplicas, maxReplicas) scaling `<target>-primary`, marked
as canaryctl's and owned by the Canary, so the version that serves keeps its
autoscaling. The user's HPA is left as it is: while the target is at 0 replicas the
HPA controller does not act on it (a Deployment at 0 has autoscaling disabled), so it
never fights the operator keeping the target at 0; during a rollout it scales the
canary as it always did, and it takes the target over again when the Canary goes.

The replicas router sets both Deployments' replica counts itself, so an HPA on the
target is refused with that router (as the router refuses one in pair mode).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler

from canaryctl.errors import ClusterError, NameTaken, SpecError
from canaryctl.operator.owned import OWNED, PRIMARY_OF, SUFFIX, Owner, is_ours, owner_ref, release

#: Spec fields copied from the user's HPA (scaleTargetRef is the primary's).
_COPIED = ("minReplicas", "maxReplicas", "metrics", "behavior")


def scales(hpa: Mapping[str, Any], deployment: str) -> bool:
    """Whether `hpa` scales the Deployment `deployment`."""
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    return ref.get("kind") == "Deployment" and ref.get("name") == deployment


def target_hpas(hpas: Iterable[Mapping[str, Any]], target: str) -> list[Mapping[str, Any]]:
    """The HPAs (of one namespace) that scale the target, by name."""
    found = [h for h in hpas if scales(h, target) and not is_ours(h, target)]
    return sorted(found, key=lambda h: h["metadata"]["name"])


def refuse_with_replicas_router(hpas: list[Mapping[str, Any]], target: str, router: str) -> None:
    """The replicas router sets replica counts itself: an HPA on the target is refused."""
    if router == "replicas" and hpas:
        name = hpas[0]["metadata"]["name"]
        raise SpecError(
            "router.kind",
            f"horizontalpodautoscaler/{name} scales deployment/{target}, and the replicas "
            "router sets both Deployments' replica counts itself: use a weight router "
            "(nginx, istio, gateway), which mirrors the HPA onto the primary, or remove "
            "the HPA",
        )


def primary_hpa(hpa: Mapping[str, Any], target: str, owner: Owner | None) -> dict[str, Any]:
    """`<hpa>-primary`: the user's HPA scaling `<target>-primary` (a dict for server-side
    apply), marked as canaryctl's for `target`."""
    meta, spec = hpa["metadata"], hpa.get("spec") or {}
    ref = dict(spec.get("scaleTargetRef") or {})
    ref["name"] = f"{target}{SUFFIX}"
    body: dict[str, Any] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": f"{meta['name']}{SUFFIX}",
            "namespace": meta["namespace"],
            "labels": {**(meta.get("labels") or {}), **OWNED},
            "annotations": {PRIMARY_OF: target},
        },
        "spec": {"scaleTargetRef": ref, **{k: spec[k] for k in _COPIED if spec.get(k)}},
    }
    if owner is not None:
        body["metadata"]["ownerReferences"] = [owner_ref(owner)]
    return body


def _same(existing: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether an HPA canaryctl made already has what `body` asks for (no write needed)."""
    spec, want = existing.get("spec") or {}, body["spec"]
    if spec.get("minReplicas", 1) != want.get("minReplicas", 1):
        return False
    if any(spec.get(k) != want.get(k) for k in ("maxReplicas", "scaleTargetRef", "metrics")):
        return False
    # the API server fills in behavior's defaults: compare only what the user's HPA sets
    have = spec.get("behavior") or {}
    return all(_contains(have.get(k), v) for k, v in (want.get("behavior") or {}).items())


def _contains(have: Any, want: Any) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(_contains(have.get(k), v)
                                                 for k, v in want.items())  # fmt: skip
    return have == want


def sync_primary_hpas(
    client: Client, namespace: str, target: str, hpas: Iterable[Mapping[str, Any]],
    owner: Owner | None, canary: str,
) -> list[str]:  # fmt: skip
    """Keep `<hpa>-primary` in step with each HPA of the target, and delete the ones whose
    HPA is gone. `hpas` are the namespace's HPAs as last seen (the watch cache): nothing
    is written, and no request made, when they are in step. A same-named HPA canaryctl did
    not make is refused (NameTaken naming it and the Canary), never overwritten. Returns
    the HPAs written or deleted."""
    seen = {h["metadata"]["name"]: h for h in hpas}
    changed = []
    wanted = set()
    for hpa in target_hpas(seen.values(), target):
        body = primary_hpa(hpa, target, owner)
        name = body["metadata"]["name"]
        wanted.add(name)
        existing = seen.get(name)
        if existing is not None and not is_ours(existing, target):
            raise NameTaken(
                "targetRef",
                f"horizontalpodautoscaler/{name} exists in {namespace} and was not made by "
                f"canaryctl for deployment/{target}: canary {namespace}/{canary} needs that "
                f"name to mirror horizontalpodautoscaler/{hpa['metadata']['name']} onto the "
                "primary and never overwrites someone else's object; rename or delete it",
            )
        if existing is not None and _same(existing, body):
            continue
        try:
            client.apply(HorizontalPodAutoscaler.from_dict(body), namespace=namespace,
                         force=True)  # fmt: skip
        except ApiError as exc:
            raise ClusterError(
                f"applying horizontalpodautoscaler/{name}: {exc.status.message}"
            ) from exc
        changed.append(f"horizontalpodautoscaler/{name}")
    for name, hpa in seen.items():
        if name not in wanted and is_ours(hpa, target):
            _delete(client, namespace, name)
            changed.append(f"horizontalpodautoscaler/{name} (deleted)")
    return changed


def _delete(client: Client, namespace: str, name: str) -> None:
    try:
        client.delete(HorizontalPodAutoscaler, name, namespace=namespace)
    except ApiError as exc:
        if exc.status.code != 404:
            raise ClusterError(
                f"deleting horizontalpodautoscaler/{name}: {exc.status.message}"
            ) from exc


def _ours(client: Client, namespace: str, target: str) -> list[dict[str, Any]]:
    try:
        found = client.list(HorizontalPodAutoscaler, namespace=namespace, labels=OWNED)
        return [h.to_dict() for h in found if is_ours(h.to_dict(), target)]
    except ApiError as exc:
        raise ClusterError(
            f"listing horizontalpodautoscalers in {namespace}: {exc.status.message}"
        ) from exc


def delete_primary_hpas(client: Client, namespace: str, target: str) -> None:
    """Delete every HPA canaryctl made for the primary of `target` (the Canary goes)."""
    for hpa in _ours(client, namespace, target):
        _delete(client, namespace, hpa["metadata"]["name"])


def release_primary_hpas(client: Client, namespace: str, target: str, owner_uid: str) -> None:
    """Keep the primary's HPAs when the Canary goes and the primary stays serving (it keeps
    its autoscaling): take the Canary's ownerReference off each."""
    for hpa in _ours(client, namespace, target):
        release(client, HorizontalPodAutoscaler, hpa, owner_uid)

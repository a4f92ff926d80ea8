"""The seed's native canary: two Deployments behind one Service, traffic by ready replicas.

Weight w gives the canary ceil(N*w/100) replicas (at least 1 when w > 0). In "seed" mode
the stable keeps N minus that; in "full" mode it keeps N until promotion. Capacity comes
before traffic: the side that grows is scaled up first, and the other side shrinks only
once the grown side is ready, so serving capacity never drops below the N pods the user had.

A version that is to have no pods (the stable at 100%, the canary withdrawn at 0%) is not
scaled down here: once the other side is ready, the Service is narrowed to the other
version (adding the distinguishing selector keys, recorded in `canaryctl.dev/selector-
added`), so its pods leave the endpoints while still running; the engine removes them
after they drained, and cleanup takes the added keys out again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from lightkube import Client
from lightkube.resources.core_v1 import Service

from canaryctl.core.models import replica_split
from canaryctl.errors import SpecError
from canaryctl.kube import workloads
from canaryctl.kube.workloads import DeploymentInfo
from canaryctl.routers import _patch
from canaryctl.routers._patch import Obj, pointer
from canaryctl.routers._services import SELECTOR_ADDED, _distinguishing, _set_annotation
from canaryctl.routers.base import Change


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class ReplicaRouter:
    """Router for the replica-ratio canary (no mesh, no ingress)."""

    kind = "replicas"

    def __init__(
        self,
        client: Client,
        *,
        namespace: str,
        service: str,
        stable: str,
        canary: str,
        baseline: int,
        mode: str = "seed",
        on_promotion: str = "delete",
        generations: Mapping[str, int] | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.service = service
        self.stable = stable
        self.canary = canary
        self.baseline = baseline
        self.mode = mode
        self.on_promotion = on_promotion
        self.generations = dict(generations or {})

    def _read(self) -> tuple[DeploymentInfo, DeploymentInfo]:
        return (
            workloads.read_deployment(self.client, self.stable, self.namespace),
            workloads.read_deployment(self.client, self.canary, self.namespace),
        )

    def reconcile(self) -> list[Change]:
        """Check that the Service selects the pods of both Deployments, and only theirs."""
        svc = workloads.read_service(self.client, self.service, self.namespace)
        if svc is None:
            raise SpecError("service", f"service/{self.service} not found in {self.namespace}")
        selector = dict(svc.spec.selector or {})
        if not selector:
            raise SpecError("service", f"service/{self.service} has no selector")
        stable, canary = self._read()
        for role, dep in (("stable", stable), ("canary", canary)):
            if not dep.exists:
                raise SpecError(role, f"deployment/{dep.name} not found in {self.namespace}")
            if not _selects(selector, dep.pod_labels):
                raise SpecError(
                    role,
                    f"service/{self.service} selector {selector} does not select the pods of "
                    f"deployment/{dep.name} (pod labels {dep.pod_labels}); the replica router "
                    "needs one Service selecting both versions, e.g. by the app label only",
                )
        self._refuse_autoscalers()
        if _selects(stable.selector, canary.pod_labels) or _selects(
            canary.selector, stable.pod_labels
        ):
            raise SpecError(
                "canary",
                f"deployment/{stable.name} and deployment/{canary.name} select each other's "
                "pods; give their selectors a distinguishing label such as version",
            )
        return []

    def _refuse_autoscalers(self) -> None:
        """SpecError naming any HPA on either Deployment.

        The replica router expresses the weight as replica counts; an HPA sets the same
        field from load, and each would undo the other's write (flapping, and a weight
        that is neither's). Coordinating (pinning each HPA's min/max per step) would leave
        the user's HPAs edited if canaryctl died mid-rollout; a clear refusal leaves them
        alone. Weight routers leave replicas to the HPAs and work with them.
        """
        found = workloads.autoscalers(self.client, self.namespace, {self.stable, self.canary})
        if found:
            names = ", ".join(
                f"horizontalpodautoscaler/{a.name} (on deployment/{a.target}, "
                f"min {a.min_replicas}, max {a.max_replicas})"
                for a in found
            )
            raise SpecError(
                "router",
                f"{names} sets the replica count that the replica router uses as the "
                "traffic weight; they would fight. Use a weight router (nginx, istio or "
                "gateway: replicas stay with the HPA), or delete the HPA for the rollout",
            )

    def set_weight(
        self, weight: int, *, replicas: tuple[int, int] | None = None, dry_run: bool = False
    ) -> list[Change]:
        """Scale towards the split for `weight`: grow first, shrink once the grown side is ready."""
        want_stable, want_canary = replicas or replica_split(self.baseline, weight, self.mode)
        stable, canary = self._read()
        changes: list[Change] = []
        grow = [
            (dep, want)
            for dep, want in ((canary, want_canary), (stable, want_stable))
            if dep.exists and want > dep.desired_replicas
        ]
        for dep, want in grow:
            changes.append(self._scale(dep, want, dry_run))
        # A side leaving entirely leaves the Service first (its pods keep running until the
        # engine has seen them drained); the other side must be ready for all traffic.
        if want_canary == 0 and weight == 0:
            if stable.ready_replicas >= want_stable or dry_run:
                changes += self._select("stable", dry_run)
            return changes
        if want_stable == 0 and weight == 100:
            if canary.ready_replicas >= want_canary or dry_run:
                changes += self._select("canary", dry_run)
            return changes
        changes += self._select(None, dry_run)  # both versions serve: undo a narrowing
        # Shrink a side only when the other side already serves its share.
        shrink_canary = canary.exists and want_canary < canary.desired_replicas
        if shrink_canary and (stable.ready_replicas >= want_stable or dry_run):
            changes.append(self._scale(canary, want_canary, dry_run))
        shrink_stable = stable.exists and want_stable < stable.desired_replicas
        if shrink_stable and (canary.ready_replicas >= want_canary or dry_run):
            changes.append(self._scale(stable, want_stable, dry_run))
        return changes

    def _scale(self, dep: DeploymentInfo, replicas: int, dry_run: bool) -> Change:
        if not dry_run:
            expected = self.generations.get(dep.name)
            workloads.scale(self.client, dep.name, self.namespace, replicas, generation=expected)
        return Change("scale", f"deployment/{dep.name}", f"{dep.desired_replicas} -> {replicas}")

    def get_weight(self) -> float | None:
        """Canary share of the Service's ready endpoints (what kube-proxy would balance over)."""
        ready = workloads.ready_endpoint_ips(self.client, self.service, self.namespace)
        if not ready:
            return None
        canary = workloads.read_deployment(self.client, self.canary, self.namespace)
        canary_ips = {p.ip for p in canary.pods if p.ip and p.ready}
        return 100.0 * len(ready & canary_ips) / len(ready)

    def serving(self, side: Literal["stable", "canary"]) -> int:
        """Pods of `side` the shared Service's EndpointSlices list as serving."""
        stable, canary = self._read()
        dep = stable if side == "stable" else canary
        if not dep.exists:
            return 0
        service = [(self.service, self.namespace)]
        return workloads.count_serving(self.client, service, self.namespace, dep.selector)

    def promote(self, *, retire: bool = True, dry_run: bool = False) -> list[Change]:
        """The seed's last step: once the canary serves with N ready, retire the old stable.

        The old pods left the Service at 100% already (narrowed to the canary), so without
        `retire` there is nothing to move.
        """
        stable, canary = self._read()
        if not stable.exists or not retire:
            return []
        if canary.ready_replicas < self.baseline and not dry_run:
            return []  # not yet: removing v1 now would drop capacity
        if self.on_promotion == "scale-to-zero":
            if stable.desired_replicas == 0:
                return []
            return [self._scale(stable, 0, dry_run)]
        if not dry_run:
            workloads.delete_deployment(self.client, stable.name, self.namespace)
        return [Change("delete", f"deployment/{stable.name}", "promotion complete")]

    def cleanup(self, *, dry_run: bool = False) -> list[Change]:
        """Take the selector keys added for the rollout out of the Service again."""
        if workloads.read_service(self.client, self.service, self.namespace) is None:
            return []
        return self._select(None, dry_run)

    def _select(self, side: Literal["stable", "canary"] | None, dry_run: bool) -> list[Change]:
        """Narrow the Service to one version's pods, or (None) back to both versions."""
        want: dict[str, str] = {}
        if side is not None:
            stable, canary = self._read()
            if not stable.exists or not canary.exists:
                return []  # nothing left to tell apart: the selector stays as it is
            labels = (stable if side == "stable" else canary).pod_labels
            want = {k: labels[k] for k in _distinguishing(stable, canary)}
        ref = f"service/{self.service}"

        def plan(obj: Obj) -> tuple[list[Obj], list[Change]]:
            selector = dict(obj["spec"].get("selector") or {})
            annotations = obj["metadata"].get("annotations") or {}
            added = [k for k in annotations.get(SELECTOR_ADDED, "").split(",") if k]
            if side is None:
                if SELECTOR_ADDED not in annotations:
                    return [], []
                ops: list[Obj] = [
                    {"op": "remove", "path": pointer("spec", "selector", k)}
                    for k in added
                    if k in selector
                ]
                path = pointer("metadata", "annotations", SELECTOR_ADDED)
                ops.append({"op": "remove", "path": path})
                return ops, [Change("patch", ref, f"selector keys added removed again: {added}")]
            if all(selector.get(k) == v for k, v in want.items()):
                return [], []
            # The Service selects both versions (validated), so every key is one we add.
            ops = [
                {"op": "add", "path": pointer("spec", "selector", k), "value": v}
                for k, v in want.items()
            ]
            keys = ",".join(sorted(set(added) | set(want)))
            if annotations.get(SELECTOR_ADDED) != keys:
                ops += _set_annotation(obj, SELECTOR_ADDED, keys)
            detail = f"selector narrowed to the {side} version, its pods only: +{want}"
            return ops, [Change("patch", ref, detail)]

        return _patch.patch(
            self.client, Service, self.service, self.namespace, plan, dry_run=dry_run
        )

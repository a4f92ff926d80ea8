"""The stable and canary destinations a weight router splits traffic between.

Three ways to address the two versions:

- "services" (same namespace): the stable side is the user's Service (`spec.service`),
  the canary side `<service>-canary`, created by canaryctl with the canary Deployment's
  selector. A user Service that selects both versions (the seed's, by `app` only) is
  narrowed to the stable pods for the rollout by adding the distinguishing selector
  keys (e.g. `version`), recorded in the annotation `canaryctl.dev/selector-added` and
  removed again at cleanup. At promotion the user's Service is repointed: its
  distinguishing selector values become the canary's, so the user's own routing object
  ends up serving the new version (Flagger's approach).
- "cross-namespace": the stable Service in its namespace, the canary Service of the same
  name in the canary's namespace (as two Helm releases create them); nothing is created.
- "subsets" (Istio DestinationRule): one Service selecting both versions; the router
  tells the versions apart by subsets, and this class only checks pods and endpoints.
"""

from __future__ import annotations

from typing import Literal

from lightkube import Client
from lightkube.models.core_v1 import ServicePort, ServiceSpec
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service

from canaryctl.core.models import OnPromotion
from canaryctl.errors import SpecError
from canaryctl.kube import workloads
from canaryctl.kube.workloads import DeploymentInfo
from canaryctl.routers import _patch
from canaryctl.routers._patch import Obj, pointer
from canaryctl.routers.base import Change

#: Annotation on the user's Service listing the selector keys canaryctl added to it.
SELECTOR_ADDED = "canaryctl.dev/selector-added"
CLUSTER_DOMAIN = "svc.cluster.local"

Mode = Literal["services", "cross-namespace", "subsets"]
Side = Literal["stable", "canary"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """True when a non-empty label selector matches the labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def fqdn(service: str, namespace: str) -> str:
    """The cluster-wide DNS name of a Service."""
    return f"{service}.{namespace}.{CLUSTER_DOMAIN}"


def names_service(host: str, service: str, namespace: str, local_namespace: str) -> bool:
    """True when `host`, written in an object of `local_namespace`, names the Service."""
    if host == service:
        return namespace == local_namespace
    return host in (
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        fqdn(service, namespace),
    )


class Backends:
    """Validates, prepares, promotes and cleans up the two sides of one canary's split."""

    def __init__(
        self,
        client: Client,
        *,
        canary_name: str,
        namespace: str,
        service: str,
        stable: str,
        canary: str,
        canary_namespace: str | None = None,
        subsets: bool = False,
    ) -> None:
        self.client = client
        self.canary_name = canary_name
        self.namespace = namespace
        self.stable = stable
        self.canary = canary
        self.canary_namespace = canary_namespace or namespace
        cross = self.canary_namespace != namespace
        self.mode: Mode = "subsets" if subsets else "cross-namespace" if cross else "services"
        self.stable_service = service
        self.canary_service = service if self.mode != "services" else f"{service}-canary"

    # --- reading -----------------------------------------------------------------

    def deployments(self) -> tuple[DeploymentInfo, DeploymentInfo]:
        """The stable and canary Deployments as they are now."""
        return (
            workloads.read_deployment(self.client, self.stable, self.namespace),
            workloads.read_deployment(self.client, self.canary, self.canary_namespace),
        )

    def service_of(self, side: Side) -> tuple[str, str]:
        """(name, namespace) of the Service that addresses one side."""
        if side == "stable":
            return self.stable_service, self.namespace
        return self.canary_service, self.canary_namespace

    def _selector(self, name: str, namespace: str) -> dict[str, str] | None:
        svc = workloads.read_service(self.client, name, namespace)
        return None if svc is None else dict(svc.spec.selector or {})

    # --- validation ----------------------------------------------------------------

    def validate(self) -> None:
        """Check Deployments and Services fit this mode; SpecError (changing nothing) if not."""
        stable, canary = self.deployments()
        for role, dep in (("stable", stable), ("canary", canary)):
            if not dep.exists:
                raise SpecError(role, f"deployment/{dep.name} not found in {dep.namespace}")
        selector = self._selector(self.stable_service, self.namespace)
        if selector is None:
            raise SpecError(
                "service", f"service/{self.stable_service} not found in {self.namespace}"
            )
        if not selects(selector, stable.pod_labels):
            raise SpecError(
                "service",
                f"service/{self.stable_service} selector {selector} does not select the pods "
                f"of deployment/{stable.name} (pod labels {stable.pod_labels})",
            )
        self._validate_autoscaler(stable, canary)
        if self.mode == "subsets":
            if not selects(selector, canary.pod_labels):
                raise SpecError(
                    "service",
                    f"service/{self.stable_service} must select the pods of both versions for "
                    f"DestinationRule subsets, but not those of deployment/{canary.name} "
                    f"(pod labels {canary.pod_labels})",
                )
        elif self.mode == "cross-namespace":
            self._validate_cross_namespace(canary)
        else:
            self._validate_services(selector, stable, canary)

    def _validate_autoscaler(self, stable: DeploymentInfo, canary: DeploymentInfo) -> None:
        """SpecError when an HPA caps the canary below the stable's replicas.

        Weight routers leave replica counts to HPAs, but promotion needs the canary ready
        with the stable's capacity before the stable goes; an HPA whose maxReplicas is
        lower would scale it back (a fight every HPA sync) and, once the stable is gone,
        serve all traffic with fewer pods than before.
        """
        for hpa in workloads.autoscalers(self.client, canary.namespace, {canary.name}):
            if hpa.max_replicas < stable.desired_replicas:
                raise SpecError(
                    "canary",
                    f"horizontalpodautoscaler/{hpa.name} keeps deployment/{canary.name} at "
                    f"{hpa.max_replicas} replica(s) at most, fewer than the "
                    f"{stable.desired_replicas} of deployment/{stable.name} it is to replace; "
                    f"raise its maxReplicas to at least {stable.desired_replicas}",
                )

    def _validate_cross_namespace(self, canary: DeploymentInfo) -> None:
        selector = self._selector(self.canary_service, self.canary_namespace)
        if selector is None or not selects(selector, canary.pod_labels):
            found = "not found" if selector is None else f"with selector {selector} does not fit"
            raise SpecError(
                "service",
                f"service/{self.canary_service} in {self.canary_namespace} {found}: a "
                "cross-namespace canary is addressed by the Service of the same name in its "
                f"namespace, selecting the pods of deployment/{canary.name}",
            )

    def _validate_services(
        self, selector: dict[str, str], stable: DeploymentInfo, canary: DeploymentInfo
    ) -> None:
        if selects(selector, canary.pod_labels):
            if not _distinguishing(stable, canary):
                raise SpecError(
                    "canary",
                    f"the pods of deployment/{stable.name} and deployment/{canary.name} agree "
                    f"on every label of {stable.name}'s selector, so no Service can tell them "
                    "apart; give both a distinguishing label such as version",
                )
        else:
            lacking = sorted(k for k in selector if k not in canary.pod_labels)
            if lacking:
                raise SpecError(
                    "service",
                    f"service/{self.stable_service} selects by {', '.join(lacking)}, which the "
                    f"pods of deployment/{canary.name} lack; promotion repoints the selector "
                    "to the canary's values, so the canary pods need these labels",
                )
        existing = _patch.read(self.client, Service, self.canary_service, self.namespace)
        if existing is None or _patch.is_managed(existing, self.canary_name):
            return
        theirs = dict(existing["spec"].get("selector") or {})
        if not selects(theirs, canary.pod_labels) or selects(theirs, stable.pod_labels):
            raise SpecError(
                "service",
                f"service/{self.canary_service} exists, was not created by canaryctl and does "
                f"not select only the pods of deployment/{canary.name}; delete or rename it",
            )

    # --- preparation ---------------------------------------------------------------

    def ensure(self, *, dry_run: bool = False) -> list[Change]:
        """Create the canary Service and narrow the stable one, when this mode needs it."""
        if self.mode != "services":
            return []
        stable, canary = self.deployments()
        if not stable.exists or not canary.exists:
            return []  # the engine's health gates report a missing Deployment
        return self._ensure_canary_service(canary, dry_run) + self._narrow(stable, canary, dry_run)

    def _ensure_canary_service(self, canary: DeploymentInfo, dry_run: bool) -> list[Change]:
        existing = _patch.read(self.client, Service, self.canary_service, self.namespace)
        if existing is not None and not _patch.is_managed(existing, self.canary_name):
            return []  # the user's own, checked by validate()
        if existing is None:
            return self._create_canary_service(canary, dry_run)

        def plan(obj: Obj) -> tuple[list[Obj], list[Change]]:
            # Left over from an earlier canary of the same name: now it serves this one.
            if dict(obj["spec"].get("selector") or {}) == canary.selector:
                return [], []
            ops: list[Obj] = [{"op": "replace", "path": "/spec/selector", "value": canary.selector}]
            if not dry_run:
                owners = [o.to_dict() for o in self.owner()]
                ops.append({"op": "add", "path": "/metadata/ownerReferences", "value": owners})
            detail = f"selector -> {canary.selector}"
            return ops, [Change("patch", f"service/{self.canary_service}", detail)]

        return _patch.patch(
            self.client, Service, self.canary_service, self.namespace, plan, dry_run=dry_run
        )

    def _create_canary_service(self, canary: DeploymentInfo, dry_run: bool) -> list[Change]:
        stable_svc = workloads.read_service(self.client, self.stable_service, self.namespace)
        ports = [
            ServicePort(
                name=p.name,
                port=p.port,
                targetPort=p.targetPort,
                protocol=p.protocol,
                appProtocol=p.appProtocol,
            )
            for p in (stable_svc.spec.ports if stable_svc else None) or []
        ]
        svc = Service(
            metadata=ObjectMeta(
                name=self.canary_service,
                namespace=self.namespace,
                labels=_patch.managed_labels(self.canary_name),
                ownerReferences=None if dry_run else self.owner(),
            ),
            spec=ServiceSpec(selector=canary.selector, ports=ports),
        )
        why = f"selects the pods of deployment/{canary.name} ({canary.selector})"
        return _patch.create(self.client, svc, why, dry_run=dry_run)

    def owner(self) -> list[OwnerReference]:
        """Owner references to the canary Deployment: deleting it removes what we made."""
        dep = self.client.get(Deployment, self.canary, namespace=self.canary_namespace)
        ref = OwnerReference(
            apiVersion="apps/v1", kind="Deployment", name=self.canary, uid=dep.metadata.uid
        )
        return [ref]

    def _narrow(
        self, stable: DeploymentInfo, canary: DeploymentInfo, dry_run: bool
    ) -> list[Change]:
        keys = _distinguishing(stable, canary)

        def plan(obj: Obj) -> tuple[list[Obj], list[Change]]:
            selector = dict(obj["spec"].get("selector") or {})
            if not (selects(selector, canary.pod_labels) and selects(selector, stable.pod_labels)):
                # Already one version only: narrowed earlier, or repointed at promotion (then
                # rewriting the record of added keys would make cleanup forget them).
                return [], []
            added = [k for k in keys if k not in selector]
            if not added:
                return [], []
            ops: list[Obj] = [
                {"op": "add", "path": pointer("spec", "selector", k), "value": stable.selector[k]}
                for k in added
            ]
            ops += _set_annotation(obj, SELECTOR_ADDED, ",".join(added))
            narrowed = {k: stable.selector[k] for k in added}
            detail = f"selector narrowed to the stable version for the rollout: +{narrowed}"
            return ops, [Change("patch", f"service/{self.stable_service}", detail)]

        return _patch.patch(
            self.client, Service, self.stable_service, self.namespace, plan, dry_run=dry_run
        )

    # --- traffic checks ------------------------------------------------------------

    def ready(self, side: Side) -> bool:
        """True when the Service addressing `side` has ready endpoints of that version."""
        name, namespace = self.service_of(side)
        ips = workloads.ready_endpoint_ips(self.client, name, namespace)
        if self.mode != "subsets":
            return bool(ips)
        dep = self.deployments()[0 if side == "stable" else 1]
        return bool(ips & {p.ip for p in dep.pods if p.ready and p.ip})

    def serving(self, side: Side, *, routed: bool) -> int:
        """Pods of `side`'s version listed as serving by the Services carrying its traffic.

        The user's Service in "services" mode always counts: clients may reach it without
        our routes, and promotion repoints it, which is what drains the old pods. Every
        other Service counts while `routed` (our routes send it traffic or testers).
        """
        stable, canary = self.deployments()
        dep = stable if side == "stable" else canary
        if not dep.exists:
            return 0
        services = []
        if routed or (self.mode == "services" and side == "stable"):
            services.append(self.service_of(side))
        if self.mode == "services" and side == "canary":
            services.append(self.service_of("stable"))  # selects the canary once repointed
        return workloads.count_serving(self.client, services, dep.namespace, dep.selector)

    def stable_service_serves_canary(self) -> bool:
        """True when the user's Service selects only the canary version (after repointing)."""
        if self.mode != "services":
            return False
        selector = self._selector(self.stable_service, self.namespace)
        stable, canary = self.deployments()
        return (
            selector is not None
            and selects(selector, canary.pod_labels)
            and not (stable.exists and selects(selector, stable.pod_labels))
        )

    # --- promotion and cleanup -----------------------------------------------------

    def repoint(self, *, dry_run: bool = False) -> tuple[list[Change], bool]:
        """Point the user's Service at the canary version (services mode).

        Returns the changes and whether its ready endpoints are now canary pods only, so
        the router may remove the canary's own route.
        """
        if self.mode != "services":
            return [], True
        stable, canary = self.deployments()

        def plan(obj: Obj) -> tuple[list[Obj], list[Change]]:
            selector = dict(obj["spec"].get("selector") or {})
            moved = {
                k: canary.pod_labels[k]
                for k, v in selector.items()
                if k in canary.pod_labels and canary.pod_labels[k] != v
            }
            ops: list[Obj] = []
            for key, value in moved.items():
                path = pointer("spec", "selector", key)
                ops += [
                    {"op": "test", "path": path, "value": selector[key]},
                    {"op": "replace", "path": path, "value": value},
                ]
            detail = f"selector repointed to the new version: {moved}"
            return ops, [Change("patch", f"service/{self.stable_service}", detail)] if ops else []

        changes = _patch.patch(
            self.client, Service, self.stable_service, self.namespace, plan, dry_run=dry_run
        )
        ips = workloads.ready_endpoint_ips(self.client, self.stable_service, self.namespace)
        old = {p.ip for p in stable.pods if p.ip}
        return changes, bool(ips) and not ips & old

    def retire_stable(self, on_promotion: OnPromotion, *, dry_run: bool = False) -> list[Change]:
        """Delete the old stable Deployment, or scale it to zero (idempotent)."""
        stable = workloads.read_deployment(self.client, self.stable, self.namespace)
        ref = f"deployment/{self.stable}"
        if not stable.exists:
            return []
        if on_promotion == "scale-to-zero":
            if stable.desired_replicas == 0:
                return []
            if not dry_run:
                workloads.scale(self.client, self.stable, self.namespace, 0)
            return [Change("scale", ref, f"{stable.desired_replicas} -> 0 (promotion complete)")]
        if not dry_run:
            workloads.delete_deployment(self.client, self.stable, self.namespace)
        return [Change("delete", ref, "promotion complete")]

    def cleanup(self, *, dry_run: bool = False) -> list[Change]:
        """Remove the canary Service canaryctl created and undo the narrowing of the user's."""
        if self.mode != "services":
            return []
        changes: list[Change] = []
        existing = _patch.read(self.client, Service, self.canary_service, self.namespace)
        if existing is not None and _patch.is_managed(existing, self.canary_name):
            why = "created by canaryctl for the rollout"
            changes += _patch.delete(
                self.client, Service, self.canary_service, self.namespace, why, dry_run=dry_run
            )

        def plan(obj: Obj) -> tuple[list[Obj], list[Change]]:
            annotations = obj["metadata"].get("annotations") or {}
            if SELECTOR_ADDED not in annotations:
                return [], []
            selector = obj["spec"].get("selector") or {}
            keys = [k for k in annotations[SELECTOR_ADDED].split(",") if k in selector]
            ops = [{"op": "remove", "path": pointer("spec", "selector", k)} for k in keys]
            ops.append({"op": "remove", "path": pointer("metadata", "annotations", SELECTOR_ADDED)})
            detail = f"selector keys canaryctl added removed again: {keys}"
            return ops, [Change("patch", f"service/{self.stable_service}", detail)]

        if workloads.read_service(self.client, self.stable_service, self.namespace) is not None:
            changes += _patch.patch(
                self.client, Service, self.stable_service, self.namespace, plan, dry_run=dry_run
            )
        return changes


def _distinguishing(stable: DeploymentInfo, canary: DeploymentInfo) -> list[str]:
    """Keys of the stable selector whose value the canary pods carry differently."""
    return sorted(
        k
        for k, v in stable.selector.items()
        if k in canary.pod_labels and canary.pod_labels[k] != v
    )


def _set_annotation(obj: Obj, key: str, value: str) -> list[Obj]:
    """JSON patch operations setting one annotation, creating the map when absent."""
    annotations = obj["metadata"].get("annotations")
    if annotations is None:
        return [{"op": "add", "path": "/metadata/annotations", "value": {key: value}}]
    return [{"op": "add", "path": pointer("metadata", "annotations", key), "value": value}]

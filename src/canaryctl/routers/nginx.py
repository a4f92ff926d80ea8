"""NGINX ingress: a canary Ingress beside the user's primary one, weighted by annotations.

canaryctl creates `<ingress>-canary` with the primary's class, TLS, and the hosts and paths
that lead to the stable Service, pointing at the canary Service instead, and annotated
`nginx.ingress.kubernetes.io/canary: "true"` and `canary-weight`. Header and cookie
routes are the `canary-by-header[-value]` and `canary-by-cookie` annotations. The
primary Ingress is never written. Promotion repoints the primary's Service at the new
version and deletes the canary Ingress; a rollback sets the weight to 0 and cleanup then
deletes the canary Ingress.
"""

from __future__ import annotations

from lightkube import Client
from lightkube.resources.networking_v1 import Ingress

from canaryctl.core.models import OnPromotion
from canaryctl.errors import SpecError
from canaryctl.routers import _patch
from canaryctl.routers._patch import Obj, pointer
from canaryctl.routers._services import Backends, Side
from canaryctl.routers.base import Change

PREFIX = "nginx.ingress.kubernetes.io/"
CANARY = PREFIX + "canary"
WEIGHT = PREFIX + "canary-weight"
BY_HEADER = PREFIX + "canary-by-header"
BY_HEADER_VALUE = PREFIX + "canary-by-header-value"
BY_COOKIE = PREFIX + "canary-by-cookie"
#: The canary annotations canaryctl manages on the canary Ingress.
CANARY_KEYS = (CANARY, WEIGHT, BY_HEADER, BY_HEADER_VALUE, BY_COOKIE)
#: Prefixes of primary annotations NGINX reads on a canary Ingress (it inherits the rest).
INHERITED = ("load-balance", "upstream-hash-by", "affinity", "session-cookie-")
CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def _routes_to(backend: Obj | None, service: str) -> bool:
    return bool(backend) and (backend.get("service") or {}).get("name") == service


def _retarget(backend: Obj, service: str) -> Obj:
    return {"service": {"name": service, "port": backend["service"]["port"]}}


def _routes_to_service(ingress: Obj, service: str) -> bool:
    spec = ingress.get("spec") or {}
    return _routes_to(spec.get("defaultBackend"), service) or any(
        _routes_to(path.get("backend"), service)
        for rule in spec.get("rules") or []
        for path in (rule.get("http") or {}).get("paths") or []
    )


def canary_spec(primary: Obj, stable_service: str, canary_service: str) -> Obj:
    """The canary Ingress spec: the primary's routes to the stable Service, retargeted."""
    spec = primary.get("spec") or {}
    out: Obj = {}
    if spec.get("ingressClassName"):
        out["ingressClassName"] = spec["ingressClassName"]
    if _routes_to(spec.get("defaultBackend"), stable_service):
        out["defaultBackend"] = _retarget(spec["defaultBackend"], canary_service)
    rules = []
    for rule in spec.get("rules") or []:
        paths = [
            {**path, "backend": _retarget(path["backend"], canary_service)}
            for path in (rule.get("http") or {}).get("paths") or []
            if _routes_to(path.get("backend"), stable_service)
        ]
        if paths:
            rules.append(
                {**{k: v for k, v in rule.items() if k != "http"}, "http": {"paths": paths}}
            )
    if rules:
        out["rules"] = rules
    if spec.get("tls"):
        out["tls"] = spec["tls"]
    return out


def _inherited(primary: Obj) -> dict[str, str]:
    annotations = primary["metadata"].get("annotations") or {}
    return {
        k: v
        for k, v in annotations.items()
        if k == CLASS_ANNOTATION
        or (k.startswith(PREFIX) and k[len(PREFIX) :].startswith(INHERITED))
    }


class NginxRouter:
    """Router for ingress-nginx canary annotations."""

    kind = "nginx"

    def __init__(
        self,
        client: Client,
        *,
        name: str,
        namespace: str,
        ingress: str,
        service: str,
        stable: str,
        canary: str,
        header: dict[str, str] | None = None,
        cookie: str | None = None,
        on_promotion: OnPromotion = "delete",
    ) -> None:
        if header is not None and len(header) > 1:
            raise SpecError("router.header", "the nginx router matches a single header")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.ingress = ingress
        self.canary_ingress = f"{ingress}-canary"
        self.header = header
        self.cookie = cookie
        self.on_promotion = on_promotion
        self.backends = Backends(
            client,
            canary_name=name,
            namespace=namespace,
            service=service,
            stable=stable,
            canary=canary,
        )

    # --- reading ---------------------------------------------------------------

    def _primary(self) -> Obj:
        primary = _patch.read(self.client, Ingress, self.ingress, self.namespace)
        if primary is None:
            raise SpecError(
                "router.ingress", f"ingress/{self.ingress} not found in {self.namespace}"
            )
        return primary

    def _canary(self) -> Obj | None:
        return _patch.read(self.client, Ingress, self.canary_ingress, self.namespace)

    def _promoted(self) -> bool:
        return self._canary() is None and self.backends.stable_service_serves_canary()

    # --- the Router interface ------------------------------------------------------

    def reconcile(self) -> list[Change]:
        """Check the primary Ingress, Services and Deployments; change nothing.

        Returns the objects the first `set_weight` creates or patches (the canary Ingress
        and Service, the narrowed stable Service), so plans can show them.
        """
        primary = self._primary()
        stable_service = self.backends.stable_service
        if not _routes_to_service(primary, stable_service):
            raise SpecError(
                "router.ingress",
                f"ingress/{self.ingress} routes no path to service/{stable_service}; the "
                "canary Ingress copies the primary's routes to the stable Service",
            )
        existing = self._canary()
        if existing is not None and not _patch.is_managed(existing, self.name):
            raise SpecError(
                "router.ingress",
                f"ingress/{self.canary_ingress} exists and was not created by canaryctl for "
                f"{self.name}; NGINX allows one canary Ingress per route: delete or rename it",
            )
        self.backends.validate()
        return self.backends.ensure(dry_run=True) + self._write(0, routes=False, dry_run=True)

    def set_weight(
        self, weight: int, *, replicas: tuple[int, int] | None = None, dry_run: bool = False
    ) -> list[Change]:
        """Set `canary-weight`; header/cookie routes only while the canary has capacity.

        A canary without ready endpoints gets weight 0 whatever is asked (so weight goes
        back to the stable if its pods vanish mid-rollout); nothing changes while the
        stable has none either. `replicas` with 0 canary replicas means the engine is
        withdrawing the canary: its header and cookie routes go too.
        """
        changes = self.backends.ensure(dry_run=dry_run)
        if weight == 100 and self._promoted():
            return changes
        if not dry_run and weight and not self._has_capacity(weight):
            # No weight on a canary without ready endpoints (proxies answer 503 for that
            # share): the stable carries everything until the health gates decide.
            weight = 0
        if not dry_run and not self._has_capacity(weight):
            return changes
        withdrawn = replicas is not None and replicas[1] == 0
        routes = not withdrawn and (dry_run or self.backends.ready("canary"))
        return changes + self._write(weight, routes=routes, dry_run=dry_run)

    def get_weight(self) -> float | None:
        """The canary Ingress's stored `canary-weight` (100 once promoted, 0 without one)."""
        canary = self._canary()
        if canary is None:
            return 100.0 if self.backends.stable_service_serves_canary() else 0.0
        value = (canary["metadata"].get("annotations") or {}).get(WEIGHT)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def serving(self, side: Side) -> int:
        """Pods of `side` the Services behind the primary or canary Ingress list as serving.

        The canary Service counts while the canary Ingress sends it weight or testers.
        """
        routed = True
        if side == "canary":
            canary = self._canary()
            annotations = (canary or {}).get("metadata", {}).get("annotations") or {}
            routed = canary is not None and (
                annotations.get(WEIGHT, "0") != "0"
                or BY_HEADER in annotations
                or BY_COOKIE in annotations
            )
        return self.backends.serving(side, routed=routed)

    def promote(self, *, retire: bool = True, dry_run: bool = False) -> list[Change]:
        """Repoint the primary's Service at the new version, drop the canary Ingress, and
        (with `retire`) remove the old version."""
        changes, serves_canary = self.backends.repoint(dry_run=dry_run)
        if not serves_canary and not dry_run:
            return changes  # endpoints still list old pods: next tick
        changes += self._delete_canary(
            "promotion: the primary Ingress serves the new version", dry_run
        )
        if not retire:
            return changes
        return changes + self.backends.retire_stable(self.on_promotion, dry_run=dry_run)

    def cleanup(self, *, dry_run: bool = False) -> list[Change]:
        """Delete the canary Ingress and Service canaryctl created; undo selector narrowing."""
        changes = self._delete_canary("rollout finished", dry_run)
        return changes + self.backends.cleanup(dry_run=dry_run)

    # --- writing ---------------------------------------------------------------

    def _has_capacity(self, weight: int) -> bool:
        return (weight == 0 or self.backends.ready("canary")) and (
            weight == 100 or self.backends.ready("stable")
        )

    def _annotations(self, primary: Obj, weight: int, routes: bool) -> dict[str, str]:
        wanted = {**_inherited(primary), CANARY: "true", WEIGHT: str(weight)}
        if routes and self.header:
            ((name, value),) = self.header.items()
            wanted[BY_HEADER], wanted[BY_HEADER_VALUE] = name, value
        if routes and self.cookie:
            wanted[BY_COOKIE] = self.cookie
        return wanted

    def _write(self, weight: int, *, routes: bool, dry_run: bool) -> list[Change]:
        """Create the canary Ingress, or patch its spec and annotations to what they should be."""
        primary = self._primary()
        spec = canary_spec(primary, self.backends.stable_service, self.backends.canary_service)
        annotations = self._annotations(primary, weight, routes)
        if self._canary() is None:
            metadata = {
                "name": self.canary_ingress,
                "namespace": self.namespace,
                "labels": _patch.managed_labels(self.name),
                "annotations": annotations,
            }
            if not dry_run:
                metadata["ownerReferences"] = [o.to_dict() for o in self.backends.owner()]
            body = Ingress.from_dict({"metadata": metadata, "spec": spec})
            why = f"canary of ingress/{self.ingress} at weight {weight}"
            return _patch.create(self.client, body, why, dry_run=dry_run)
        owned = set(CANARY_KEYS) | set(annotations)

        def plan(obj: Obj) -> tuple[list[Obj], list[Change]]:
            ref = f"ingress/{self.canary_ingress}"
            current = obj["metadata"].get("annotations") or {}
            ops: list[Obj] = []
            changes: list[Change] = []
            if obj.get("spec") != spec:
                ops.append({"op": "replace", "path": "/spec", "value": spec})
                changes.append(Change("patch", ref, f"routes follow ingress/{self.ingress}"))
            if not current:
                ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
            # Inherited keys the primary no longer has are dropped too.
            for key in sorted(owned | set(_inherited(obj))):
                old, new = current.get(key), annotations.get(key)
                if old == new:
                    continue
                path = pointer("metadata", "annotations", key)
                if new is None:
                    ops.append({"op": "remove", "path": path})
                else:
                    ops.append({"op": "add", "path": path, "value": new})
                changes.append(Change("patch", ref, f"{key}: {old} -> {new}"))
            return (ops, changes) if changes else ([], [])

        return _patch.patch(
            self.client, Ingress, self.canary_ingress, self.namespace, plan, dry_run=dry_run
        )

    def _delete_canary(self, why: str, dry_run: bool) -> list[Change]:
        existing = self._canary()
        if existing is None or not _patch.is_managed(existing, self.name):
            return []
        return _patch.delete(
            self.client, Ingress, self.canary_ingress, self.namespace, why, dry_run=dry_run
        )

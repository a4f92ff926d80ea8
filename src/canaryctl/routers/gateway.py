"""Gateway API: weights of HTTPRoute backendRefs, and header-matched rules for testers.

canaryctl owns the rules of the user's HTTPRoute whose backendRefs lead to the stable
Service (or already to the canary), and only their backendRefs. For testers it adds one
rule per owned rule (same matches plus the header or cookie, named `canaryctl-<canary>[-k]`)
placed just before it; the Gateway API prefers the rule with more header matches, so
the tester rule wins for matching requests. Everything else on the route is left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from lightkube import Client
from lightkube.core.exceptions import ApiError

from canaryctl.core.models import OnPromotion
from canaryctl.errors import ClusterError, SpecError
from canaryctl.kube.workloads import api_message
from canaryctl.routers import _patch
from canaryctl.routers._patch import HTTPRoute, Obj, ReferenceGrant, cookie_regex
from canaryctl.routers._services import Backends, Side
from canaryctl.routers.base import Change

GROUP = "gateway.networking.k8s.io"
#: The API's default backendRef weight, which a lone backendRef is left with.
DEFAULT_WEIGHT = 1

Final = Literal["promoted", "finished"]


@dataclass(frozen=True)
class _Want:
    """What the owned rules should look like: a split, or a final single backend."""

    weight: int = 0
    routes: bool = False  # header/cookie rules on
    final: Final | None = None


def _weight(ref: Obj) -> int:
    return int(ref.get("weight", DEFAULT_WEIGHT))


class GatewayRouter:
    """Router for Gateway API HTTPRoute weights and header matches."""

    kind = "gateway"

    def __init__(
        self,
        client: Client,
        *,
        name: str,
        namespace: str,
        httproute: str,
        service: str,
        stable: str,
        canary: str,
        canary_namespace: str | None = None,
        header: dict[str, str] | None = None,
        cookie: str | None = None,
        on_promotion: OnPromotion = "delete",
    ) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.httproute = httproute
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
            canary_namespace=canary_namespace,
        )

    # --- backends ----------------------------------------------------------------

    def _is(self, side: Side, ref: Obj) -> bool:
        service, namespace = self.backends.service_of(side)
        return (
            ref.get("group", "") == ""
            and ref.get("kind", "Service") == "Service"
            and ref.get("name") == service
            and ref.get("namespace", self.namespace) == namespace
        )

    def _ref(self, side: Side, like: Obj) -> Obj:
        """A backendRef to `side`'s Service on `like`'s port (both Services share ports)."""
        service, namespace = self.backends.service_of(side)
        ref: Obj = {"group": "", "kind": "Service", "name": service}
        if namespace != self.namespace:
            ref["namespace"] = namespace
        if "port" in like:
            ref["port"] = like["port"]
        return ref

    def _owned(self, rule: Obj) -> bool:
        return not self._is_header_rule(rule) and any(
            self._is("stable", r) or self._is("canary", r) for r in rule.get("backendRefs") or []
        )

    def _is_header_rule(self, rule: Obj) -> bool:
        """True for the tester rules canaryctl adds: `canaryctl-<canary>` and `...-<k>`."""
        return (
            re.fullmatch(rf"canaryctl-{re.escape(self.name)}(-\d+)?", rule.get("name") or "")
            is not None
        )

    # --- reading -------------------------------------------------------------------

    def _read(self) -> Obj:
        route = _patch.read(self.client, HTTPRoute, self.httproute, self.namespace)
        if route is None:
            raise SpecError(
                "router.httproute", f"httproute/{self.httproute} not found in {self.namespace}"
            )
        return route

    def _check(self, route: Obj) -> None:
        """SpecError unless some rule leads to the stable Service, and only to our two."""
        field, ref = "router.httproute", f"httproute/{self.httproute}"
        rules = (route.get("spec") or {}).get("rules") or []
        owned = [r for r in rules if self._owned(r)]
        service = self.backends.stable_service
        if not owned:
            raise SpecError(
                field,
                f"{ref} has no rule with a backendRef to service/{service}; canaryctl splits "
                "the rules that lead to the stable Service",
            )
        for rule in owned:
            for backend in rule.get("backendRefs") or []:
                if not (self._is("stable", backend) or self._is("canary", backend)):
                    raise SpecError(
                        field,
                        f"rule {rule.get('name') or rules.index(rule)} of {ref} also sends "
                        f"traffic to {backend.get('kind', 'Service').lower()}/"
                        f"{backend.get('name')}; canaryctl only splits rules between the "
                        "stable and canary Services",
                    )

    def _check_grant(self) -> None:
        """A cross-namespace backendRef needs a ReferenceGrant in the canary's namespace."""
        service, namespace = self.backends.service_of("canary")
        if namespace == self.namespace:
            return
        try:
            grants = [g.to_dict() for g in self.client.list(ReferenceGrant, namespace=namespace)]
        except ApiError as exc:
            raise ClusterError(
                f"listing ReferenceGrants in {namespace}: {api_message(exc)}"
            ) from exc
        for grant in grants:
            spec = grant.get("spec") or {}
            allowed_from = any(
                f.get("group") == GROUP
                and f.get("kind") == "HTTPRoute"
                and f.get("namespace") == self.namespace
                for f in spec.get("from") or []
            )
            allowed_to = any(
                t.get("group") == ""
                and t.get("kind") == "Service"
                and t.get("name") in (None, service)
                for t in spec.get("to") or []
            )
            if allowed_from and allowed_to:
                return
        raise SpecError(
            "canaryNamespace",
            f"no ReferenceGrant in {namespace} lets HTTPRoutes of {self.namespace} reference "
            f"service/{service}; create one (from: HTTPRoute in {self.namespace}, to: Service)",
        )

    # --- the Router interface ------------------------------------------------------

    def reconcile(self) -> list[Change]:
        """Validate the HTTPRoute, Services and Deployments.

        Changes nothing; returns what the first `set_weight` creates or patches.
        """
        self.backends.validate()
        self._check(self._read())
        self._check_grant()
        return self.backends.ensure(dry_run=True)

    def set_weight(
        self, weight: int, *, replicas: tuple[int, int] | None = None, dry_run: bool = False
    ) -> list[Change]:
        """Split the owned rules `100 - weight` / `weight`, capacity permitting.

        A canary without ready endpoints gets weight 0 whatever is asked (proxies answer
        503 for a share whose backend has no endpoints); nothing changes while the stable
        has none either. Tester rules exist only while the canary has ready endpoints
        and the engine wants it to have replicas.
        """
        changes = self.backends.ensure(dry_run=dry_run)
        if weight == 100 and self._promoted():
            return changes  # a lone backend already serves the new version
        if not dry_run and weight and not self._has_capacity(weight):
            # No weight on a canary without ready endpoints (proxies answer 503 for that
            # share): the stable carries everything until the health gates decide.
            weight = 0
        if not dry_run and not self._has_capacity(weight):
            return changes
        withdrawn = replicas is not None and replicas[1] == 0
        routes = not withdrawn and (dry_run or self.backends.ready("canary"))
        return changes + self._write(_Want(weight=weight, routes=routes), dry_run)

    def get_weight(self) -> float | None:
        """The canary's share of the first owned rule's backend weights (None if unreadable)."""
        route = _patch.read(self.client, HTTPRoute, self.httproute, self.namespace)
        return None if route is None else self._share(route)

    def serving(self, side: Side) -> int:
        """Pods of `side` listed as serving by the Services the HTTPRoute sends weight to."""
        route = _patch.read(self.client, HTTPRoute, self.httproute, self.namespace) or {}
        rules = (route.get("spec") or {}).get("rules") or []
        routed = any(
            (side == "canary" and self._is_header_rule(rule))
            or (
                self._owned(rule)
                and any(self._is(side, r) and _weight(r) > 0 for r in rule.get("backendRefs") or [])
            )
            for rule in rules
        )
        return self.backends.serving(side, routed=routed)

    def promote(self, *, retire: bool = True, dry_run: bool = False) -> list[Change]:
        """Leave one backend serving the new version, drop tester rules, and (with
        `retire`) remove the old version."""
        changes, serves_canary = self.backends.repoint(dry_run=dry_run)
        if not serves_canary and not dry_run:
            return changes  # the stable Service's endpoints still list old pods
        changes += self._write(_Want(weight=100, final="promoted"), dry_run)
        if not retire:
            return changes
        return changes + self.backends.retire_stable(self.on_promotion, dry_run=dry_run)

    def cleanup(self, *, dry_run: bool = False) -> list[Change]:
        """Owned rules back to one backend, tester rules gone, created objects removed."""
        changes = self._write(_Want(final="finished"), dry_run)
        return changes + self.backends.cleanup(dry_run=dry_run)

    # --- writing ---------------------------------------------------------------

    def _share(self, route: Obj) -> float | None:
        owned = [r for r in (route.get("spec") or {}).get("rules") or [] if self._owned(r)]
        if not owned:
            return None
        refs = owned[0].get("backendRefs") or []
        canary = [r for r in refs if self._is("canary", r)]
        if not canary:
            # A lone stable backend serves the new version once its Service is repointed.
            return 100.0 if self.backends.stable_service_serves_canary() else 0.0
        total = sum(_weight(r) for r in refs)
        return 100.0 * sum(_weight(r) for r in canary) / total if total else None

    def _promoted(self) -> bool:
        route = self._read()
        rules = (route.get("spec") or {}).get("rules") or []
        lone = all(len(r.get("backendRefs") or []) == 1 for r in rules if self._owned(r))
        return lone and self._share(route) == 100.0

    def _has_capacity(self, weight: int) -> bool:
        return (weight == 0 or self.backends.ready("canary")) and (
            weight == 100 or self.backends.ready("stable")
        )

    def _write(self, want: _Want, dry_run: bool) -> list[Change]:
        ref = f"httproute/{self.httproute}"

        def plan(route: Obj) -> tuple[list[Obj], list[Change]]:
            self._check(route)
            old = route["spec"]["rules"]
            new: list[Obj] = []
            changes: list[Change] = []
            for rule in old:
                if self._is_header_rule(rule):
                    continue  # rebuilt beside its owned rule when wanted
                if not self._owned(rule):
                    new.append(rule)
                    continue
                k = sum(1 for r in new if self._owned(r))
                updated = self._rule(rule, want)
                if want.routes and want.final is None and (self.header or self.cookie):
                    new.append(self._header_rule(updated, k))
                new.append(updated)
                if updated["backendRefs"] != rule.get("backendRefs"):
                    changes.append(Change("patch", ref, _describe(rule, updated, k)))
            ops = _patch.list_ops(("spec", "rules"), old, new)
            added = len(new) - len(old)
            if added:
                verb = "added" if added > 0 else "removed"
                changes.append(Change("patch", ref, f"tester rules {verb}: {abs(added)}"))
            return ops, changes

        return _patch.patch(
            self.client, HTTPRoute, self.httproute, self.namespace, plan, dry_run=dry_run
        )

    def _rule(self, rule: Obj, want: _Want) -> Obj:
        """The owned rule with its backendRefs as `want` says."""
        refs = rule.get("backendRefs") or []
        stable = [r for r in refs if self._is("stable", r)]
        canary = [r for r in refs if self._is("canary", r)]
        like = (stable or canary)[0]
        stable_ref = stable[0] if stable else self._ref("stable", like)
        canary_ref = canary[0] if canary else self._ref("canary", like)
        if want.final is None:
            backends = [
                {**stable_ref, "weight": 100 - want.weight},
                {**canary_ref, "weight": want.weight},
            ]
        else:
            promoted_to_canary = want.final == "promoted" and self.backends.mode != "services"
            finished_on_canary = want.final == "finished" and canary and not stable
            lone = canary_ref if promoted_to_canary or finished_on_canary else stable_ref
            backends = [{**lone, "weight": DEFAULT_WEIGHT}]
        return {**rule, "backendRefs": backends}

    def _header_rule(self, owned: Obj, k: int) -> Obj:
        """A rule for testers: the owned rule's matches plus the header/cookie, to canary."""
        extra: list[list[dict[str, Any]]] = []
        if self.header:
            extra.append([{"type": "Exact", "name": n, "value": v} for n, v in self.header.items()])
        if self.cookie:
            extra.append(
                [
                    {
                        "type": "RegularExpression",
                        "name": "Cookie",
                        "value": cookie_regex(self.cookie),
                    }
                ]
            )
        canary = next(r for r in owned["backendRefs"] if self._is("canary", r))
        rest = {key: v for key, v in owned.items() if key not in ("name", "matches", "backendRefs")}
        return {
            "name": f"canaryctl-{self.name}" + (f"-{k}" if k else ""),
            "matches": [
                {**m, "headers": [*(m.get("headers") or []), *e]}
                for e in extra
                for m in owned.get("matches") or [{}]
            ],
            "backendRefs": [{**canary, "weight": DEFAULT_WEIGHT}],
            **rest,
        }


def _describe(old: Obj, new: Obj, k: int) -> str:
    def show(rule: Obj) -> str:
        return ", ".join(f"{r.get('name')}={_weight(r)}" for r in rule.get("backendRefs") or [])

    return f"rule {old.get('name') or k}: {show(old)} -> {show(new)}"

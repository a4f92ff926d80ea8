"""Istio: weights on the VirtualService routes that lead to the stable version.

canaryctl owns the HTTP routes of the user's VirtualService that send traffic to the
stable destination (or already to the canary), and only their `route` destinations and
weights (plus `mirror`/`mirrorPercentage` when mirroring is on). It adds one route per
owned route for testers (header or cookie match, named `canaryctl-<canary>[-k]`), placed
just before it. Every other route, field and annotation is left as it was.

Destinations: DestinationRule subsets of one Service selecting both versions (the seed's
Istio example), two Services in one namespace (`<service>` and `<service>-canary`), or
two Services in two namespaces addressed by FQDN (the Istio + Helm example).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from lightkube import Client

from canaryctl.core.models import OnPromotion
from canaryctl.errors import RouterError, SpecError
from canaryctl.routers import _patch
from canaryctl.routers._patch import DestinationRule, Obj, VirtualService, cookie_regex
from canaryctl.routers._services import Backends, Side, fqdn, names_service, selects
from canaryctl.routers.base import Change

#: Route fields the header route does not copy from the route it shadows.
_NOT_COPIED = ("name", "match", "route", "mirror", "mirrorPercentage", "mirrorPercent", "mirrors")

Final = Literal["promoted", "finished"]
#: (stable, canary) DestinationRule subset names; None for a version that is gone.
Subsets = tuple[str | None, str | None]


@dataclass(frozen=True)
class _Want:
    """What the owned routes should look like: a split, or a final single destination."""

    weight: int = 0
    routes: bool = False  # header/cookie routes and mirroring on
    final: Final | None = None


class IstioRouter:
    """Router for Istio VirtualService weights, header routes and mirroring."""

    kind = "istio"

    def __init__(
        self,
        client: Client,
        *,
        name: str,
        namespace: str,
        virtual_service: str,
        service: str,
        stable: str,
        canary: str,
        canary_namespace: str | None = None,
        destination_rule: str | None = None,
        header: dict[str, str] | None = None,
        cookie: str | None = None,
        mirror_percent: float | None = None,
        on_promotion: OnPromotion = "delete",
    ) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.virtual_service = virtual_service
        self.destination_rule = destination_rule
        self.header = header
        self.cookie = cookie
        self.mirror_percent = mirror_percent
        self.on_promotion = on_promotion
        self.backends = Backends(
            client,
            canary_name=name,
            namespace=namespace,
            service=service,
            stable=stable,
            canary=canary,
            canary_namespace=canary_namespace,
            subsets=destination_rule is not None,
        )

    # --- destinations ----------------------------------------------------------------

    def _subsets(self) -> Subsets | None:
        """(stable, canary) subset names from the DestinationRule; None without one.

        A side whose Deployment is gone (the old stable after promotion) has no subset.
        """
        if self.destination_rule is None:
            return None
        field = "router.destinationRule"
        ref = f"destinationrule/{self.destination_rule}"
        rule = _patch.read(self.client, DestinationRule, self.destination_rule, self.namespace)
        if rule is None:
            raise SpecError(field, f"{ref} not found in {self.namespace}")
        host = (rule.get("spec") or {}).get("host", "")
        service = self.backends.stable_service
        if not names_service(host, service, self.namespace, self.namespace):
            raise SpecError(field, f"{ref} is for host {host!r}, not service/{service}")
        stable, canary = self.backends.deployments()
        found: list[str | None] = []
        for role, mine, other in (("stable", stable, canary), ("canary", canary, stable)):
            names = [
                s["name"]
                for s in (rule["spec"].get("subsets") or [])
                if selects(s.get("labels") or {}, mine.pod_labels)
                and not selects(s.get("labels") or {}, other.pod_labels)
            ]
            if mine.exists and not names:
                raise SpecError(
                    field,
                    f"{ref} has no subset selecting only the {role} pods of deployment/"
                    f"{mine.name} (pod labels {mine.pod_labels}); add one, e.g. by version",
                )
            found.append(names[0] if names else None)
        return found[0], found[1]

    def _is(self, side: Side, dest: Obj, subsets: Subsets | None) -> bool:
        # With subsets both versions sit behind the one (stable) Service.
        service, namespace = self.backends.service_of("stable" if subsets else side)
        if not names_service(dest.get("host", ""), service, namespace, self.namespace):
            return False
        if subsets is None:
            return not dest.get("subset")
        subset = subsets[0 if side == "stable" else 1]
        return subset is not None and dest.get("subset") == subset

    def _dest(self, side: Side, like: Obj, subsets: Subsets | None) -> Obj:
        """A destination for `side`, keeping `like`'s port (both Services share ports)."""
        port = {"port": like["port"]} if "port" in like else {}
        if subsets is not None:
            subset = subsets[0 if side == "stable" else 1]
            if subset is None:
                raise RouterError(f"no DestinationRule subset left for the {side} version")
            return {**like, "subset": subset}
        service, namespace = self.backends.service_of(side)
        return {"host": fqdn(service, namespace), **port}

    def _owned(self, route: Obj, subsets: Subsets | None) -> bool:
        return not self._is_header_route(route) and any(
            self._is("stable", e.get("destination") or {}, subsets)
            or self._is("canary", e.get("destination") or {}, subsets)
            for e in route.get("route") or []
        )

    def _is_header_route(self, route: Obj) -> bool:
        """True for the tester routes canaryctl adds: `canaryctl-<canary>` and `...-<k>`."""
        return (
            re.fullmatch(rf"canaryctl-{re.escape(self.name)}(-\d+)?", route.get("name") or "")
            is not None
        )

    # --- reading -------------------------------------------------------------------

    def _read(self) -> Obj:
        vs = _patch.read(self.client, VirtualService, self.virtual_service, self.namespace)
        if vs is None:
            raise SpecError(
                "router.virtualService",
                f"virtualservice/{self.virtual_service} not found in {self.namespace}",
            )
        return vs

    def _check(self, vs: Obj, subsets: Subsets | None) -> None:
        """SpecError unless some route leads to the stable destination and only to ours."""
        field, ref = "router.virtualService", f"virtualservice/{self.virtual_service}"
        http = (vs.get("spec") or {}).get("http") or []
        owned = [r for r in http if self._owned(r, subsets)]
        stable = self.backends.stable_service
        if not owned:
            where = f" subset {subsets[0]}" if subsets else ""
            raise SpecError(
                field,
                f"{ref} has no http route to host {stable}{where} (as {stable}, "
                f"{stable}.{self.namespace} or {fqdn(stable, self.namespace)}); canaryctl "
                "splits the routes that lead to the stable version",
            )
        for route in owned:
            for entry in route.get("route") or []:
                dest = entry.get("destination") or {}
                if not (self._is("stable", dest, subsets) or self._is("canary", dest, subsets)):
                    raise SpecError(
                        field,
                        f"route {route.get('name') or http.index(route)} of {ref} also sends "
                        f"traffic to {dest.get('host')} {dest.get('subset') or ''}; canaryctl "
                        "only splits routes between the stable and canary destinations",
                    )

    # --- the Router interface ------------------------------------------------------

    def reconcile(self) -> list[Change]:
        """Validate the VirtualService, DestinationRule, Services and Deployments.

        Changes nothing; returns what the first `set_weight` creates or patches.
        """
        if self.destination_rule is not None and self.backends.canary_namespace != self.namespace:
            raise SpecError(
                "router.destinationRule",
                "DestinationRule subsets cannot reach a canary in another namespace; leave "
                "destinationRule out to route to the two Services by FQDN",
            )
        self.backends.validate()
        self._check(self._read(), self._subsets())
        return self.backends.ensure(dry_run=True)

    def set_weight(
        self, weight: int, *, replicas: tuple[int, int] | None = None, dry_run: bool = False
    ) -> list[Change]:
        """Split the owned routes `100 - weight` / `weight`, capacity permitting.

        A canary without ready endpoints gets weight 0 whatever is asked; nothing changes
        while the stable has none either. Header routes and mirroring exist only while
        the canary has ready endpoints and the engine wants it to have replicas.
        """
        changes = self.backends.ensure(dry_run=dry_run)
        if weight == 100 and self._promoted():
            return changes  # a lone destination already serves the new version
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
        """The canary weight stored on the first owned route (None if unreadable)."""
        vs = _patch.read(self.client, VirtualService, self.virtual_service, self.namespace)
        if vs is None:
            return None
        return self._weight(vs, self._subsets())

    def _weight(self, vs: Obj, subsets: Subsets | None) -> float | None:
        owned = [r for r in (vs.get("spec") or {}).get("http") or [] if self._owned(r, subsets)]
        if not owned:
            return None
        entries = owned[0].get("route") or []
        canary = [e for e in entries if self._is("canary", e.get("destination") or {}, subsets)]
        if not canary:
            # A lone stable destination serves the new version once its Service is repointed.
            return 100.0 if self.backends.stable_service_serves_canary() else 0.0
        if len(entries) == 1:
            return 100.0
        return float(sum(e.get("weight", 0) for e in canary))

    def serving(self, side: Side) -> int:
        """Pods of `side` listed as serving by the Services the VirtualService routes to."""
        vs = _patch.read(self.client, VirtualService, self.virtual_service, self.namespace) or {}
        subsets = self._subsets()
        routed = False
        for route in (vs.get("spec") or {}).get("http") or []:
            if self._is_header_route(route):
                routed |= side == "canary"
            elif self._owned(route, subsets):
                entries = route.get("route") or []
                routed |= any(
                    self._is(side, e.get("destination") or {}, subsets)
                    and (len(entries) == 1 or e.get("weight", 0) > 0)
                    for e in entries
                )
                mirror = route.get("mirror")
                routed |= side == "canary" and bool(mirror) and self._is("canary", mirror, subsets)
        return self.backends.serving(side, routed=routed)

    def promote(self, *, retire: bool = True, dry_run: bool = False) -> list[Change]:
        """Leave one destination serving the new version, drop tester routes, and (with
        `retire`) remove the old version."""
        changes, serves_canary = self.backends.repoint(dry_run=dry_run)
        if not serves_canary and not dry_run:
            return changes  # the stable Service's endpoints still list old pods
        changes += self._write(_Want(weight=100, final="promoted"), dry_run)
        if not retire:
            return changes
        return changes + self.backends.retire_stable(self.on_promotion, dry_run=dry_run)

    def cleanup(self, *, dry_run: bool = False) -> list[Change]:
        """Owned routes back to one destination, tester routes gone, created objects removed."""
        changes = self._write(_Want(final="finished"), dry_run)
        return changes + self.backends.cleanup(dry_run=dry_run)

    # --- writing ---------------------------------------------------------------

    def _has_capacity(self, weight: int) -> bool:
        return (weight == 0 or self.backends.ready("canary")) and (
            weight == 100 or self.backends.ready("stable")
        )

    def _promoted(self) -> bool:
        """True when every owned route has one destination and it serves the new version."""
        vs, subsets = self._read(), self._subsets()
        http = (vs.get("spec") or {}).get("http") or []
        lone = all(len(r.get("route") or []) == 1 for r in http if self._owned(r, subsets))
        return lone and self._weight(vs, subsets) == 100.0

    def _write(self, want: _Want, dry_run: bool) -> list[Change]:
        subsets = self._subsets()
        ref = f"virtualservice/{self.virtual_service}"

        def plan(vs: Obj) -> tuple[list[Obj], list[Change]]:
            self._check(vs, subsets)
            old = vs["spec"]["http"]
            new: list[Obj] = []
            changes: list[Change] = []
            for route in old:
                if self._is_header_route(route):
                    continue  # rebuilt beside its owned route when wanted
                if not self._owned(route, subsets):
                    new.append(route)
                    continue
                k = sum(1 for r in new if self._owned(r, subsets))
                updated = self._route(route, want, subsets)
                if want.routes and want.final is None and (self.header or self.cookie):
                    new.append(self._header_route(updated, k, subsets))
                new.append(updated)
                if updated.get("route") != route.get("route"):
                    changes.append(Change("patch", ref, _describe(route, updated, k)))
            ops = _patch.list_ops(("spec", "http"), old, new)
            added = len(new) - len(old)
            if added:
                verb = "added" if added > 0 else "removed"
                changes.append(Change("patch", ref, f"tester routes {verb}: {abs(added)}"))
            elif ops and not changes:
                changes.append(Change("patch", ref, "tester routes or mirroring updated"))
            return ops, changes

        return _patch.patch(
            self.client, VirtualService, self.virtual_service, self.namespace, plan, dry_run=dry_run
        )

    def _route(self, route: Obj, want: _Want, subsets: Subsets | None) -> Obj:
        """The owned route with its destinations (and mirror) as `want` says."""
        entries = route.get("route") or []
        stable = [e for e in entries if self._is("stable", e.get("destination") or {}, subsets)]
        canary = [e for e in entries if self._is("canary", e.get("destination") or {}, subsets)]
        any_dest = (stable or canary)[0]["destination"]

        def entry(side: Side) -> Obj:
            """The route's entry for `side`, or a new one (built only when needed)."""
            found = stable if side == "stable" else canary
            return found[0] if found else {"destination": self._dest(side, any_dest, subsets)}

        out = dict(route)
        if want.final is None:
            out["route"] = [
                {**entry("stable"), "weight": 100 - want.weight},
                {**entry("canary"), "weight": want.weight},
            ]
        else:
            promoted_to_canary = want.final == "promoted" and self.backends.mode != "services"
            finished_on_canary = want.final == "finished" and canary and not stable
            lone = entry("canary" if promoted_to_canary or finished_on_canary else "stable")
            out["route"] = [{k: v for k, v in lone.items() if k != "weight"}]
        if self.mirror_percent is not None:
            out.pop("mirror", None)
            out.pop("mirrorPercentage", None)
            # Mirroring is a dark launch: it copies requests to a canary that serves none.
            # Once the canary has weighted traffic, its own share exercises it; a mirror
            # would send it copies of requests it may already be answering.
            if want.routes and want.final is None and want.weight == 0:
                out["mirror"] = entry("canary")["destination"]
                # As the server stores it (20, not 20.0), so the next read compares equal.
                out["mirrorPercentage"] = {"value": _patch.normalize(float(self.mirror_percent))}
        return out

    def _header_route(self, owned: Obj, k: int, subsets: Subsets | None) -> Obj:
        """A route for testers: the owned route's matches plus the header/cookie, to canary."""
        extra: list[dict[str, Any]] = []
        if self.header:
            # Istio matches header names in lower case.
            extra.append({n.lower(): {"exact": v} for n, v in self.header.items()})
        if self.cookie:
            extra.append({"cookie": {"regex": cookie_regex(self.cookie)}})
        matches = owned.get("match") or [{}]
        canary = next(
            e for e in owned["route"] if self._is("canary", e.get("destination") or {}, subsets)
        )
        return {
            "name": f"canaryctl-{self.name}" + (f"-{k}" if k else ""),
            "match": [
                {**m, "headers": {**(m.get("headers") or {}), **e}} for e in extra for m in matches
            ],
            "route": [{"destination": canary["destination"]}],
            **{key: v for key, v in owned.items() if key not in _NOT_COPIED},
        }


def _show(route: Obj) -> str:
    parts = []
    for entry in route.get("route") or []:
        dest = entry["destination"]
        subset = f"/{dest['subset']}" if dest.get("subset") else ""
        parts.append(f"{dest.get('host')}{subset}={entry.get('weight', 100)}")
    return ", ".join(parts)


def _describe(old: Obj, new: Obj, k: int) -> str:
    return f"route {old.get('name') or k}: {_show(old)} -> {_show(new)}"

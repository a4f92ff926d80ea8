"""What the watches have shown: the latest Canary, Deployment and config objects, and which
canary cares about which object. Reading it costs no API request, which is how a canary
with nothing to do stays free.

Synced: at start-up the watches deliver their initial lists object by object, and a
canary decided on a half-filled cache sees a referenced ConfigMap as missing (a new
template hash: a spurious rollout). So nobody acts before every watched kind is synced:
the operator lists each kind once (`expect`: the keys that exist), and a kind is synced
once the watch has shown each of them (or their deletion). Like client-go's HasSynced,
but without keeping a second copy of the objects.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from canaryctl.operator import managed
from canaryctl.operator.configs import config_refs, data_checksum

Key = tuple[str, str]  # (namespace, name)
#: The kinds whose watches must have delivered their initial list before anyone acts.
SYNCED_KINDS = ("Canary", "Deployment", "ConfigMap", "Secret", "HorizontalPodAutoscaler")


def _slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy without managedFields (the bulk of most objects, never needed here)."""
    out = {k: v for k, v in dict(body).items()}
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


class Cache:
    """Thread-safe maps filled by watch handlers and read by reconciles."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.canaries: dict[Key, dict[str, Any]] = {}
        self.deployments: dict[Key, dict[str, Any]] = {}
        self.checksums: dict[tuple[str, str, str], str] = {}  # (ns, kind, name) -> checksum
        self.hpas: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # ns -> name -> HPA
        # object -> canaries to wake when it changes
        self._deps: dict[Key, set[Key]] = defaultdict(set)
        self._services: dict[Key, set[Key]] = defaultdict(set)
        self._configs: dict[tuple[str, str, str], set[Key]] = defaultdict(set)
        self._interest: dict[Key, tuple[list[Key], list[Key], list[tuple[str, str, str]]]] = {}
        # Initial lists: keys listed but not yet shown by the watch, per kind (absent:
        # not listed yet); keys the watch showed deleted before the list was in.
        self._expected: dict[str, set[Key]] = {}
        self._gone: dict[str, set[Key]] = defaultdict(set)

    # --- initial lists --------------------------------------------------------------------

    def expect(self, kind: str, keys: set[Key]) -> None:
        """The keys of `kind` a list found: the kind is synced once the watch has shown
        each (those it showed already, or showed deleted, count)."""
        with self._lock:
            self._expected[kind] = {k for k in keys if not self._has(kind, k)} - self._gone[kind]

    def pending(self) -> dict[str, int]:
        """{kind: objects the watch has yet to show} for every kind not synced yet (a kind
        not listed yet counts -1). Empty once all are synced."""
        with self._lock:
            out = {kind: len(self._expected[kind]) if kind in self._expected else -1
                   for kind in SYNCED_KINDS}  # fmt: skip
            out = {kind: n for kind, n in out.items() if n}
            if not out:
                self._gone.clear()  # synced: tombstones are no longer needed
            return out

    def _has(self, kind: str, key: Key) -> bool:
        if kind == "Canary":
            return key in self.canaries
        if kind == "Deployment":
            return key in self.deployments
        if kind == "HorizontalPodAutoscaler":
            return key[1] in self.hpas.get(key[0], {})
        return (key[0], kind, key[1]) in self.checksums

    def _seen(self, kind: str, key: Key, deleted: bool) -> None:
        """The watch showed `key` (called with the lock held)."""
        expected = self._expected.get(kind)
        if expected is not None:
            expected.discard(key)
        if deleted and (expected is None or expected):
            self._gone[kind].add(key)

    # --- canaries -------------------------------------------------------------------------

    def put_canary(self, body: Mapping[str, Any]) -> Key:
        """Remember a Canary and index the objects it names; returns its key."""
        slim = _slim(body)
        meta = slim["metadata"]
        key = (meta["namespace"], meta["name"])
        spec = slim.get("spec") or {}
        ns = key[0]
        deps: list[Key] = []
        target = (spec.get("targetRef") or {}).get("name")
        if target:
            deps += [(ns, target), (ns, managed.primary_name(target))]
        for field in ("stable", "canary"):
            if isinstance(spec.get(field), str):
                deps.append((spec.get("canaryNamespace") or ns if field == "canary" else ns,
                             spec[field]))  # fmt: skip
        services = [(ns, spec["service"])] if isinstance(spec.get("service"), str) else []
        with self._lock:
            self.canaries[key] = slim
            self._seen("Canary", key, deleted=False)
            self._unindex(key)
            self._interest[key] = (deps, services, [])
            for d in deps:
                self._deps[d].add(key)
            for s in services:
                self._services[s].add(key)
            self._index_configs(key)
        return key

    def drop_canary(self, key: Key) -> None:
        """Forget a Canary that is gone."""
        with self._lock:
            self.canaries.pop(key, None)
            self._seen("Canary", key, deleted=True)
            self._unindex(key)
            self._interest.pop(key, None)

    def _unindex(self, key: Key) -> None:
        deps, services, configs = self._interest.get(key, ([], [], []))
        for d in deps:
            self._deps[d].discard(key)
            if not self._deps[d]:
                del self._deps[d]
        for s in services:
            self._services[s].discard(key)
            if not self._services[s]:
                del self._services[s]
        for c in configs:
            self._configs[c].discard(key)
            if not self._configs[c]:
                del self._configs[c]

    def _index_configs(self, key: Key) -> None:
        """Configs the managed target reads (called with the lock held)."""
        body = self.canaries.get(key)
        deps, services, old = self._interest.get(key, ([], [], []))
        for c in old:
            self._configs[c].discard(key)
        configs: list[tuple[str, str, str]] = []
        target = ((body or {}).get("spec") or {}).get("targetRef") or {}
        if target.get("name"):
            dep = self.deployments.get((key[0], target["name"]))
            if dep is not None:
                template = (dep.get("spec") or {}).get("template") or {}
                configs = [(key[0], k, n) for k, n in sorted(config_refs(template))]
        for c in configs:
            self._configs[c].add(key)
        self._interest[key] = (deps, services, configs)

    # --- watched objects ------------------------------------------------------------------

    def put_deployment(self, body: Mapping[str, Any], deleted: bool = False) -> set[Key]:
        """Remember a Deployment (or forget it); returns the canaries to wake."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            if deleted:
                self.deployments.pop(key, None)
            else:
                self.deployments[key] = _slim(body)
            self._seen("Deployment", key, deleted)
            woken = set(self._deps.get(key, ()))
            for canary in woken:  # a new template may read other configs
                self._index_configs(canary)
        return woken

    def put_config(self, kind: str, body: Mapping[str, Any], deleted: bool = False) -> set[Key]:
        """Remember the checksum of a ConfigMap or Secret; returns the canaries to wake."""
        meta = body["metadata"]
        key = (meta["namespace"], kind, meta["name"])
        with self._lock:
            before = self.checksums.get(key)
            if deleted:
                self.checksums.pop(key, None)
            else:
                self.checksums[key] = data_checksum(body)
            self._seen(kind, (key[0], key[2]), deleted)
            if self.checksums.get(key) == before:
                return set()
            return set(self._configs.get(key, ()))

    def put_hpa(self, body: Mapping[str, Any], deleted: bool = False) -> set[Key]:
        """Remember a HorizontalPodAutoscaler (or forget it); returns the canaries to wake:
        those whose target or primary it scales (the user's HPA, or canaryctl's mirror)."""
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        with self._lock:
            before = self.hpas[ns].get(name)
            if deleted:
                self.hpas[ns].pop(name, None)
            else:
                self.hpas[ns][name] = _slim(body)
            # gates acting too: a mirror seen before its source would look orphaned
            self._seen("HorizontalPodAutoscaler", (ns, name), deleted)
            scaled = {((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
                      for h in (before, None if deleted else body) if h}  # fmt: skip
            return {c for d in scaled if d for c in self._deps.get((ns, d), ())}

    def hpas_in(self, namespace: str) -> list[dict[str, Any]]:
        """The HorizontalPodAutoscalers of a namespace, as last seen."""
        with self._lock:
            return list(self.hpas.get(namespace, {}).values())

    def service_woken(self, namespace: str, service: str | None) -> set[Key]:
        """Canaries routing through a Service (woken by its EndpointSlices)."""
        if not service:
            return set()
        with self._lock:
            return set(self._services.get((namespace, service), ()))

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The latest watched Deployment, or None when none is known."""
        return self.deployments.get((namespace, name))

    def checksums_for(
        self, namespace: str, refs: set[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """{(kind, name): checksum} of the given configs that exist in a namespace."""
        found = {ref: self.checksums.get((namespace, *ref)) for ref in refs}
        return {ref: value for ref, value in found.items() if value is not None}

"""One reconcile of one Canary: read the watch cache, and only when there is something to do,
call the Engine (pair mode), or keep the primary and start rollouts (managed mode).

Every decision about traffic and replicas during a rollout is the Engine's, so the
state machine in `core/` decides everything; this module only chooses *when* to tick,
starts a rollout by resetting the stored status, and in managed mode keeps
`<target>-primary` (create it, copy a promoted template into it, scale the target back
to 0). Everything is level-triggered and idempotent: a process killed at any line
resumes from what the cluster shows.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from canaryctl.core.conditions import conditions_for, denied_conditions, invalid_spec_conditions
from canaryctl.core.models import (
    CanarySpec,
    CanaryStatus,
    HealthSpec,
    Phase,
    RoutesRef,
    parse_routes,
)
from canaryctl.driver.engine import Engine, LeaseHeld
from canaryctl.errors import ClusterError, ConflictError, NameTaken, SpecError, WriteDenied
from canaryctl.kube import workloads
from canaryctl.kube.canary import API_VERSION, Canary, spec_of
from canaryctl.kube.canary_store import CanaryStore
from canaryctl.kube.client import denial_of
from canaryctl.operator import autoscalers, configs, managed, owned, services
from canaryctl.operator.cache import Cache, Key
from canaryctl.operator.events import Recorder
from canaryctl.operator.metrics import Metrics
from canaryctl.routers import Router, make_router, routes_router

log = logging.getLogger(__name__)

FINALIZER = "canaryctl.dev/finalizer"
#: Seconds to the next look while a step waits on something no watch reports.
RETRY_SOON = 0.5
#: Seconds to the next look after a race (409, a failed JSON-patch `test`): decide again.
RETRY_CONFLICT = 0.2
#: Seconds to the next look after a write refused on its merits (admission policy or
#: webhook, validation, RBAC), growing with consecutive refusals: the answer will not
#: change before someone changes the policy or the object.
DENIED_DELAYS = (2.0, 5.0, 10.0, 30.0, 60.0)
#: Annotation on a Canary: what its deletion does with a target whose template was never
#: promoted (deleted mid-rollout, or changed since the last promotion). `KeepPrimary`
#: (the default): the primary, the last analysed version, keeps serving and outlives the
#: Canary. `HandOver`: the target takes over once ready (a template known bad never does).
#: An annotation, not a spec field: it is no part of a rollout (setting it right before
#: a deletion must not start one, as a changed spec would).
ON_DELETE = "canaryctl.dev/on-delete"
HAND_OVER = "HandOver"
#: Longest wait for the finalizer's own Event before it lets the Canary go (seconds).
EVENT_WAIT = 2.0
#: Seconds to the next look while a name canaryctl needs is taken (no watch reports its
#: release: the object is not one the canary's watches follow).
RETRY_TAKEN = 30.0
#: `_verdict_about`'s answer when the stored status is not yet the one the cache shows.
_STALE = object()


@dataclass
class _Entry:
    """The Engine of one canary, kept while its spec stays the same."""

    fingerprint: str
    engine: Engine


def engine_spec(body: Mapping[str, Any]) -> CanarySpec:
    """The rollout spec of a Canary resource; managed mode resolved to its two Deployments."""
    spec = spec_of(body)
    if spec.managed and spec.router.destination_rule is not None:
        raise SpecError(
            "router.destinationRule",
            "managed mode routes through Services (the primary's behind the user's Service, "
            "the target's behind <service>-canary), not DestinationRule subsets: remove "
            "destinationRule, or name the two Deployments with stable/canary",
        )
    return spec.resolved()


def status_of(body: Mapping[str, Any]) -> CanaryStatus | None:
    """The rollout status stored in a Canary's status (None before the first decision)."""
    raw = body.get("status") or {}
    if not raw.get("phase"):
        return None
    try:
        return CanaryStatus.from_dict(raw)
    except ValueError:
        return None


def _active(status: CanaryStatus | None) -> bool:
    return status is not None and not status.phase.terminal


class Reconciler:
    """Reconciles Canaries one at a time each (the controller never runs one twice at once)."""

    def __init__(
        self,
        client: Client,
        cache: Cache,
        *,
        metrics: Metrics,
        recorder: Recorder,
        identity: str,
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.cache = cache
        self.metrics = metrics
        self.recorder = recorder
        self.identity = identity
        self.interval = interval
        self.clock = clock
        self.store = CanaryStore(client)
        self._engines: dict[Key, _Entry] = {}
        self._refused: dict[Key, tuple[int, str]] = {}  # invalid spec told once per generation
        # Managed mode, weight routers: since when the target's pods are out of the Service.
        # Kept in the Canary's status once a rollout has run (a restarted operator does not
        # wait the drain delay again); this process's own view, None when it cleared it.
        self._drained_since: dict[Key, float | None] = {}
        self._sides_written: dict[Key, tuple[Any, Any]] = {}  # <service>-primary/-canary
        # Writes refused on their merits: (consecutive refusals, last message told).
        self._denials: dict[Key, tuple[int, str]] = {}
        # The last valid spec seen: the release of a Canary whose spec then became
        # invalid still cleans up its routes with it (and, after a restart, with the
        # routes kept in its status: `_keep_routes`).
        self._last_spec: dict[Key, CanarySpec] = {}
        # Deletions held because the stored routes are unreadable: the last message told.
        self._held: dict[Key, str] = {}
        # Routes the API server did not keep (a CRD from before status.routes): not
        # written again on every pass, told once per process.
        self._routes_dropped: dict[Key, dict[str, Any]] = {}

    # --- entry point ----------------------------------------------------------------------

    def reconcile(self, key: Key) -> float | None:
        """One pass; returns seconds until the next look, None to wait for a watch event."""
        body = self.cache.canaries.get(key)
        if body is None:
            self._engines.pop(key, None)
            self._drained_since.pop(key, None)
            self._sides_written.pop(key, None)
            self._denials.pop(key, None)
            self._last_spec.pop(key, None)
            self._held.pop(key, None)
            self._routes_dropped.pop(key, None)
            self.metrics.forget(*key)
            return None
        meta = body["metadata"]
        deleting = bool(meta.get("deletionTimestamp"))
        if deleting and FINALIZER not in (meta.get("finalizers") or []):
            return None  # already let go; the object disappears with its last finalizer
        if not deleting and FINALIZER not in (meta.get("finalizers") or []):
            self._set_finalizer(body, add=True)
            return None  # the update comes back through the watch
        try:
            spec = engine_spec(body)
        except SpecError as exc:
            if deleting:
                release = functools.partial(self._finalize_invalid, key, body, exc)
                return self._guarded(key, body, release)
            self._refuse(key, body, exc)
            return None
        self._last_spec[key] = spec
        status = status_of(body)
        if status is not None:
            self.metrics.observe_status(key[0], key[1], status)
        if deleting:
            return self._guarded(key, body, lambda: self._finalize(key, body, spec, status))
        mode = self._managed if spec.managed else self._pair

        def step() -> float | None:
            self._keep_routes(key, body, spec)
            return mode(key, body, spec, status)

        return self._guarded(key, body, step)

    def _guarded(self, key: Key, body: dict, step: Callable[[], float | None]) -> float | None:
        """Run one pass, sorting out refusals: an invalid spec is told once per generation;
        a race (409, a failed `test`) is decided again at once; a write refused on its
        merits (an admission policy or webhook, 403/422) is told (Event and condition,
        naming the object and the server's message) and retried with a capped backoff."""
        try:
            delay = step()
        except SpecError as exc:
            self._refuse(key, body, exc)
            return RETRY_TAKEN if isinstance(exc, NameTaken) else None
        except ConflictError:
            return RETRY_CONFLICT  # someone wrote in between: decide again on what is there
        except ClusterError as exc:
            denied = denial_of(exc)
            if denied is None:
                raise  # the scheduler backs off and counts it
            return self._denied(key, body, denied)
        if key in self._denials:
            self._denial_over(key)
        return delay

    def _keep_routes(self, key: Key, body: dict, spec: CanarySpec) -> None:
        """Keep the router's objects (by name) in the status, so that a deletion can reset
        the routes even if the spec stops parsing and this process is replaced meanwhile.
        Written only when they changed: a canary at rest costs no request."""
        wanted = RoutesRef.of(spec).to_dict()
        stored = (body.get("status") or {}).get("routes")
        if isinstance(stored, Mapping) and _same_routes(stored, wanted):
            return
        if self._routes_dropped.get(key) == wanted:
            return
        previous = stored if isinstance(stored, Mapping) else None
        kept = self.store.write_routes(key[1], key[0], wanted, previous,
                                       body["metadata"]["resourceVersion"])  # fmt: skip
        if isinstance(kept, Mapping) and _same_routes(kept, wanted):
            return
        if not self._routes_dropped:
            log.warning("the API server did not keep status.routes of canary %s/%s: the "
                        "installed Canary CRD predates it; apply the CRD of this canaryctl, "
                        "or a Canary deleted with an invalid spec after an operator restart "
                        "cannot have its routes reset", *key)  # fmt: skip
        self._routes_dropped[key] = wanted

    # --- pair mode ------------------------------------------------------------------------

    def _pair(
        self, key: Key, body: dict, spec: CanarySpec, status: CanaryStatus | None
    ) -> float | None:
        if _active(status):
            return self._tick(key, body, spec)
        if status is not None and status.observed_spec_hash == spec.fingerprint:
            return None  # finished, and the spec has not changed since: nothing to do
        # A new Canary, or a new spec after a finished rollout: a new rollout.
        self._engine(key, spec).validate()
        self._reset(key, spec, "NewRollout", "starting a rollout of the spec")
        # The first tick is a pass of its own: in a wave of changes every rollout's start is
        # stored first, and no worker is held through a whole tick meanwhile.
        return 0.0

    # --- managed mode ---------------------------------------------------------------------

    def _managed(
        self, key: Key, body: dict, spec: CanarySpec, status: CanaryStatus | None
    ) -> float | None:
        ns = key[0]
        target = self.cache.deployment(ns, spec.canary)
        if target is None:
            raise SpecError("targetRef.name", f"deployment/{spec.canary} not found in {ns}")
        primary = self.cache.deployment(ns, spec.stable)
        self._autoscalers(key, body, spec, primary, _active(status))
        current = self._target_hash(ns, target)
        if primary is None:
            return self._initialize(key, body, spec, target, current)
        ann = primary["metadata"].get("annotations") or {}
        promoted, candidate = ann.get(managed.TEMPLATE_HASH), ann.get(managed.CANDIDATE_HASH)
        failed = ann.get(managed.FAILED_HASH)
        if _active(status):
            if candidate and current != candidate:
                self._supersede(key, body, spec, current)
            return self._tick(key, body, spec)
        phase = status.phase if status is not None else None
        target_replicas = (target.get("spec") or {}).get("replicas", 1)
        promote = phase is Phase.SUCCEEDED and promoted != candidate and current == candidate
        if promote or (phase is Phase.ROLLED_BACK and candidate and failed != candidate):
            # A verdict is acted on only when it is the candidate's own: the cached status
            # may still be the previous rollout's (the candidate's rollout was just stored;
            # acting on it once copied an unanalysed template into the primary), or the
            # process died between marking the candidate and starting its rollout.
            verdict = self._verdict_about(key, phase, candidate)
            if verdict is _STALE:
                return None  # the watch brings the status that is stored
            if verdict is not None and promote:
                return self._hand_over(key, body, spec, target, primary, verdict, candidate)
            if verdict is not None:
                self._annotate(primary, {managed.FAILED_HASH: candidate})
                return None
            # else: a finished rollout of another template; the candidate's starts below
        if target_replicas:
            if _active(self._stored_status(key)):
                return None  # the cache lags a rollout that has started: its watch event wakes us
            return self._retire_target(key, body, spec, target, primary, status)
        if current not in (promoted, failed):
            # The cache may lag our own last write (a failed hash, a new template): decide
            # to start a rollout only on a fresh read of the primary.
            primary = self._fresh(spec.namespace, spec.stable)
            ann = (primary or {}).get("metadata", {}).get("annotations") or {}
            if primary is None or current in (
                ann.get(managed.TEMPLATE_HASH),
                ann.get(managed.FAILED_HASH),
            ):
                return None
            if not _ready(primary, (primary.get("spec") or {}).get("replicas", 1)):
                return None  # the primary's next status change wakes us
            if spec.router.kind != "replicas":
                # The routes' stable backend is the user's Service: it must select only the
                # primary (a GitOps tool may have written its selector back meanwhile).
                selector = ((target.get("spec") or {}).get("selector") or {}).get("matchLabels")
                service = self._service(spec)
                keys = managed.rewritten_keys(selector or {}, services.user_selector(service))
                if services.point_at_primary(self.client, service, primary, keys):
                    return RETRY_SOON
            self._annotate(primary, {managed.CANDIDATE_HASH: current})
            if self._reset(key, spec, "NewRevision",
                           f"deployment/{spec.canary} changed (template {current}); "
                           "starting a rollout with it as canary", revision=current):  # fmt: skip
                return 0.0  # the first tick is a pass of its own (see _pair)
        return None

    def _autoscalers(
        self, key: Key, body: dict, spec: CanarySpec, primary: dict | None, active: bool
    ) -> None:
        """The target's HPAs: refused with the replicas router (before anything is made,
        and before each rollout; one running is left to finish), otherwise mirrored onto
        the primary once it exists (no request when in step)."""
        seen = self.cache.hpas_in(spec.namespace)
        if not active:
            found = autoscalers.target_hpas(seen, spec.canary)
            autoscalers.refuse_with_replicas_router(found, spec.canary, spec.router.kind)
        if primary is not None:
            autoscalers.sync_primary_hpas(self.client, spec.namespace, spec.canary, seen,
                                          self._owner(body), key[1])  # fmt: skip

    def _fresh(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Deployment read from the API (not the cache), as a plain mapping."""
        try:
            return self.client.get(Deployment, name, namespace=namespace).to_dict()
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise ClusterError(f"reading deployment/{name}: {exc.status.message}") from exc

    def _target_hash(self, ns: str, target: Mapping[str, Any]) -> str:
        template = (target.get("spec") or {}).get("template") or {}
        sums = self.cache.checksums_for(ns, configs.config_refs(template))
        return managed.template_hash(template, sums)

    def _service(self, spec: CanarySpec) -> dict[str, Any]:
        svc = workloads.read_service(self.client, spec.service, spec.namespace)
        if svc is None:
            raise SpecError("service", f"service/{spec.service} not found in {spec.namespace}")
        return svc.to_dict()

    def _service_selector(self, spec: CanarySpec) -> dict[str, str]:
        """The user's own selector (without what pointing it at the primary added)."""
        return services.user_selector(self._service(spec))

    def _owner(self, body: dict) -> owned.Owner | None:
        meta = body["metadata"]
        if not meta.get("uid"):
            return None
        return owned.Owner(API_VERSION, "Canary", meta["name"], meta["uid"])

    def _primary_body(
        self, body: dict, spec: CanarySpec, target: dict, replicas: int, hash_: str, extra: dict
    ) -> dict:
        template = (target.get("spec") or {}).get("template") or {}
        sums = self.cache.checksums_for(spec.namespace, configs.config_refs(template))
        # The configs first: the primary's new template reads their copies (new objects for
        # this version; the running pods keep reading theirs until the template replaces them).
        configs.copy_configs(self.client, spec.namespace, template, spec.canary,
                             self._owner(body), hash_, sums, body["metadata"]["name"])  # fmt: skip
        return managed.primary_manifest(
            target,
            service_selector=self._service_selector(spec),
            replicas=replicas,
            hash_=hash_,
            checksum=managed.config_checksum(template, sums),
            owner=self._owner(body),
            annotations=extra,
        )

    def _initialize(
        self, key: Key, body: dict, spec: CanarySpec, target: dict, current: str
    ) -> float | None:
        if self._fresh(spec.namespace, spec.stable) is not None:
            return None  # created already (the watch has not shown it yet)
        replicas = max(int((target.get("spec") or {}).get("replicas", 1) or 0), 1)
        manifest = self._primary_body(
            body, spec, target, replicas, current, {managed.CANDIDATE_HASH: current}
        )
        managed.apply_primary(self.client, manifest)
        self.recorder.emit(body, "Normal", "Initialized",
                           f"created deployment/{spec.stable} from deployment/{spec.canary} "
                           f"with {replicas} replicas; it serves until the next "
                           "change")  # fmt: skip
        return None

    def _hand_over(
        self, key: Key, body: dict, spec: CanarySpec, target: dict, primary: dict,
        status: CanaryStatus | None, candidate: str,
    ) -> float | None:  # fmt: skip
        """Promotion in managed mode: the analysed template goes into the primary."""
        replicas = (status.baseline_replicas if status else 0) or max(
            int((target.get("spec") or {}).get("replicas", 1) or 0), 1
        )
        if autoscalers.target_hpas(self.cache.hpas_in(spec.namespace), spec.canary):
            # the primary's HPA owns its replica count: keep it, never set it back
            replicas = int((primary.get("spec") or {}).get("replicas") or 0) or replicas
        ann = dict(primary["metadata"].get("annotations") or {})
        extra = {k: v for k, v in ann.items() if k in (managed.CANDIDATE_HASH, managed.FAILED_HASH)}
        manifest = self._primary_body(body, spec, target, replicas, candidate, extra)
        managed.apply_primary(self.client, manifest)
        self.recorder.emit(body, "Normal", "PrimaryUpdated",
                           f"copied the promoted template into deployment/{spec.stable} "
                           f"({replicas} replicas); deployment/{spec.canary} goes back to 0 "
                           "once they are ready")  # fmt: skip
        return None

    def _retire_target(
        self, key: Key, body: dict, spec: CanarySpec, target: dict, primary: dict,
        status: CanaryStatus | None,
    ) -> float | None:  # fmt: skip
        """No rollout runs and the target has replicas: the primary takes the traffic back
        (at full capacity first), then the target goes to 0."""
        primary = self._fresh(spec.namespace, spec.stable) or primary  # never act on a lag
        want = (primary.get("spec") or {}).get("replicas") or 0
        if not want:
            want = (status.baseline_replicas if status else 0) or max(
                int((target.get("spec") or {}).get("replicas", 1) or 0), 1
            )
            workloads.scale(self.client, spec.stable, spec.namespace, want)
            return None
        if not _ready(primary, want):
            return None  # the primary's status changes wake us
        service = self._service(spec)
        # Written once per primary/target generation, not on every pass of a drain wait.
        seen = (primary["metadata"].get("generation"), target["metadata"].get("generation"))
        if self._sides_written.get(key) != seen:
            for side in services.side_services(service, primary, target, self._owner(body)):
                services.apply_service(self.client, side)
            self._sides_written[key] = seen
        if spec.router.kind != "replicas":
            delay = self._route_to_primary(key, body, spec, status, service, target, primary)
            if delay is not None:
                return delay
        # Every primary pod runs the current version: copies of earlier versions can go.
        configs.prune_config_copies(self.client, spec.namespace, spec.canary,
                                    (primary.get("spec") or {}).get("template") or {})  # fmt: skip
        workloads.scale(self.client, spec.canary, spec.namespace, 0,
                        generation=target["metadata"].get("generation"))  # fmt: skip
        self._keep_drained_since(key, status, None)
        return None

    def _route_to_primary(
        self, key: Key, body: dict, spec: CanarySpec, status: CanaryStatus | None,
        service: dict, target: dict, primary: dict,
    ) -> float | None:  # fmt: skip
        """Weight routers: the user's Service (which the routes name) selects the primary's
        pods; the target keeps its pods until no endpoint of that Service lists them as
        serving and `drainDelay` has passed. Returns seconds to wait, None once drained."""
        selector = ((target.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        keys = managed.rewritten_keys(selector, services.user_selector(service))
        if services.point_at_primary(self.client, service, primary, keys):
            self._keep_drained_since(key, status, None)
            self.recorder.emit(body, "Normal", "RoutedToPrimary",
                               f"service/{spec.service} selects the pods of deployment/"
                               f"{spec.stable}; deployment/{spec.canary} goes to 0 once "
                               "drained")  # fmt: skip
            return RETRY_SOON
        serving = workloads.count_serving(
            self.client, [(spec.service, spec.namespace)], spec.namespace, selector
        )
        if serving:
            self._keep_drained_since(key, status, None)
            return RETRY_SOON  # EndpointSlices of a finished rollout wake nobody: look again
        if key in self._drained_since:
            since = self._drained_since[key]
        else:  # this process has not looked yet (e.g. restarted): what the status says
            since = status.drained_since if status is not None else None
        if since is None:
            since = self.clock()
        self._keep_drained_since(key, status, since)
        left = since + spec.drain_delay - self.clock()
        return left if left > 0 else None

    def _keep_drained_since(
        self, key: Key, status: CanaryStatus | None, since: float | None
    ) -> None:
        """Remember since when the target is drained (None: not drained, or done): here,
        and in the finished rollout's status, the field the state machine uses for the
        same wait during a rollout and leaves empty once it is over. Before the first
        rollout there is no status to keep it in. Writes only when the value changes."""
        self._drained_since[key] = since
        if status is None or not status.phase.terminal or status.drained_since == since:
            return
        record = self.store.get(key[1], key[0])  # the cache may lag our own last write
        if record is None or not record.status:
            return
        stored = CanaryStatus.from_dict(record.status)
        if not stored.phase.terminal or stored.drained_since == since:
            return  # a new rollout owns the field now, or it is there already
        stored.drained_since = since
        record.status = stored.to_dict()
        self.store.update(record)

    def _supersede(self, key: Key, body: dict, spec: CanarySpec, current: str) -> None:
        """A newer template arrived mid-rollout: roll this one back; the next rollout takes
        the newest template (the analysis restarts, two versions are never mixed)."""
        primary = self._fresh(spec.namespace, spec.stable)  # the cache may lag our write
        ann = (primary or {}).get("metadata", {}).get("annotations") or {}
        if ann.get(managed.CANDIDATE_HASH) == current:
            return
        record = self.store.get(*reversed(key))
        if record is None:
            return
        status = CanaryStatus.from_dict(record.status) if record.status else None
        if status is None or status.phase in (Phase.ROLLING_BACK,) or status.phase.terminal:
            return
        pending = record.command and (record.command.get("id") != status.last_command_id)
        if pending and record.command.get("action") == "abort":
            return
        self.store.send_command(key[1], key[0], "abort")
        self.recorder.emit(body, "Normal", "Superseded",
                           "the target changed again during the rollout; rolling back to "
                           "restart the analysis on the newest template")  # fmt: skip

    def _annotate(self, primary: dict, values: dict[str, str]) -> None:
        meta = primary["metadata"]
        managed.annotate(self.client, meta["name"], meta["namespace"],
                         meta.get("generation", 0), values)  # fmt: skip

    # --- deletion -------------------------------------------------------------------------

    def _finalize(
        self, key: Key, body: dict, spec: CanarySpec, status: CanaryStatus | None
    ) -> float | None:
        """Back to the stable at full capacity, remove what canaryctl created, let go."""
        if _active(status):
            record = self.store.get(key[1], key[0])
            if record is not None and record.status:
                st = CanaryStatus.from_dict(record.status)
                pending = record.command and record.command.get("id") != st.last_command_id
                if not st.phase.terminal and st.phase is not Phase.ROLLING_BACK and not pending:
                    self.store.send_command(key[1], key[0], "abort")
                    self.recorder.emit(body, "Warning", "Deleting",
                                       "Canary deleted mid-rollout: rolling back to "
                                       f"deployment/{spec.stable} (the stable) before letting "
                                       "it go")  # fmt: skip
            return self._tick(key, body, spec)
        baseline = (status.baseline_replicas if status else 0) or 1
        make_router(self.client, spec, baseline).cleanup()
        told = "traffic on the stable; objects removed"
        if spec.managed:
            delay, kept = self._release_target(body, spec, status)
            if delay is not None:
                return delay
            if kept:
                told = (f"traffic on deployment/{spec.stable}, left serving and no longer owned "
                        f"by this Canary; deployment/{spec.canary} at 0; other objects "
                        "removed")  # fmt: skip
        self._let_go(body, "Normal", told)
        return None

    def _let_go(self, body: dict, type_: str, told: str) -> None:
        """Tell the outcome, then remove the finalizer. Told first (the Event would
        otherwise name a Canary already gone): this one Event, posted next and waited for
        up to EVENT_WAIT, never the whole queue of everyone else's Events."""
        posted = self.recorder.emit(body, type_, "Finalized", told, urgent=True)
        if not posted.wait(EVENT_WAIT):
            log.warning("the Finalized event of %s/%s is not posted yet; letting go anyway",
                        body["metadata"]["namespace"], body["metadata"]["name"])  # fmt: skip
        self._set_finalizer(body, add=False)

    def _release_target(
        self, body: dict, spec: CanarySpec, status: CanaryStatus | None
    ) -> tuple[float | None, bool]:
        """Managed mode: hand the workloads back to the user's objects, serving.

        Normally the target takes over the primary's capacity and, once ready, the primary
        goes with everything else canaryctl made. Deletion never waits on a version known
        bad, nor for ever: a target whose template was rolled back is not scaled up, and
        one not ready `health.readyDeadline` after the deletion is given up on. Then the
        primary keeps serving behind the user's Service, released from the Canary, and the
        target stays at 0 (`_keep_primary`). Returns (seconds to wait or None, whether the
        primary was kept).
        """
        ns, uid = spec.namespace, body["metadata"].get("uid") or ""
        primary = self._fresh(ns, spec.stable)
        target = self._fresh(ns, spec.canary)
        if primary is not None and target is not None:
            ann = primary["metadata"].get("annotations") or {}
            if not uid or ann.get(managed.KEPT_FOR) != uid:
                wait, why = self._hand_back(body, spec, status, primary, target)
                if wait is not None:
                    return wait, False
                if why:
                    self.recorder.emit(body, "Warning", "PrimaryKept",
                                       f"deployment/{spec.canary} is not handed back: {why}; "
                                       f"deployment/{spec.stable} keeps serving behind "
                                       f"service/{spec.service} and stays after the Canary "
                                       f"goes (with its config copies); deployment/"
                                       f"{spec.canary} stays at 0. To serve it instead: check "
                                       "its template, scale it up, wait until it is ready, "
                                       f"then delete deployment/{spec.stable}; or create the "
                                       "Canary again")  # fmt: skip
                    # The decision first (a restarted operator carries it on): released
                    # from the Canary, so the garbage collector leaves it serving.
                    owned.release(self.client, Deployment, primary, uid, {managed.KEPT_FOR: uid})
                    return self._keep_primary(spec, target, uid), True
            else:
                return self._keep_primary(spec, target, uid), True
        # The user's Service selects both again (as it was) before the primary goes.
        service = workloads.read_service(self.client, spec.service, ns)
        if service is not None and services.restore_service(self.client, service.to_dict()):
            return RETRY_SOON, False
        if primary is not None:
            workloads.delete_deployment(self.client, spec.stable, ns)
        self._delete_side_services(spec)
        configs.delete_config_copies(self.client, ns, spec.canary)
        autoscalers.delete_primary_hpas(self.client, ns, spec.canary)
        return None, False

    def _hand_back(
        self, body: dict, spec: CanarySpec, status: CanaryStatus | None, primary: dict,
        target: dict,
    ) -> tuple[float | None, str]:  # fmt: skip
        """The target takes over the primary's capacity: (seconds to wait, "") while it
        becomes ready, (None, "") once it is, (None, why) when it cannot take over."""
        current = self._target_hash(spec.namespace, target)
        ann = primary["metadata"].get("annotations") or {}
        # Rolled back: marked on the primary, or (the deletion came before that mark) the
        # stored verdict. A rollback the deletion itself asked for ("Aborted") proves
        # nothing about the version: that one gets the bounded wait.
        rolled_back = status is not None and status.phase is Phase.ROLLED_BACK
        if current == ann.get(managed.FAILED_HASH) or (
            rolled_back
            and status.reason != "Aborted"
            and current == ann.get(managed.CANDIDATE_HASH)
        ):
            why = f"its template ({current}) was rolled back"
            if rolled_back and status.message:
                why += f" ({status.reason}: {status.message})"
            return None, why
        # Never promoted (the Canary went mid-rollout, or the target changed since the
        # last promotion): the primary is the last analysed version, and it keeps serving
        # unless the Canary asks for the hand-over (ON_DELETE).
        promoted = current == ann.get(managed.TEMPLATE_HASH) or (
            status is not None
            and status.phase is Phase.SUCCEEDED
            and current == ann.get(managed.CANDIDATE_HASH)
        )
        if not promoted and not _hands_over(body):
            return None, (f"its template ({current}) was never promoted (the Canary was "
                          "deleted before its analysis ended, or the target changed since "
                          f"the last promotion); annotate the Canary {ON_DELETE}: "
                          f"{HAND_OVER} to hand over an unanalysed target")  # fmt: skip
        want = max(int((primary.get("spec") or {}).get("replicas") or 0),
                   status.baseline_replicas if status else 0, 1)  # fmt: skip
        if int((target.get("spec") or {}).get("replicas") or 0) < want:
            workloads.scale(self.client, spec.canary, spec.namespace, want,
                            generation=target["metadata"].get("generation"))  # fmt: skip
            return RETRY_SOON, ""
        if _ready(target, want):
            return None, ""
        left = _deleted_at(body, self.clock()) + spec.health.ready_deadline - self.clock()
        if left > 0:
            return min(RETRY_SOON, left), ""
        ready = (target.get("status") or {}).get("readyReplicas") or 0
        return None, (f"{ready}/{want} of its replicas were ready "
                      f"{spec.health.ready_deadline:g}s after the deletion "
                      "(health.readyDeadline)")  # fmt: skip

    def _keep_primary(self, spec: CanarySpec, target: dict, uid: str) -> float | None:
        """The primary stays serving: its config copies stay with it, the target goes to 0
        before the user's Service selects both again (no unproven pod takes traffic), and
        the Services canaryctl made go. Idempotent; None when done."""
        ns = spec.namespace
        configs.release_config_copies(self.client, ns, spec.canary, uid)
        autoscalers.release_primary_hpas(self.client, ns, spec.canary, uid)
        if (target.get("spec") or {}).get("replicas"):
            workloads.scale(self.client, spec.canary, ns, 0,
                            generation=target["metadata"].get("generation"))  # fmt: skip
        service = workloads.read_service(self.client, spec.service, ns)
        if service is not None and services.restore_service(self.client, service.to_dict()):
            return RETRY_SOON
        self._delete_side_services(spec)
        return None

    def _finalize_invalid(self, key: Key, body: dict, exc: SpecError) -> float | None:
        """Deletion of a Canary whose spec no longer parses: the normal release needs the
        spec, so the safe course is to keep what serves.

        Managed mode: the primary (the last analysed version) is brought to full capacity,
        released from the Canary (no ownerReference, annotation `kept-for`), so the garbage
        collector cannot delete it while the target is at 0; its config copies stay with
        it; once the primary is ready (bounded by the readyDeadline, after which the target
        is left as it is) the routes are reset to it, and only then does the target go to
        0 and the Canary go (with it, through the garbage collector, `<service>-canary`).
        The routes are known from the last valid spec this process saw, else from the
        routes kept in the status (`_keep_routes`), so a restarted operator resets them
        too; when that record is unreadable the deletion is held (`_hold`). A Warning
        Event says what was kept and why. Pair mode owns no workload: traffic and
        replicas are left as they are, and told. Idempotent; None once the Canary was let
        go.
        """
        ns, uid = key[0], body["metadata"].get("uid") or ""
        status = status_of(body)
        primary = self._kept_or_owned_primary(ns, uid)
        if primary is None:
            self._let_go(body, "Warning",
                         f"the spec is invalid ({exc}), so nothing could be rolled back: "
                         "no Deployment owned by this Canary serves; traffic and replicas "
                         "are left as they are")  # fmt: skip
            return None
        name = primary["metadata"]["name"]
        target_name = (primary["metadata"].get("annotations") or {}).get(owned.PRIMARY_OF)
        want = max(int((primary.get("spec") or {}).get("replicas") or 0),
                   status.baseline_replicas if status else 0, 1)  # fmt: skip
        if int((primary.get("spec") or {}).get("replicas") or 0) < want:
            workloads.scale(self.client, name, ns, want,
                            generation=primary["metadata"].get("generation"))  # fmt: skip
            return RETRY_SOON
        if any(ref.get("uid") == uid for ref in primary["metadata"].get("ownerReferences") or ()):
            # The decision first (a restarted operator carries it on): released from the
            # Canary, so the garbage collector leaves it serving.
            owned.release(self.client, Deployment, primary, uid, {managed.KEPT_FOR: uid})
            self.recorder.emit(body, "Warning", "PrimaryKept",
                               f"the spec is invalid ({exc}), so the Canary cannot be "
                               f"released as usual: deployment/{name} (the last promoted "
                               f"version) keeps serving with {want} replicas, released from "
                               "the Canary so it stays after it goes (with its config "
                               f"copies and HPAs); deployment/{target_name} goes to 0 once it is "
                               f"ready. To serve deployment/{target_name} instead: scale it "
                               f"up, wait until it is ready, then delete deployment/{name}; "
                               "or fix the spec and create the Canary again")  # fmt: skip
            return RETRY_SOON
        if target_name:
            configs.release_config_copies(self.client, ns, target_name, uid)
            autoscalers.release_primary_hpas(self.client, ns, target_name, uid)
        router, unreadable = self._release_router(key, body, want)
        if unreadable is not None:
            return self._hold(key, body, exc, unreadable, name, want, target_name)
        told = (f"the spec is invalid ({exc}); deployment/{name} keeps serving with {want} "
                "replicas and is no longer owned by this Canary")  # fmt: skip
        target = self._fresh(ns, target_name) if target_name else None
        serving = target is not None and bool((target.get("spec") or {}).get("replicas"))
        ready = _ready(primary, want)
        if serving and not ready:
            last = self._last_spec.get(key)
            deadline = (last.health if last else HealthSpec()).ready_deadline
            left = _deleted_at(body, self.clock()) + deadline - self.clock()
            if left > 0:
                return min(RETRY_SOON, left)
            told += (f"; deployment/{name} was not ready {deadline:g}s after the deletion, "
                     f"so deployment/{target_name} was left as it is")  # fmt: skip
        # The routes first, while the target still serves its share: then the primary
        # takes all of it, and nothing routes to <service>-canary, which the garbage
        # collector deletes with the Canary (idempotent: a repeated pass changes nothing).
        routes_told = self._reset_routes(router)
        if serving and ready:
            assert target is not None and target_name
            workloads.scale(self.client, target_name, ns, 0,
                            generation=target["metadata"].get("generation"))  # fmt: skip
            return RETRY_SOON
        if target_name and not serving:
            told += f"; deployment/{target_name} at 0"
        self._held.pop(key, None)
        self._let_go(body, "Warning", told + routes_told)
        return None

    def _release_router(self, key: Key, body: dict, want: int) -> tuple[Router | None, str | None]:
        """The router to reset a deleted Canary's routes with when its spec is invalid:
        from the last valid spec this process saw, else from the routes kept in the status
        (`_keep_routes`). (None, None) when there is no record of them (a status written
        by a canaryctl that did not keep them); (None, why) when the record is unreadable."""
        last = self._last_spec.get(key)
        if last is not None:
            return make_router(self.client, last, want), None
        stored = (body.get("status") or {}).get("routes")
        if stored is None:
            return None, None
        try:
            routes = parse_routes(stored)
        except SpecError as exc:
            return None, str(exc)
        return routes_router(self.client, routes, name=key[1], namespace=key[0],
                             baseline=want), None  # fmt: skip

    def _reset_routes(self, router: Router | None) -> str:
        """Put the routes back on the stable (weight 0, tester routes and mirror gone, the
        canary's routing objects removed); returns what to tell."""
        if router is None:
            return ("; the routes were left as they are (no record of them: the status was "
                    "written by a canaryctl that did not keep status.routes)")  # fmt: skip
        try:
            router.cleanup()
        except SpecError as exc:
            # A routing object that is gone or no longer the router's routes nothing of ours.
            return f"; the routes were not reset: {exc}"
        return "; routes reset to the primary"

    def _hold(
        self, key: Key, body: dict, exc: SpecError, unreadable: str, name: str, want: int,
        target_name: str | None,
    ) -> None:  # fmt: skip
        """Neither the spec nor the routes kept in the status say which routes to reset:
        letting the Canary go could leave a share of the traffic routed to
        <service>-canary, which the garbage collector deletes with it. The Canary is kept
        and the target keeps its pods until a change of the Canary (a fixed spec, or the
        routes removed from the status) comes through its watch; told once per message."""
        told = (f"the spec is invalid ({exc}) and the routes kept in the status are "
                f"unreadable ({unreadable}), so the routes cannot be reset to the primary: "
                f"deployment/{name} serves with {want} replicas, released from the Canary; "
                + (f"deployment/{target_name} keeps its pods and " if target_name else "")
                + "the Canary is kept, so that no traffic is routed to a Service the "
                "garbage collector deletes with it. Fix the spec (the deletion then goes on "
                "as usual), or put the routes back on the stable yourself and remove "
                "status.routes (kubectl patch canary "
                f"{key[1]} -n {key[0]} --subresource=status --type=merge "
                """-p '{"status":{"routes":null}}') to let it go""")  # fmt: skip
        if self._held.get(key) != told:
            self._held[key] = told
            log.warning("%s/%s: %s", key[0], key[1], told)
            self.recorder.emit(body, "Warning", "RoutesUnknown", told)
        return None

    def _kept_or_owned_primary(self, namespace: str, uid: str) -> dict[str, Any] | None:
        """The primary canaryctl made for the Canary `uid` (owned by it, or already kept
        for it), read fresh; found from the watched Deployments, not from the spec."""
        if not uid:
            return None
        for (ns, name), dep in list(self.cache.deployments.items()):
            meta = dep.get("metadata") or {}
            target = (meta.get("annotations") or {}).get(owned.PRIMARY_OF)
            if ns != namespace or not target or not owned.is_ours(dep, target):
                continue
            refs = meta.get("ownerReferences") or ()
            kept = (meta.get("annotations") or {}).get(managed.KEPT_FOR) == uid
            if kept or any(ref.get("uid") == uid for ref in refs):
                return self._fresh(ns, name)
        return None

    def _delete_side_services(self, spec: CanarySpec) -> None:
        for suffix in ("-primary", "-canary"):
            services.delete_service(self.client, f"{spec.service}{suffix}", spec.namespace,
                                    spec.canary)  # fmt: skip

    # --- engine ---------------------------------------------------------------------------

    def _engine(self, key: Key, spec: CanarySpec) -> Engine:
        entry = self._engines.get(key)
        if entry is None or entry.fingerprint != spec.fingerprint:
            engine = Engine(
                self.client, spec, store=self.store, identity=self.identity,
                sink=_EventSink(self.recorder, self.cache, key), record_events=False,
            )  # fmt: skip
            entry = _Entry(spec.fingerprint, engine)
            self._engines[key] = entry
        return entry.engine

    def _stored_status(self, key: Key) -> CanaryStatus | None:
        """The status as stored now (the cache may lag our own last write)."""
        record = self.store.get(key[1], key[0])
        return CanaryStatus.from_dict(record.status) if record and record.status else None

    def _verdict_about(
        self, key: Key, phase: Phase | None, candidate: str | None
    ) -> CanaryStatus | object | None:
        """The stored status when it is `phase` and about `candidate` (or written by a
        canaryctl that did not record revisions); `_STALE` when the stored phase is not
        the cached one; None when it is a finished rollout of another template."""
        stored = self._stored_status(key)
        if stored is None or stored.phase is not phase:
            return _STALE
        if stored.revision not in (None, candidate):
            return None
        return stored

    def _reset(
        self, key: Key, spec: CanarySpec, reason: str, message: str, revision: str | None = None
    ) -> bool:
        """Start a rollout: a fresh Pending status (keeping the last command acted on);
        `revision` is the managed template it analyses.

        Decided on the cache, so checked again on a fresh read: a rollout already running
        (the watch had not shown it yet) is never restarted. Returns whether it started.
        """
        record = self.store.get(key[1], key[0])
        if record is None:
            raise ClusterError(f"canary {key[0]}/{key[1]} disappeared")
        old = CanaryStatus.from_dict(record.status) if record.status else None
        if _active(old):
            return False
        if not spec.managed and old is not None and old.observed_spec_hash == spec.fingerprint:
            return False
        fresh = CanaryStatus(
            last_command_id=old.last_command_id if old else None,
            revision=revision,
            routes=RoutesRef.of(spec).to_dict(),
        )
        record.status = fresh.to_dict()
        self.store.update(record)
        self._engines.pop(key, None)  # a new rollout starts with fresh analysis state
        self._drained_since.pop(key, None)  # and with the status' own (empty) drain time
        body = self.cache.canaries.get(key)
        if body is not None:
            self.recorder.emit(body, "Normal", reason, message)
        return True

    def _tick(self, key: Key, body: dict, spec: CanarySpec) -> float | None:
        engine = self._engine(key, spec)
        before = status_of(body)
        seen = before.history[-1].time if before and before.history else None
        try:
            result = engine.tick()
        except LeaseHeld:
            return 1.0
        except ConflictError:
            return RETRY_CONFLICT  # a race (409, a failed guard); a refusal is WriteDenied
        st = result.status
        self.metrics.observe_status(key[0], key[1], st)
        self.metrics.count_checks(key[0], key[1], seen, st)
        if st.phase.terminal:
            if before is None or not before.phase.terminal:
                started = st.started_at or (before.started_at if before else None)
                if started:
                    self.metrics.duration.labels(key[0], key[1], st.phase.value).observe(
                        max(self.clock() - started, 0.0)
                    )
            # Managed mode continues (hand-over, marking a failed template) when the watch
            # brings this status back: deciding on the cache before that would be stale.
            return None
        delay = self.interval
        if st.pause_until is not None:
            delay = min(delay, max(st.pause_until - self.clock(), 0.05))
        return delay

    # --- helpers --------------------------------------------------------------------------

    def _denied(self, key: Key, body: dict, exc: WriteDenied) -> float:
        """A write refused on its merits: told once per message (Event), kept in the Ready
        condition, retried with a capped backoff. Returns the delay."""
        count, told = self._denials.get(key, (0, ""))
        self._denials[key] = (count + 1, str(exc))
        self.metrics.errors.labels("WriteDenied").inc()
        if str(exc) != told:
            log.warning("%s/%s: %s", key[0], key[1], exc)
            self.recorder.emit(body, "Warning", "WriteDenied",
                               f"{exc}. Nothing else was changed; retrying with backoff (up "
                               f"to every {DENIED_DELAYS[-1]:g}s) until the policy or the "
                               "object changes")  # fmt: skip
        self._write_conditions(
            key, body,
            lambda gen, previous: denied_conditions(exc.object, exc.reason, gen, self.clock(),
                                                    previous),
        )  # fmt: skip
        return DENIED_DELAYS[min(count, len(DENIED_DELAYS) - 1)]

    def _denial_over(self, key: Key) -> None:
        """A pass went through after refusals: the conditions say what the status says
        again (no Event: a pass that did not reach the refused write would tell a story
        the next refusal contradicts)."""
        self._denials.pop(key, None)
        body = self.cache.canaries.get(key)
        if body is None:
            return
        self._write_conditions(
            key,
            body,
            lambda gen, previous: conditions_for(status_of(body), gen, self.clock(), previous),
        )

    def _write_conditions(
        self, key: Key, body: dict, make: Callable[[int, Any], list[dict[str, Any]]]
    ) -> None:
        """Write the conditions `make(generation, previous)` returns, if they differ."""
        generation = body["metadata"].get("generation", 0)
        previous = (body.get("status") or {}).get("conditions") or ()
        conditions = make(generation, previous)
        if _same_conditions(conditions, previous):
            return
        try:
            self.store.write_conditions(key[1], key[0], conditions, generation)
        except ClusterError as err:
            log.warning("could not write the conditions of %s/%s: %s", *key, err)

    def _refuse(self, key: Key, body: dict, exc: SpecError) -> None:
        generation = body["metadata"].get("generation", 0)
        told = self._refused.get(key)
        if told == (generation, str(exc)):
            return
        self._refused[key] = (generation, str(exc))
        self.recorder.emit(body, "Warning", "InvalidSpec", f"{exc}; nothing was changed")
        previous = (body.get("status") or {}).get("conditions") or ()
        conditions = invalid_spec_conditions(
            exc.field, exc.reason, generation, self.clock(), previous
        )
        try:
            self.store.write_conditions(key[1], key[0], conditions, generation)
        except ClusterError as err:
            log.warning("could not report the invalid spec of %s/%s: %s", *key, err)

    def _set_finalizer(self, body: dict, *, add: bool) -> None:
        meta = body["metadata"]
        current = list(meta.get("finalizers") or [])
        wanted = [*current, FINALIZER] if add else [f for f in current if f != FINALIZER]
        if wanted == current:
            return
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {"op": "add", "path": "/metadata/finalizers", "value": wanted},
        ]
        try:
            self.client.patch(
                Canary, meta["name"], ops, namespace=meta["namespace"],
                patch_type=PatchType.JSON,
            )  # fmt: skip
        except ApiError as exc:
            if exc.status.code in (404, 409, 422):
                return  # changed or gone meanwhile: the watch brings the new version
            raise ClusterError(f"updating finalizers of canary {meta['name']}: {exc}") from exc


def _same_conditions(a: Any, b: Any) -> bool:
    """Equal but for the transition times (which a rewrite would not change anyway)."""

    def strip(conditions: Any) -> list[tuple[Any, ...]]:
        return sorted((c.get("type"), c.get("status"), c.get("reason"), c.get("message"),
                       c.get("observedGeneration")) for c in conditions)  # fmt: skip

    return strip(a) == strip(b)


def _same_routes(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Equal but for keys stored as null (a status written whole may hold them)."""
    return {k: v for k, v in stored.items() if v is not None} == wanted


def _hands_over(body: Mapping[str, Any]) -> bool:
    """Whether the Canary opted in to handing an unpromoted target the traffic on deletion."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ON_DELETE, "")).strip().lower() == HAND_OVER.lower()


def _deleted_at(body: Mapping[str, Any], default: float) -> float:
    """When deletion of the object was asked (epoch seconds; `default` if not set)."""
    stamp = (body.get("metadata") or {}).get("deletionTimestamp")
    if not stamp:
        return default
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def _ready(dep: Mapping[str, Any], replicas: int) -> bool:
    """All `replicas` pods of the current template are ready (from the watched status)."""
    meta, status = dep.get("metadata") or {}, dep.get("status") or {}
    spec_replicas = (dep.get("spec") or {}).get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= meta.get("generation", 0)
        and spec_replicas >= replicas
        and (status.get("updatedReplicas") or 0) >= replicas
        and (status.get("readyReplicas") or 0) >= replicas
        and (status.get("replicas") or 0) <= spec_replicas
    )


class _EventSink:
    """Receives the Engine's notices and records them as Events on the Canary."""

    def __init__(self, recorder: Recorder, cache: Cache, key: Key) -> None:
        self.recorder, self.cache, self.key = recorder, cache, key

    def notice(self, notice: Any) -> None:
        body = self.cache.canaries.get(self.key)
        if body is not None:
            self.recorder.emit(body, notice.type, notice.reason, notice.message)

    def snapshot(self, snap: Any) -> None:
        return

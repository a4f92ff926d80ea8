"""The operator process: kopf watches fill the cache and wake canaries; a small scheduler
runs reconciles, one at a time per canary, only while this process leads.

No per-canary loop exists: a canary is looked at when a watch event concerns it (its
Canary, its Deployments, the EndpointSlices of its Service, the configs its target
reads, the HPAs scaling its target or primary), and an active rollout also at the time
its reconcile asked for (its cadence, or the end of a timed pause). A finished canary is
never scheduled again until an event wakes it, and then costs no API request unless
something is to be done.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import heapq
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf
from lightkube import ALL_NS, Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import ConfigMap, Secret

from canaryctl.core.models import Phase
from canaryctl.errors import CanaryError
from canaryctl.kube.canary import Canary
from canaryctl.kube.client import TRANSPORT_ERRORS
from canaryctl.kube.store import identity as process_identity
from canaryctl.operator.cache import SYNCED_KINDS, Cache, Key
from canaryctl.operator.events import Recorder
from canaryctl.operator.leader import LeaderElector
from canaryctl.operator.metrics import Metrics, count_requests, serve
from canaryctl.operator.reconciler import Reconciler

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "canaryctl.dev", "v1alpha1", "canaries"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: Delays after a failed reconcile (seconds), growing with consecutive failures.
ERROR_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
#: A rollout step changes a Deployment's status several times within a fraction of a
#: second (replicas, updated, ready, observedGeneration) and its EndpointSlices after
#: that: wake once per burst rather than once per event.
DEBOUNCE = 0.25
TERMINAL = frozenset(p.value for p in Phase if p.terminal)
#: The resource of each kind whose initial list gates acting (see `Cache.expect`).
LISTED = {
    "Canary": Canary,
    "Deployment": Deployment,
    "ConfigMap": ConfigMap,
    "Secret": Secret,
    "HorizontalPodAutoscaler": HorizontalPodAutoscaler,
}
#: Seconds the watches get to show what a list found before that kind is listed again
#: (an object deleted between our list and the watch's own is never shown to us).
RELIST_AFTER = 10.0


class Scheduler:
    """Runs `reconcile(key)` in worker threads at the time each key is due.

    Due keys wait in two lanes for a free worker: *react* (a change someone made: a new
    template, a new or edited Canary, a command) before *tick* (a running rollout's next
    look, or the echo of our own status write). Ticks never take the last `reserve`
    workers. So in a wave of image bumps the starts are not queued behind the ticks of
    the rollouts started a moment earlier (each a dozen API requests): at N = 1000 they
    were, and the last reactions of a wave of 100 waited for a worker for seconds.
    """

    def __init__(
        self,
        reconcile: Any,
        *,
        acting: Any,
        metrics: Metrics,
        workers: int = 32,
        reserve: int | None = None,
    ) -> None:
        self._reconcile = reconcile
        self._acting = acting
        self._metrics = metrics
        self._workers = max(workers, 1)
        # Workers only reactions may use: a quarter, at least one when there are two.
        wanted = reserve if reserve is not None else max(self._workers // 4, 1)
        self._reserve = max(min(wanted, self._workers - 1), 0)
        self._pool = concurrent.futures.ThreadPoolExecutor(self._workers, "reconcile")
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()
        self._urgent: set[Key] = set()  # keys whose next reconcile reacts to a change
        self._ready: dict[str, collections.deque[Key]] = {
            "react": collections.deque(),
            "tick": collections.deque(),
        }
        self._ready_at: dict[Key, float] = {}  # due and waiting for a worker, since when
        self._failures: dict[Key, int] = {}
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.heartbeat = time.monotonic()

    def wake(self, key: Key, delay: float = 0.0, *, urgent: bool = False) -> None:
        """Look at `key` after `delay` seconds (an earlier wish wins); `urgent`: it reacts to
        a change, so it goes before ticks. Event-loop thread only."""
        if urgent:
            self._urgent.add(key)
        if key in self._ready_at:  # due already, waiting for a worker
            if urgent and key not in self._ready["react"]:
                self._ready["react"].append(key)  # waiting as a tick: move it up
                if self._wakeup is not None:
                    self._wakeup.set()
            return
        at = time.monotonic() + max(delay, 0.0)
        if key in self._due and self._due[key] <= at:
            return
        self._due[key] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))
        if self._wakeup is not None:
            self._wakeup.set()

    def wake_all(self, keys: Sequence[Key]) -> None:
        """Look at every key now (leadership just taken: nothing may have been missed)."""
        for key in keys:
            self.wake(key)

    async def run(self) -> None:
        """The scheduling loop; cancelled when the operator stops."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        while True:
            self.heartbeat = time.monotonic()
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                at, _, key = heapq.heappop(self._heap)
                if self._due.get(key) != at:
                    continue  # superseded by an earlier wish
                del self._due[key]
                if key in self._running:
                    self._dirty.add(key)
                    continue
                if key in self._ready_at:
                    continue  # already waiting for a worker
                self._ready_at[key] = now
                self._ready["react" if key in self._urgent else "tick"].append(key)
            self._dispatch()
            timeout = max(self._heap[0][0] - now, 0.0) if self._heap else 5.0
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=min(timeout, 5.0))

    def _dispatch(self) -> None:
        """Start waiting reconciles while workers are free: reactions first.

        While this process does not act (a standby, or a leader whose renewal is late) due
        keys stay parked here, at most one entry per canary, and run once it acts again: a
        wake is never dropped. (Dropping them lost wakes for good when a loaded API server
        delayed a renewal past the deadline for a moment and no change of leadership was
        seen, so nothing woke everything again.)"""
        if not self._acting():
            return
        for lane, limit in (("react", self._workers), ("tick", self._workers - self._reserve)):
            queue = self._ready[lane]
            while queue and len(self._running) < limit:
                key = queue.popleft()
                since = self._ready_at.pop(key, None)
                if since is None:
                    continue  # moved to the react lane and started from there
                lane_now = "react" if key in self._urgent else "tick"
                self._urgent.discard(key)
                self._metrics.queued.labels(lane_now).observe(time.monotonic() - since)
                self._running.add(key)
                task = asyncio.create_task(self._one(key))
                self._tasks.add(task)  # keep a reference until it is done
                task.add_done_callback(self._tasks.discard)

    async def _one(self, key: Key) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        delay: float | None
        try:
            delay = await loop.run_in_executor(self._pool, self._reconcile, key)
            self._failures.pop(key, None)
        except CanaryError as exc:
            delay = self._failed(key, exc)
        except Exception as exc:  # a bug must not stop every other canary: log, back off
            log.exception("reconcile of %s/%s crashed", *key)
            delay = self._failed(key, exc)
        finally:
            self._metrics.reconcile.observe(time.perf_counter() - started)
            self._running.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.wake(key)
        elif delay is not None:
            self.wake(key, delay)
        self._dispatch()  # a worker is free

    def _failed(self, key: Key, exc: BaseException) -> float:
        count = self._failures.get(key, 0)
        self._failures[key] = count + 1
        self._metrics.errors.labels(type(exc).__name__).inc()
        log.warning("reconcile of %s/%s failed: %s", key[0], key[1], exc)
        return ERROR_DELAYS[min(count, len(ERROR_DELAYS) - 1)]

    def shutdown(self) -> None:
        """Stop the worker threads (running reconciles finish)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Options:
    """How `canaryctl operator` runs."""

    kubeconfig: str | None = None
    namespaces: Sequence[str] = ()
    metrics_port: int | None = 8080
    health_port: int | None = 8081
    interval: float = 5.0
    workers: int = 32
    lease_name: str = "canaryctl-operator"
    lease_namespace: str = "default"
    lease_seconds: float = 15.0
    renew_deadline: float = 10.0
    retry_seconds: float = 2.0
    identity: str = field(default_factory=process_identity)


class Operator:
    """Wires the cache, the reconciler, the scheduler, leader election and kopf together."""

    def __init__(self, client: Client, options: Options) -> None:
        self.client = client
        self.options = options
        self.metrics = Metrics()
        count_requests(client, self.metrics)
        self.cache = Cache()
        self.recorder = Recorder(client, counter=self.metrics.events)
        self.reconciler = Reconciler(
            client, self.cache, metrics=self.metrics, recorder=self.recorder,
            identity=options.identity, interval=options.interval,
        )  # fmt: skip
        self.elector = LeaderElector(
            client, name=options.lease_name, namespace=options.lease_namespace,
            identity=options.identity, lease_seconds=options.lease_seconds,
            renew_deadline=options.renew_deadline, retry_seconds=options.retry_seconds,
            on_change=self._leadership_changed,
        )  # fmt: skip
        self.scheduler = Scheduler(
            self.reconciler.reconcile, acting=self.acting, metrics=self.metrics,
            workers=options.workers,
        )  # fmt: skip
        self.ready = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active_keys: set[Key] = set()

    # --- leadership -----------------------------------------------------------------------

    def acting(self) -> bool:
        """Reconcile only as the leader, and only once every watch has delivered its
        initial list (a half-filled cache would make a referenced config look missing)."""
        return self.ready and self.elector.acting()

    def _leadership_changed(self, acting: bool) -> None:
        self.metrics.leader.set(1 if acting else 0)
        if acting and self._loop is not None:
            self._loop.call_soon_threadsafe(self.scheduler.wake_all, list(self.cache.canaries))

    # --- kopf handlers --------------------------------------------------------------------

    def registry(self) -> kopf.OperatorRegistry:
        """The kopf handlers: watch events only (kopf writes nothing to our objects).

        They are coroutines, so they run on the event loop with the scheduler (kopf would
        run plain functions in threads); each only updates the cache and wakes canaries.
        """
        registry = kopf.OperatorRegistry()

        @kopf.on.startup(registry=registry)
        def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.posting.enabled = False  # our own Events, not kopf's log lines
            settings.peering.standalone = True  # a coordination Lease elects the leader
            settings.watching.server_timeout = 600
            settings.watching.client_timeout = 660
            settings.networking.error_backoffs = (1, 2, 5)
            # No runtime observation of CRDs and namespaces: the operator serves one CRD
            # that exists before it starts (the chart installs it) and exact namespaces,
            # so it needs no cluster-wide read of CRDs or namespaces (least privilege).
            settings.scanning.disabled = True

        @kopf.on.login(registry=registry)
        def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
            # A kubeconfig when one is given (CLI, tests); in a pod, its ServiceAccount.
            return kopf.login_with_kubeconfig(**kwargs) or in_cluster_login(**kwargs)

        @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
        async def canary_event(type: str, body: kopf.Body, **_: Any) -> None:
            meta = body["metadata"]
            key = (meta["namespace"], meta["name"])
            before = self.cache.canaries.get(key)
            if type == "DELETED":
                self.cache.drop_canary(key)
                self.metrics.forget(*key)
                self._count(key, None)
            else:
                self.cache.put_canary(body)
                self._count(key, body)
            after = self.cache.canaries.get(key)  # plain mappings, as `before`
            # A status-only change is (nearly always) the echo of our own write: a tick.
            urgent = after is None or _user_change(before, after)
            self.scheduler.wake(key, urgent=urgent)

        @kopf.on.event("apps", "v1", "deployments", registry=registry)
        async def deployment_event(type: str, body: kopf.Body, **_: Any) -> None:
            meta = body["metadata"]
            before = self.cache.deployment(meta["namespace"], meta["name"])
            woken = self.cache.put_deployment(body, deleted=type == "DELETED")
            # A new pod template (an image bump) is one event, not a burst: react at once.
            # Replica changes (our own steps) and status updates come in bursts: those wake
            # once per burst, as a tick.
            after = self.cache.deployment(meta["namespace"], meta["name"])
            new = after is None or _template(before) != _template(after)
            for key in woken:
                self.scheduler.wake(key, 0.0 if new else DEBOUNCE, urgent=new)

        for kind, plural in (("ConfigMap", "configmaps"), ("Secret", "secrets")):

            async def config_event(type: str, body: kopf.Body, _kind: str = kind, **_: Any) -> None:
                # Only a change of the data wakes anyone: a new revision of the target's config.
                for key in self.cache.put_config(_kind, body, deleted=type == "DELETED"):
                    self.scheduler.wake(key, DEBOUNCE, urgent=True)

            kopf.on.event("", "v1", plural, registry=registry, id=f"{plural}-event")(config_event)

        @kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", registry=registry)
        async def hpa_event(type: str, body: kopf.Body, **_: Any) -> None:
            # managed mode mirrors the target's HPA onto the primary
            for key in self.cache.put_hpa(body, deleted=type == "DELETED"):
                self.scheduler.wake(key, DEBOUNCE)

        @kopf.on.event("discovery.k8s.io", "v1", "endpointslices", registry=registry)
        async def endpointslice_event(body: kopf.Body, **_: Any) -> None:
            meta = body["metadata"]
            service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
            for key in self.cache.service_woken(meta["namespace"], service):
                if key in self._active_keys:
                    self.scheduler.wake(key, DEBOUNCE)  # only a running rollout waits on endpoints

        return registry

    def _count(self, key: Key, body: Any | None) -> None:
        """Gauges of known and active canaries, kept incrementally (O(1) per event)."""
        phase = ((body or {}).get("status") or {}).get("phase") if body is not None else None
        was = key in self._active_keys
        now = phase is not None and phase not in TERMINAL
        if now and not was:
            self._active_keys.add(key)
        elif was and not now:
            self._active_keys.discard(key)
        self.metrics.canaries.set(len(self.cache.canaries))
        self.metrics.active.set(len(self._active_keys))

    # --- running --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The probes: /healthz (the scheduling loop turns), /readyz (every watch has
        delivered its initial list, and the API server answers)."""
        return {
            "/healthz": lambda: time.monotonic() - self.scheduler.heartbeat < 30,
            "/readyz": self._readiness,
        }

    def _readiness(self) -> tuple[bool, str]:
        # A pod that cannot reach the API server, or whose credentials are refused, is not
        # Ready; nor one whose caches are still filling (it would not act yet).
        if not self.ready:
            pending = self.cache.pending()
            waiting = ", ".join(
                f"{kind} ({n} to come)" if n > 0 else f"{kind} (not listed yet)"
                for kind, n in pending.items()
            )
            return False, f"waiting for the initial lists of the watches: {waiting}"
        if not self.elector.in_contact():
            return False, "the API server did not answer about the leader Lease"
        return True, "watches synced; API server answering"

    def _list_keys(self, kind: str) -> set[Key]:
        """The keys of every object of `kind` the operator watches (one LIST per namespace,
        paged). Only the keys are kept: the watches fill the cache."""
        keys: set[Key] = set()
        for ns in self.options.namespaces or [ALL_NS]:
            for obj in self.client.list(LISTED[kind], namespace=ns, chunk_size=500):
                keys.add((obj.metadata.namespace, obj.metadata.name))
        return keys

    async def _sync(self) -> None:
        """Return once every watched kind's initial list is in the cache (see Cache)."""
        loop = asyncio.get_running_loop()
        todo: Sequence[str] = SYNCED_KINDS
        delays = iter(ERROR_DELAYS)
        while todo:
            try:
                for kind in todo:
                    keys = await loop.run_in_executor(None, self._list_keys, kind)
                    self.cache.expect(kind, keys)
            except (ApiError, *TRANSPORT_ERRORS) as exc:
                delay = next(delays, ERROR_DELAYS[-1])
                log.warning("listing %s for the start-up sync failed (%s); again in %gs",
                            kind, exc, delay)  # fmt: skip
                await asyncio.sleep(delay)
                continue
            deadline = time.monotonic() + RELIST_AFTER
            while self.cache.pending() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            todo = list(self.cache.pending())
            if todo:
                log.info("watches have not shown all listed objects of %s yet; listing again",
                         ", ".join(todo))  # fmt: skip

    async def main(self) -> None:
        """Run until SIGINT/SIGTERM (kopf handles the signals)."""
        self._loop = asyncio.get_running_loop()
        servers = []
        if self.options.metrics_port is not None:
            servers.append(serve(self.options.metrics_port, self.metrics, self.health()))
        if self.options.health_port is not None:
            servers.append(serve(self.options.health_port, None, self.health()))
        ready_flag = asyncio.Event()
        scheduler = asyncio.create_task(self.scheduler.run())

        async def mark_ready() -> None:
            await ready_flag.wait()
            await self._sync()
            self.ready = True
            self.elector.start()  # compete only once the caches are filled

        marker = asyncio.create_task(mark_ready())
        try:
            await kopf.operator(
                registry=self.registry(),
                clusterwide=not self.options.namespaces,
                namespaces=list(self.options.namespaces),
                standalone=True,
                ready_flag=ready_flag,
                # Our own identity (host/pid): kopf's default asks the passwd database for
                # the user, which an image running as an arbitrary uid does not list.
                identity=self.options.identity,
            )
        finally:
            marker.cancel()
            scheduler.cancel()
            self.elector.stop(release=True)
            self.scheduler.shutdown()
            self.recorder.close()  # what the last reconciles told is still posted
            for server in servers:
                server.shutdown()


def _template(body: Any | None) -> Any:
    return ((body or {}).get("spec") or {}).get("template")


def _user_change(before: Any | None, after: Any) -> bool:
    """Whether a Canary event carries more than a status change: new, a new spec, a
    command annotation, a deletion or finalizers (what a reconcile reacts to)."""
    if before is None:
        return True
    old, new = before.get("metadata") or {}, after.get("metadata") or {}
    return any(
        old.get(field) != new.get(field)
        for field in ("generation", "annotations", "deletionTimestamp", "finalizers")
    )


def in_cluster_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The pod's ServiceAccount, at the API server address the kubelet puts in the pod's
    environment (as client-go and lightkube do). kopf's own handler dials the name
    kubernetes.default.svc, which only resolves where the cluster runs a DNS service."""
    info = kopf.login_with_service_account(**kwargs)
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if info is None or not host:
        return info
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    return dataclasses.replace(info, server=f"https://{host}:{port}")


def run(client: Client, options: Options) -> None:
    """Run the operator in this process until it is stopped."""
    if options.kubeconfig:
        # kopf reads the same kubeconfig as our lightkube client
        os.environ["KUBECONFIG"] = str(options.kubeconfig)
    logging.getLogger("kopf").setLevel(logging.WARNING)
    asyncio.run(Operator(client, options).main())

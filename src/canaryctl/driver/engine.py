"""The rollout engine: one loop of observe -> decide -> persist -> act, for CLI and operator.

Every tick reads the stored record and the cluster, asks the pure core what to do,
writes the new status (guarded by resourceVersion, which also renews this process's
lease) and only then acts. A process killed between any two lines resumes from what is
stored and observed: actions are idempotent and re-derived on every tick.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from lightkube import Client

from canaryctl.core.backoff import Outage
from canaryctl.core.durations import format_duration
from canaryctl.core.machine import (
    Decision,
    DrainStable,
    EnsureReplicas,
    RemoveStable,
    ScaleDown,
    SetWeight,
    Wait,
    decide,
)
from canaryctl.core.models import (
    CanarySpec,
    CanaryStatus,
    Command,
    DeploymentObs,
    Observations,
    Phase,
    PodObs,
    Verdict,
    parse_command,
    parse_status,
    replica_split,
)
from canaryctl.driver.analysis import Analysis
from canaryctl.driver.report import Notice, Sink, Snapshot, VersionState
from canaryctl.errors import (
    ApiUnreachable,
    CanaryError,
    ClusterError,
    ConflictError,
    SpecError,
)
from canaryctl.kube import events, secrets, workloads
from canaryctl.kube.client import is_transient
from canaryctl.kube.store import RENEW_AFTER, ConfigMapStore, Record, RolloutStore
from canaryctl.kube.store import identity as process_identity
from canaryctl.kube.workloads import DeploymentInfo
from canaryctl.routers import Router, make_router

log = logging.getLogger(__name__)


class LeaseHeld(CanaryError):
    """Another live process drives this rollout."""

    def __init__(self, holder: str, age: float) -> None:
        super().__init__(f"rollout is driven by {holder} (lease renewed {age:.0f}s ago)")
        self.holder = holder


@dataclass
class TickResult:
    """What one tick did."""

    status: CanaryStatus
    acted: bool


#: Seconds after which a tick's observations are too old to act on (see Engine.tick): the
#: lease's length, far above a tick's few requests even on a loaded machine (a tick that
#: always took longer would never act).
STALE_AFTER = 15.0

#: Seconds of continuous API outage after which `Engine.run` gives up (`--api-timeout`).
DEFAULT_API_TIMEOUT = 120.0


@dataclass(frozen=True)
class ApiRetry:
    """One retry during an API outage (or, with `recovered`, its end), for status lines."""

    down_for: float
    attempts: int
    delay: float
    timeout: float
    cause: str
    recovered: bool = False

    def line(self) -> str:
        """E.g. "API server unreachable since 12 s, retrying (timeout 2m)"."""
        if self.recovered:
            return (
                f"API server reachable again after {self.down_for:.0f} s "
                f"({self.attempts} retries); re-reading the rollout"
            )
        cause = self.cause if len(self.cause) <= 120 else self.cause[:117] + "..."
        return (
            f"API server unreachable since {self.down_for:.0f} s, retrying "
            f"(timeout {format_duration(self.timeout)}): {cause}"
        )


def _obs(info: DeploymentInfo) -> DeploymentObs:
    if not info.exists:
        return DeploymentObs.missing()
    return DeploymentObs(
        desired_replicas=info.desired_replicas,
        ready_replicas=info.ready_replicas,
        updated_replicas=info.updated_replicas,
        available_replicas=info.available_replicas,
        progress_deadline_exceeded=info.progress_deadline_exceeded,
        pods=tuple(
            PodObs(
                name=p.name,
                ready=p.ready,
                restart_count=p.restart_count,
                waiting_reason=p.waiting_reason,
            )
            for p in info.pods
        ),
    )


class Engine:
    """Drives one canary. The same class serves `canaryctl rollout` and the operator."""

    def __init__(
        self,
        client: Client,
        spec: CanarySpec,
        *,
        sink: Sink | None = None,
        analysis: Analysis | None = None,
        clock: Callable[[], float] = time.time,
        identity: str | None = None,
        record_events: bool = True,
        store: RolloutStore | None = None,
    ) -> None:
        if spec.stable is None or spec.canary is None:
            raise SpecError(
                "targetRef",
                "managed mode is driven by the operator, which resolves targetRef into the "
                "<target>-primary and <target> Deployments (CanarySpec.resolved()) before "
                "building an Engine",
            )
        self.client = client
        self.spec = spec
        # Where the record lives: a ConfigMap (CLI) or the Canary resource (operator).
        self.store: RolloutStore = store if store is not None else ConfigMapStore(client)
        self.sink = sink
        self.analysis = analysis or analysis_for(client, spec)
        self.clock = clock
        self.me = identity or process_identity()
        self.record_events = record_events
        self.canary_ns = spec.canary_namespace or spec.namespace
        self._started = clock()

    @classmethod
    def for_canary(cls, client: Client, canary: object, **options: object) -> Engine:
        """An Engine for a Canary resource (pair mode): its spec, its status as the store.

        `canary` is the Canary object (lightkube resource or mapping) as read or watched;
        SpecError names the invalid field. `options` go to `Engine(...)` (sink, analysis,
        clock, identity, record_events); the store is a `CanaryStore`, whose lease is the
        operator's leader election (see `canaryctl.kube.canary_store`).
        """
        from canaryctl.kube.canary import spec_of
        from canaryctl.kube.canary_store import CanaryStore

        clock = options.get("clock", time.time)
        store = CanaryStore(client, clock=clock)  # type: ignore[arg-type]
        return cls(client, spec_of(canary), store=store, **options)  # type: ignore[arg-type]

    # --- setup ---------------------------------------------------------------

    def validate(self) -> None:
        """Check the cluster objects the spec names; SpecError without changing anything."""
        stable = workloads.read_deployment(self.client, self.spec.stable, self.spec.namespace)
        if not stable.exists:
            raise SpecError(
                "stable", f"deployment/{self.spec.stable} not found in {self.spec.namespace}"
            )
        self._router(max(stable.desired_replicas, 1)).reconcile()
        for gap in shutdown_gaps(self.client, self.spec):
            self._notice("Warning", "UngracefulShutdown", gap)

    def start(self) -> Record:
        """Find this rollout's record or create it; a finished one with another spec restarts."""
        if self.store.source == "configmap":
            self._refuse_if_owned()
        record = self.store.get(self.spec.name, self.spec.namespace)
        wanted = self.spec.model_dump(mode="json", by_alias=True)
        if record is None:
            self.validate()
            return self.store.create(
                Record(name=self.spec.name, namespace=self.spec.namespace, spec=wanted)
            )
        status = parse_status(record.status, self.store.describe(self.spec.name))
        # A Canary resource shows the user's spec (its hash is of the form an Engine drives,
        # see CanarySpec.resolved); its record also counts as changed when the stored
        # status was decided for another spec.
        if record.spec_hash is not None:
            edited = record.spec_hash != self.spec.fingerprint
        else:
            edited = record.spec != wanted
        stale = status is not None and status.observed_spec_hash not in ("", self.spec.fingerprint)
        if edited or stale:
            if status is not None and not status.phase.terminal:
                # A live rollout with an edited spec: the core adopts the new spec safely.
                self._notice("Warning", "SpecChanged", "spec differs from the stored one")
            else:
                self.validate()
                record.status = None  # a new rollout under the same name
            record.spec = wanted
            return self.store.update(record)
        if status is None:
            # A record with no rollout yet (a new Canary, or a CLI killed before its first
            # tick): check the objects before the first decision, as for a new record.
            self.validate()
        return record

    def _refuse_if_owned(self) -> None:
        """A rollout a Canary resource owns is the operator's: never drive it from here too."""
        from canaryctl.kube.canary_store import owner_of

        owner = owner_of(self.client, self.spec)
        if owner is not None:
            raise SpecError(
                "canary",
                f"{owner}, so the canaryctl operator drives this rollout; steer it with "
                f"`canaryctl get|promote|abort|pause|resume`, or delete the Canary first",
            )

    def _router(self, baseline: int) -> Router:
        return make_router(self.client, self.spec, baseline)

    # --- one tick ------------------------------------------------------------

    def _first_verdict(self, status: CanaryStatus | None) -> Verdict | None:
        """Before a rollout's first look: the gates' verdict (a shut gate holds from the
        start), or None."""
        if self.analysis is None or status is not None:
            return None
        return self.analysis.gate_verdict({})

    def tick(self) -> TickResult:
        """Observe, decide, persist, act. Raises LeaseHeld when another process drives.

        Webhooks and Prometheus queries of one tick share one budget of half the lease
        (`analysis.TICK_SECONDS`), so a slow hook or Prometheus cannot hold a tick until
        another process may take the lease over. The tick acts on the Deployments it
        observed (one read of each, see `workloads.one_view`); a Deployment it scales is
        read afresh after that write."""
        with workloads.one_view():
            if self.analysis is None:
                return self._tick()
            with self.analysis.tick_budget():
                return self._tick()

    def _tick(self) -> TickResult:
        now = self.clock()
        record = self.store.get(self.spec.name, self.spec.namespace)
        if record is None:
            raise ClusterError(f"rollout record {self.store.describe(self.spec.name)} disappeared")
        if not self.store.lease_free(record, self.me, now):
            # Aged with the clock now: the read may have been held (e.g. a partition), and
            # `now` from before it would show a renewal in the future.
            raise LeaseHeld(record.holder or "?", max(0.0, self.clock() - record.renewed))
        status = parse_status(record.status, self.store.describe(self.spec.name))

        # observe
        stable = workloads.read_deployment(self.client, self.spec.stable, self.spec.namespace)
        canary = workloads.read_deployment(self.client, self.spec.canary, self.canary_ns)
        baseline = (
            status.baseline_replicas
            if status and status.baseline_replicas
            else max(stable.desired_replicas, 1)
        )
        generations = {stable.name: stable.generation, canary.name: canary.generation}
        router = make_router(self.client, self.spec, baseline, generations)
        command = parse_command(record.command)
        if (
            command is not None
            and command.unreadable
            and (status is None or command.id != status.last_command_id)
        ):
            self._notice(
                "Warning",
                "UnreadableCommand",
                f"{self.store.describe(self.spec.name)}: the stored command is not one "
                "canaryctl wrote; pausing (nothing moves). Send it again with "
                "`canaryctl promote|abort|pause|resume`",
            )
        drift = self._drift(status, stable, baseline)
        pending = (
            command is not None and status is not None and (command.id != status.last_command_id)
        )
        new_drift = drift is not None and status is not None and drift[0] != status.drift_handled
        if new_drift and not pending:
            command = Command(
                action="pause",
                id=drift[0],
                cause=f"another actor scaling deployment/{self.spec.stable}",
            )
        analysis = None
        if self.analysis is not None and status is not None:
            label = self.analysis.config.version_label
            versions = (stable.pod_labels.get(label, ""), canary.pod_labels.get(label, ""))
            analysis = self.analysis.evaluate(status, now, versions)
        # Endpoints are read only when a version may lose its pods (the machine holds
        # without them), so a progressing rollout costs no extra API calls.
        draining = status is not None and status.phase in (Phase.PROMOTING, Phase.ROLLING_BACK)
        obs = Observations(
            now=now,
            stable=_obs(stable),
            canary=_obs(canary),
            effective_weight=router.get_weight() if stable.exists or canary.exists else None,
            analysis=analysis.verdict if analysis else self._first_verdict(status),
            command=command,
            stable_serving=router.serving("stable") if draining else None,
            canary_serving=router.serving("canary") if draining else None,
        )

        # decide
        decision = decide(self.spec, status, obs)

        if new_drift and not pending:
            decision.status.drift_handled = drift[0]
        new_warning = None
        if analysis is not None:
            previous = (status.last_verdict or {}).get("warning") if status else None
            decision.status.analysis_state = analysis.state
            decision.status.last_verdict = analysis.summary
            if analysis.warning and analysis.warning != previous:
                new_warning = analysis.warning

        # persist: the decision is stored (and the lease renewed) before anything is done.
        # At rest (the same status as stored, the lease ours and renewed less than
        # RENEW_AFTER ago) nothing is written: a held pause costs one write per RENEW_AFTER
        # instead of one per tick. The lease is as long as ever, so at least two thirds of
        # it is left when acting on it (see docs/reliability.md, "Lease at rest").
        stored = decision.status.to_dict()
        at_rest = (
            stored == record.status
            and not decision.status.phase.terminal
            and record.holder == self.me
            and 0.0 <= self.clock() - record.renewed < RENEW_AFTER
        )
        if not at_rest:
            record.status = stored
            record.holder, record.renewed = self.me, now
            if decision.status.phase.terminal:
                record.holder = None  # release: nothing left to drive
            try:
                self.store.update(record)
            except ConflictError:
                # Someone wrote meanwhile (a command, another process): decide again next tick.
                return TickResult(status=status or decision.status, acted=False)

        # act, but not on stale observations or an old lease: when reading and storing took
        # longer than STALE_AFTER (a request held by an API server that lost etcd, or slow
        # to answer after an outage), the cluster may have moved since it was read, and at
        # rest the lease is counted from its last renewal. The decision is stored; the next
        # tick observes afresh and re-derives the same idempotent actions, exactly as after
        # a kill between storing and acting.
        since = record.renewed if at_rest else now
        if self.clock() - since > STALE_AFTER:
            log.info(
                "observations are %.0fs old after storing; acting next tick", self.clock() - now
            )
            return TickResult(status=decision.status, acted=False)
        if new_drift and not pending:
            self._notice("Warning", "ScaledByAnotherActor", drift[1])
        foreign = self._foreign_routing(status, decision.status, obs)
        if foreign:
            self._notice("Warning", "RoutingChangedByAnotherActor", foreign)
        if new_warning:
            self._notice("Warning", "AnalysisNoData", f"{new_warning}; not promoting on it")
        self._act(decision, router, {"stable": stable, "canary": canary})
        for ev in decision.events:
            self._notice(ev.type, ev.reason, ev.message, decision.status.phase.value)
        if decision.status.phase.terminal:
            # Remove what the router created (canary Ingress, Services, tester routes);
            # idempotent, so a process killed right after the final decision still cleans up.
            router.cleanup()
        ended = decision.status.phase.terminal and (status is None or not status.phase.terminal)
        if ended and self.analysis is not None:
            self.analysis.finish(decision.status)
        if self.sink is not None:
            self.sink.snapshot(self._snapshot(decision.status, stable, canary, obs))
        return TickResult(status=decision.status, acted=True)

    def _foreign_routing(
        self, before: CanaryStatus | None, after: CanaryStatus, obs: Observations
    ) -> str | None:
        """Someone else changed the weight a weight router had settled at a held step.

        A held step writes nothing (see docs/reliability.md), so once the traffic check
        passed, a different weight with both versions ready is another writer's (e.g. a
        GitOps self-heal). canaryctl restores it on this tick; this says so, once per
        change (the failed traffic check then stops the repeat until it converges again).
        """
        if before is None or self.spec.router.kind == "replicas":
            return None
        if before.phase is not Phase.PAUSED or after.phase is not Phase.PAUSED:
            return None
        traffic = before.checks.get("traffic")
        weight = obs.effective_weight
        if traffic is None or not traffic.passed or weight is None:
            return None
        if abs(weight - before.weight) < 0.5 or not (
            obs.canary.ready_replicas and obs.stable.ready_replicas
        ):
            return None
        return (
            f"the {self.spec.router.kind} routing object carried {weight:g}% for the canary "
            f"instead of the {before.weight}% canaryctl had set at this step: another actor "
            "changed it (a GitOps self-heal?); canaryctl sets it again. Exclude the routing "
            "weights from that tool's sync during rollouts to stop the tug of war"
        )

    def _drift(
        self, status: CanaryStatus | None, stable: DeploymentInfo, baseline: int
    ) -> tuple[str, str] | None:
        """Someone else scaled the stable mid-rollout: outside what any of our steps sets."""
        if status is None or status.phase not in (Phase.PROGRESSING, Phase.PAUSED):
            return None
        if not stable.exists or self.spec.router.kind != "replicas":
            return None
        low, _ = replica_split(baseline, status.weight, self.spec.replica_mode)
        if low <= stable.desired_replicas <= baseline:
            return None
        message = (
            f"deployment/{stable.name} was scaled to {stable.desired_replicas} by another "
            f"actor (this step expects {low}..{baseline}); rollout paused: fix the replicas "
            f"or run `canaryctl resume {self.spec.name}` to let canaryctl set them again"
        )
        return f"drift-{stable.name}-{stable.generation}", message

    def _act(self, decision: Decision, router: Router, observed: dict[str, DeploymentInfo]) -> None:
        st = decision.status
        # Paused because someone else scaled the stable: leave their replicas alone until
        # the user resumes (or aborts), instead of silently fighting them.
        hands_off = (
            st.phase is Phase.PAUSED
            and st.drift_handled is not None
            and st.last_command_id == st.drift_handled
        )
        for action in decision.actions:
            if hands_off and isinstance(action, (SetWeight, EnsureReplicas, ScaleDown)):
                continue
            match action:
                case EnsureReplicas(target=target, replicas=replicas):
                    info = observed[target]
                    if info.exists and info.desired_replicas < replicas:
                        self._scale(info, replicas)
                case ScaleDown(target=target, replicas=replicas):
                    info = observed[target]
                    if info.exists and info.desired_replicas > replicas:
                        self._scale(info, replicas)
                case SetWeight(weight=weight, stable_replicas=s, canary_replicas=c):
                    router.set_weight(weight, replicas=(s, c))
                case DrainStable():
                    router.promote(retire=False)
                case RemoveStable():
                    router.promote()
                case Wait():
                    pass  # informative only; shown through the snapshot's message

    def _scale(self, observed: DeploymentInfo, replicas: int) -> None:
        # Guarded by the generation we decided on: a spec change by anyone else since the
        # observation makes this fail, and the next tick sees (and reports) that change.
        workloads.scale(
            self.client, observed.name, observed.namespace, replicas,
            generation=observed.generation,
        )  # fmt: skip

    # --- reporting -----------------------------------------------------------

    def _notice(self, type_: str, reason: str, message: str, phase: str = "") -> None:
        if self.analysis is not None:
            self.analysis.notify(phase or reason, type_, f"{reason}: {message}")
        if self.sink is not None:
            self.sink.notice(Notice(type_, reason, message))
        if self.record_events:
            try:
                events.emit(self.client, self.canary_ns, self.spec.canary, type_, reason, message)
            except ClusterError as exc:
                log.warning("could not record event: %s", exc)

    def _snapshot(
        self,
        status: CanaryStatus,
        stable: DeploymentInfo,
        canary: DeploymentInfo,
        obs: Observations,
    ) -> Snapshot:
        return snapshot_of(
            self.spec, status, stable, canary, obs.effective_weight, self.clock() - self._started
        )

    def release(self) -> None:
        """Give up the lease at once (on Ctrl-C), so a rerun need not wait for it to expire."""
        for _ in range(3):
            try:
                record = self.store.get(self.spec.name, self.spec.namespace)
                if record is None or record.holder != self.me:
                    return
                record.holder = None
                self.store.update(record)
                return
            except ConflictError:
                continue
            except Exception as exc:
                # Interrupted during an API outage: the lease then expires by itself (and a
                # rerun on this host takes it at once, this process being gone).
                if is_transient(exc):
                    return
                raise

    # --- the loop ------------------------------------------------------------

    @staticmethod
    def _end_outage(outage: Outage, on_api_retry: Callable[[ApiRetry], None] | None) -> None:
        """A call succeeded: report the end of an outage (if one was going on), reset it."""
        if outage.since is not None and on_api_retry is not None:
            down = outage.down_for(time.monotonic())
            on_api_retry(ApiRetry(down, outage.attempts, 0.0, outage.timeout, "", recovered=True))
        outage.recovered()

    def run(
        self,
        interval: float = 1.0,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_lease_wait: Callable[[LeaseHeld], None] | None = None,
        max_failures: int = 30,
        api_timeout: float = DEFAULT_API_TIMEOUT,
        on_api_retry: Callable[[ApiRetry], None] | None = None,
        resume_hint: str = "Rerun the same command to resume.",
    ) -> CanaryStatus:
        """Tick until the rollout reaches a terminal phase (or should_stop says so).

        An unreachable API server (refused, timed out, 429, 5xx) is retried with capped
        exponential backoff and jitter; `on_api_retry` hears of every retry. Past
        `api_timeout` seconds of continuous outage, ApiUnreachable is raised. Nothing read
        before the outage is used after it: every tick (and `start`) reads the record and
        the cluster afresh, and the record's write is guarded by its resourceVersion.
        """
        outage = Outage(timeout=api_timeout)
        started = False
        failures = 0
        while True:
            try:
                if not started:
                    self.start()
                    started = True
                    self._end_outage(outage, on_api_retry)
                    continue
                result = self.tick()
            except LeaseHeld as held:
                self._end_outage(outage, on_api_retry)  # the API answered
                if on_lease_wait is not None:
                    on_lease_wait(held)
                time.sleep(interval)
                continue
            except ConflictError as exc:
                self._end_outage(outage, on_api_retry)
                log.info("conflict, retrying: %s", exc)
                time.sleep(min(interval, 0.5))
                continue
            except Exception as exc:
                if not is_transient(exc):
                    if not isinstance(exc, ClusterError):
                        raise
                    # Other API trouble: nothing was half-done (the status is stored
                    # first), so retry, and give up only when the API stays unusable.
                    failures += 1
                    if failures >= max_failures:
                        raise
                    self._notice("Warning", "ApiError", f"{exc} (retrying)")
                    time.sleep(interval)
                    continue
                now = time.monotonic()
                delay = outage.failed(now, random.random())
                cause = f"{type(exc).__name__}: {exc}"
                if delay is None:
                    raise ApiUnreachable(
                        outage.down_for(now), api_timeout, cause, resume_hint
                    ) from exc
                # No event is recorded: the API it would go to is the one that is down.
                log.info("API server unreachable, retrying in %.1fs: %s", delay, cause)
                if on_api_retry is not None:
                    on_api_retry(
                        ApiRetry(outage.down_for(now), outage.attempts, delay, api_timeout, cause)
                    )
                time.sleep(delay)
                continue
            failures = 0
            self._end_outage(outage, on_api_retry)
            # A terminal decision ends the loop once acted on (its clean-up done); one left
            # unacted (stale observations) is acted on by the next tick.
            if (result.status.phase.terminal and result.acted) or should_stop():
                return result.status
            time.sleep(interval)


def analysis_for(client: Client, spec: CanarySpec) -> Analysis | None:
    """The spec's analysis as a rollout runs it (None without an `analysis` block).

    The one place the block is validated (`parse_analysis`, the webhooks, Prometheus URL
    and auth): SpecError names the field. Makes no request (Secrets are read when a query
    needs them), so `plan` refuses exactly what `rollout` refuses, before reading anything.
    """
    return Analysis.from_spec(spec, secrets=secrets.getter(client, spec.namespace))


def shutdown_gaps(client: Client, spec: CanarySpec) -> list[str]:
    """What the stable and canary pod templates lack for a lossless scale-down."""
    gaps = workloads.graceful_shutdown_gaps(client, spec.stable, spec.namespace)
    canary_ns = spec.canary_namespace or spec.namespace
    return gaps + workloads.graceful_shutdown_gaps(client, spec.canary, canary_ns)


def snapshot_of(
    spec: CanarySpec,
    status: CanaryStatus,
    stable: DeploymentInfo,
    canary: DeploymentInfo,
    effective_weight: float | None,
    elapsed: float,
) -> Snapshot:
    """A report of one rollout for views and `canaryctl get`."""
    return Snapshot(
        name=spec.name,
        namespace=spec.namespace,
        phase=status.phase.value,
        stage=status.stage.value if status.stage else None,
        step=status.step_index,
        steps=len(spec.steps),
        desired_weight=status.weight,
        effective_weight=effective_weight,
        stable=VersionState(
            stable.name, stable.desired_replicas, stable.ready_replicas, stable.exists
        ),
        canary=VersionState(
            canary.name, canary.desired_replicas, canary.ready_replicas, canary.exists
        ),
        message=status.message or status.reason,
        elapsed=elapsed,
        checks=[c.model_dump(mode="json") for c in status.history],
        analysis=status.last_verdict,
        current_checks=[c.model_dump(mode="json") for c in status.checks.values()],
        reason=status.reason,
        pause_reason=status.pause_reason.value if status.pause_reason else None,
        pause_until=status.pause_until,
        hold_reason=status.hold_reason,
    )

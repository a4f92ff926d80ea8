"""The pure rollout state machine: (spec, stored status, observations) -> decision.

`decide` is deterministic and reads no clock: `Observations.now` is the time. It
applies every transition the observations allow, then returns the new status with
the actions that make the world match it. The driver persists the status first and
then runs the actions in order, so a driver killed at any point resumes correctly:
actions describe the desired state of the current stage (they are re-emitted on
every call and are idempotent), and a stage only ends once its effect is observed.

Phases and stages:

    Pending -> Progressing(step i: scale-canary -> shift-traffic) -> [Paused] -> ...
            -> Promoting(scale-canary -> shift-traffic -> remove-stable) -> Succeeded
    Progressing | Paused | Promoting -> RollingBack(restore-stable -> shift-to-stable
            -> remove-canary) -> RolledBack

Capacity comes before traffic: a destination is scaled and observed ready before
weight moves to it, and on rollback the stable is back at its baseline replica count
before canary capacity is removed.

Traffic leaves before pods do: the version that loses (the stable at promotion, the
canary at rollback) keeps its pods until no Service that carries its traffic lists any
of them as serving (`Observations.stable_serving`/`canary_serving`) and `drainDelay`
has passed since, so proxies and kube-proxy have caught up and requests in flight end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from canaryctl.core.durations import format_duration
from canaryctl.core.models import (
    HISTORY_LIMIT,
    CanarySpec,
    CanaryStatus,
    CheckRecord,
    Observations,
    OnPromotion,
    PauseReason,
    PauseStep,
    Phase,
    SetCanaryScaleStep,
    SetWeightStep,
    Stage,
    Target,
    Verdict,
    replica_split,
)

#: Largest gap, in percentage points, between reported and expected canary share
#: (weight routers report whole percents; the replicas router may need less, below).
WEIGHT_TOLERANCE = 0.5
#: Container waiting reasons that fail the canary at once (they do not heal by waiting).
FATAL_WAITING_REASONS = frozenset(
    {"CrashLoopBackOff", "CreateContainerConfigError", "InvalidImageName", "ErrImageNeverPull"}
)
#: Most analysis check records copied into the history per decision, so one decision
#: never evicts what it has just written (which would break idempotence).
ANALYSIS_RECORDS_PER_DECISION = 20


# --- actions and events -----------------------------------------------------------------


@dataclass(frozen=True)
class EnsureReplicas:
    """Scale `target` up to at least `replicas`; never scales down (an HPA may add more)."""

    target: Target
    replicas: int


@dataclass(frozen=True)
class SetWeight:
    """Send `weight` percent of traffic to the canary.

    Weight routers (nginx, istio, gateway) patch the weight and ignore the counts. The
    replicas router splits traffic by pod ratio, so it realises the step by scaling
    the stable and canary Deployments to exactly `stable_replicas`/`canary_replicas`
    (a missing Deployment counts as already scaled down).
    """

    weight: int
    stable_replicas: int
    canary_replicas: int


@dataclass(frozen=True)
class ScaleDown:
    """Scale `target` down to at most `replicas`; a missing Deployment is already done."""

    target: Target
    replicas: int


@dataclass(frozen=True)
class DrainStable:
    """After the switch to 100%: take the old pods out of every route and Service.

    The router points the stable Service (and its own routes) at the canary's pods and
    leaves the old Deployment running, so its pods drain before `RemoveStable`.
    """


@dataclass(frozen=True)
class RemoveStable:
    """After promotion: delete the stable Deployment or scale it to zero (`mode`).

    Emitted only once the old pods have drained (no serving endpoint for `drainDelay`).
    """

    mode: OnPromotion


@dataclass(frozen=True)
class Wait:
    """Informative, for live views: what the rollout waits for, and until when if timed."""

    reason: str
    until: float | None = None


Action = EnsureReplicas | SetWeight | ScaleDown | DrainStable | RemoveStable | Wait


@dataclass(frozen=True)
class Event:
    """A transition worth telling people about (Kubernetes Event, CLI line)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """Result of `decide`: persist `status`, then run `actions` in order, emit `events`."""

    status: CanaryStatus
    actions: tuple[Action, ...]
    events: tuple[Event, ...]


# --- the decision -----------------------------------------------------------------------


class _Run:
    """Working state of one `decide` call (a private copy of the status)."""

    def __init__(self, spec: CanarySpec, obs: Observations, status: CanaryStatus) -> None:
        self.spec = spec
        self.obs = obs
        self.st = status
        self.now = obs.now
        self.events: list[Event] = []
        self.wait: Wait | None = None

    def event(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def hold(self, reason: str, until: float | None = None) -> bool:
        """Stop advancing this call, saying why; returns False for `_advance`."""
        self.wait = Wait(reason, until)
        return False

    def check(
        self,
        name: str,
        passed: bool,
        value: float | None = None,
        threshold: float | None = None,
        message: str = "",
    ) -> None:
        """Record a check in the history when its outcome differs from the last one."""
        last = self.st.checks.get(name)
        outcome = (passed, value, threshold, message)
        if last is not None and (last.passed, last.value, last.threshold, last.message) == outcome:
            return
        record = CheckRecord(
            time=self.now,
            name=name,
            passed=passed,
            value=value,
            threshold=threshold,
            message=message,
        )
        self.st.checks[name] = record
        _append_history(self.st, [record])


def _append_history(st: CanaryStatus, records: list[CheckRecord]) -> None:
    st.history.extend(records)
    st.history[:] = trim_history(st.history)


#: Records of these checks are the rollout's own course (the weights it went through);
#: trimming drops them last, so that a long analysis cannot push the first steps out of
#: the history that `canaryctl report` and the step-order invariant read.
_COURSE_CHECKS = frozenset({"traffic"})


def trim_history(history: list[CheckRecord]) -> list[CheckRecord]:
    """The newest `HISTORY_LIMIT` records, dropping analysis and readiness records first.

    Course records (`_COURSE_CHECKS`) keep up to half of the limit whatever their age;
    beyond that, and for every other record, the oldest go first. Order is kept.
    """
    excess = len(history) - HISTORY_LIMIT
    if excess <= 0:
        return list(history)
    course = [i for i, r in enumerate(history) if r.name in _COURSE_CHECKS]
    others = [i for i, r in enumerate(history) if r.name not in _COURSE_CHECKS]
    over_quota = course[: max(0, len(course) - HISTORY_LIMIT // 2)]
    kept_course = course[len(over_quota) :]
    # oldest first: course records over their quota, then the others, then the rest
    candidates = over_quota + others + kept_course
    dropped = set(candidates[:excess])
    return [r for i, r in enumerate(history) if i not in dropped]


def decide(spec: CanarySpec, status: CanaryStatus | None, obs: Observations) -> Decision:
    """Decide the next status and actions of one rollout; pure and deterministic.

    `status` is None for a rollout not started yet. Calling `decide` again with the
    returned status and the same observations returns the same status and actions and
    no events. Terminal phases (Succeeded, RolledBack) return the status unchanged.
    """
    if status is not None and status.phase.terminal:
        return Decision(status, (), ())
    if status is None:
        st = CanaryStatus(observed_spec_hash=spec.fingerprint)
    else:
        st = status.model_copy(deep=True)
    run = _Run(spec, obs, st)
    _note_analysis(run)
    _adopt_spec(run)
    _apply_command(run)
    # Every transition moves forward (a step, a stage, a phase), so this settles fast;
    # the bound only turns a bug into an error instead of a hang.
    for _ in range(4 * (len(spec.steps) + 8)):
        run.wait = None
        if not _advance(run):
            break
    else:
        raise RuntimeError("rollout machine did not settle: transitions keep firing")
    # Kept in the status so every front end (`get`, the Canary's conditions) can say why
    # the rollout does not move; the same observations give the same reason, so a held
    # rollout's status stays as stored.
    st.hold_reason = run.wait.reason if run.wait is not None else ""
    return Decision(st, _actions(run), tuple(run.events))


def _advance(run: _Run) -> bool:
    """Apply one transition if the observations allow it; False when settled."""
    phase = run.st.phase
    if phase is Phase.PENDING:
        return _pending(run)
    if phase in (Phase.PROGRESSING, Phase.PAUSED):
        return _progressing(run)
    if phase is Phase.PROMOTING:
        return _promoting(run)
    if phase is Phase.ROLLING_BACK:
        return _rolling_back(run)
    return False


# --- inputs that arrive outside the step plan -------------------------------------------


def _note_analysis(run: _Run) -> None:
    verdict = run.obs.analysis
    if verdict is None:
        return
    seen = run.st.analysis_seen_until
    fresh = sorted(
        (c for c in verdict.checks if seen is None or c.time > seen), key=lambda c: c.time
    )
    if fresh:
        _append_history(run.st, fresh[-ANALYSIS_RECORDS_PER_DECISION:])
        run.st.analysis_seen_until = fresh[-1].time
    run.check("analysis", verdict.decision != "rollback", message=verdict.reason)


def _reanchor(spec: CanarySpec, index: int, weight: int) -> int:
    """Step index to continue at under an edited plan without lowering `weight`."""
    start = 0
    for i, step in enumerate(spec.steps[: spec.plan_length]):
        if isinstance(step, SetWeightStep) and step.set_weight <= weight:
            start = i + 1
    return max(start, min(index, spec.plan_length))


def _adopt_spec(run: _Run) -> None:
    st, spec = run.st, run.spec
    fingerprint = spec.fingerprint
    if st.observed_spec_hash == fingerprint:
        return
    st.observed_spec_hash = fingerprint
    if st.phase is Phase.PENDING:
        return
    if st.phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
        run.event("Warning", "SpecChanged", f"spec changed; finishing {st.phase} first")
        return
    # The step at the index may differ now, so it starts afresh (clock and stage).
    index = _reanchor(spec, st.step_index, st.weight)
    user_hold = st.pause_reason if st.pause_reason is not PauseReason.STEP else None
    _enter_step(run, index)
    if user_hold is not None:
        st.phase, st.pause_reason = Phase.PAUSED, user_hold
    run.event(
        "Warning",
        "SpecChanged",
        f"spec changed during the rollout; restarting at step {index + 1} of the new plan "
        f"from {st.weight}%",
    )


def _apply_command(run: _Run) -> None:
    st, cmd = run.st, run.obs.command
    if cmd is None or cmd.id == st.last_command_id:
        return
    st.last_command_id = cmd.id
    phase = st.phase

    def ignore(why: str) -> None:
        run.event("Warning", "CommandIgnored", f"{cmd.action}: {why}")

    if cmd.action == "abort":
        if phase is Phase.PENDING:
            st.phase, st.reason = Phase.ROLLED_BACK, "Aborted"
            st.message = "aborted before the rollout started; nothing to undo"
            run.event("Warning", "RolledBack", st.message)
        elif phase is Phase.ROLLING_BACK:
            ignore("already rolling back")
        elif phase is Phase.PROMOTING and st.stage is Stage.REMOVE_STABLE:
            ignore("too late: the stable is being removed after promotion")
        else:
            _roll_back(run, "Aborted", "aborted by a user command")
    elif cmd.action == "pause":
        if phase is Phase.PROGRESSING or (
            phase is Phase.PAUSED and st.pause_reason is not PauseReason.COMMAND
        ):
            st.phase, st.pause_reason, st.pause_until = Phase.PAUSED, PauseReason.COMMAND, None
            by = cmd.cause or "a user command"
            run.event("Normal", "Paused", f"paused by {by}; weights are frozen")
        else:
            ignore(f"only a progressing rollout can be paused (phase {phase})")
    elif cmd.action == "resume":
        if phase is Phase.PAUSED and st.pause_reason is not PauseReason.STEP:
            # Resuming over a degraded stable grants it another readyDeadline.
            st.phase, st.pause_reason, st.stable_degraded_since = Phase.PROGRESSING, None, None
            run.event("Normal", "Resumed", "resumed by a user command")
        elif phase is Phase.PAUSED:
            ignore("this is a pause step: promote approves it")
        else:
            ignore(f"nothing is paused (phase {phase})")
    elif cmd.full:
        if phase in (Phase.PROGRESSING, Phase.PAUSED):
            _promote(run, "PromotedByUser", "promoted by a user command, skipping remaining steps")
        else:
            ignore(f"only a progressing rollout can be promoted (phase {phase})")
    elif phase is Phase.PAUSED and st.pause_reason is PauseReason.STEP:
        run.event("Normal", "Approved", f"pause step {st.step_index + 1} approved by a user")
        _enter_step(run, st.step_index + 1)
    else:
        ignore("no pause step to approve; a full promotion skips all remaining steps")


# --- transitions --------------------------------------------------------------------------


def _enter_step(run: _Run, index: int) -> None:
    st, spec = run.st, run.spec
    st.phase, st.step_index, st.step_started_at = Phase.PROGRESSING, index, run.now
    st.stage, st.pause_reason, st.pause_until = None, None, None
    if index < spec.plan_length:
        step = spec.steps[index]
        if isinstance(step, SetWeightStep):
            st.stage = Stage.SCALE_CANARY
            _, canary = replica_split(st.baseline_replicas, step.set_weight, spec.replica_mode)
            verdict = run.obs.analysis
            where = f"step {index + 1}/{len(spec.steps)}"
            if step.set_weight <= st.weight or verdict is None or _may_rise(verdict, st):
                # Not past a shut traffic gate: with the replicas router pods are traffic.
                st.canary_replicas = max(st.canary_replicas, canary)
                run.event(
                    "Normal",
                    "StepStarted",
                    f"{where}: scaling canary {spec.canary} to {st.canary_replicas} ready "
                    f"before sending it {step.set_weight}%",
                )
            else:
                # Events tell what happens: no scale-up yet (it comes in _weight_step).
                move = f"sending canary {spec.canary}"
                if canary > st.canary_replicas:
                    move = f"scaling canary {spec.canary} to {canary} ready and sending it"
                run.event(
                    "Normal",
                    "StepStarted",
                    f"{where}: waiting for the traffic gate (confirm-traffic-increase "
                    f"webhooks) before {move} {step.set_weight}%",
                )
        elif isinstance(step, SetCanaryScaleStep):
            st.stage = Stage.SCALE_CANARY
            st.canary_replicas = max(st.canary_replicas, _scaled(st.baseline_replicas, step))
            run.event(
                "Normal",
                "StepStarted",
                f"step {index + 1}/{len(spec.steps)}: scaling canary {spec.canary} to "
                f"{st.canary_replicas} without moving weight ({st.weight}%)",
            )


def _scaled(n: int, step: SetCanaryScaleStep) -> int:
    """Canary replicas for a setCanaryScale step: ceil(n * percent / 100), at least 1."""
    return max(1, -(-n * step.set_canary_scale // 100))


def _scale_step(run: _Run, step: SetCanaryScaleStep) -> bool:
    """Capacity without traffic: the step ends once the canary pods are ready."""
    st, obs = run.st, run.obs
    st.canary_replicas = max(st.canary_replicas, _scaled(st.baseline_replicas, step))
    ready = obs.canary.ready_replicas
    if ready < st.canary_replicas:
        return run.hold(f"waiting for canary {ready}/{st.canary_replicas} ready")
    _enter_step(run, st.step_index + 1)
    return True


def _promote(run: _Run, reason: str, message: str) -> None:
    st = run.st
    st.phase, st.stage, st.pause_reason, st.pause_until = (
        Phase.PROMOTING,
        Stage.SCALE_CANARY,
        None,
        None,
    )
    st.canary_replicas = st.baseline_replicas
    st.reason, st.message = reason, message
    run.event(
        "Normal",
        "Promoting",
        f"{message}; scaling canary {run.spec.canary} to {st.baseline_replicas} ready "
        "before sending it all traffic",
    )


def _roll_back(run: _Run, reason: str, message: str) -> None:
    st = run.st
    st.phase, st.stage, st.pause_reason, st.pause_until = (
        Phase.ROLLING_BACK,
        Stage.RESTORE_STABLE,
        None,
        None,
    )
    st.reason, st.message = reason, message
    run.event(
        "Warning",
        "RollingBack",
        f"{message}; restoring stable {run.spec.stable} to {st.baseline_replicas} ready "
        "before moving traffic back",
    )


def _pending(run: _Run) -> bool:
    st, spec, stable, canary = run.st, run.spec, run.obs.stable, run.obs.canary
    if not stable.exists:
        return run.hold(f"stable Deployment {spec.stable} not found")
    if stable.desired_replicas < 1:
        return run.hold(f"stable Deployment {spec.stable} has no replicas to compare with")
    if stable.ready_replicas < stable.desired_replicas:
        return run.hold(
            f"waiting for stable {stable.ready_replicas}/{stable.desired_replicas} ready"
        )
    if not canary.exists:
        return run.hold(f"canary Deployment {spec.canary} not found")
    if run.obs.analysis is not None and not run.obs.analysis.rollout_allowed:
        return run.hold(_ROLLOUT_GATE)
    st.baseline_replicas, st.started_at, st.weight = stable.desired_replicas, run.now, 0
    run.event(
        "Normal",
        "Started",
        f"canary {spec.canary} against stable {spec.stable} ({st.baseline_replicas} "
        f"replicas), {len(spec.steps)} steps",
    )
    _enter_step(run, 0)
    return True


def _canary_failure(run: _Run) -> tuple[str, str] | None:
    """Evaluate the canary health gates; (reason, message) when one fails."""
    st, spec, canary, health = run.st, run.spec, run.obs.canary, run.spec.health
    if not canary.exists:
        message = f"canary Deployment {spec.canary} not found"
        run.check("canary-exists", False, message=message)
        return "CanaryMissing", message
    worst = max((pod.restart_count for pod in canary.pods), default=0)
    bad = next(
        (
            pod
            for pod in canary.pods
            if pod.restart_count > health.max_restarts
            or pod.waiting_reason in FATAL_WAITING_REASONS
        ),
        None,
    )
    if bad is not None:
        fatal = bad.waiting_reason in FATAL_WAITING_REASONS
        message = (
            f"canary pod {bad.name} is in {bad.waiting_reason}"
            if fatal
            else f"canary pod {bad.name} restarted {bad.restart_count} times "
            f"(maxRestarts {health.max_restarts})"
        )
        run.check("canary-pods", False, worst, health.max_restarts, message)
        return ("CanaryCrashLoop" if fatal else "CanaryRestarts"), message
    run.check("canary-pods", True, worst, health.max_restarts)
    if canary.progress_deadline_exceeded:
        message = f"canary Deployment {spec.canary} exceeded its progress deadline"
        run.check("canary-progress", False, message=message)
        return "CanaryProgressDeadline", message
    target, ready = st.canary_replicas, canary.ready_replicas
    unready = [pod.name for pod in canary.pods if not pod.ready]
    detail = f"{ready}/{target} ready"
    if unready:
        detail += f"; not ready: {', '.join(unready[:5])}"
    run.check("canary-ready", ready >= target, ready, target, detail)
    if ready >= target:
        st.canary_unready_since = None
        return None
    if st.canary_unready_since is None:
        st.canary_unready_since = run.now
    waited = run.now - st.canary_unready_since
    if waited > health.ready_deadline:
        return (
            "CanaryNotReady",
            f"canary {spec.canary} has {detail} after {format_duration(waited)} "
            f"(readyDeadline {format_duration(health.ready_deadline)})",
        )
    return None


def _stable_unhealthy_since(run: _Run) -> float | None:
    """Check the stable has what it should at this weight; since when it has not."""
    st, spec, stable = run.st, run.spec, run.obs.stable
    if stable.hpa_min is not None:
        expected = stable.desired_replicas  # the autoscaler owns the count
    else:
        expected, _ = replica_split(st.baseline_replicas, st.weight, spec.replica_mode)
    needed = math.ceil(round(expected * spec.health.stable_min_ready_ratio, 6))
    healthy = stable.ready_replicas >= needed
    run.check(
        "stable-ready",
        healthy,
        stable.ready_replicas,
        needed,
        f"{stable.ready_replicas}/{needed} ready",
    )
    if healthy:
        st.stable_degraded_since = None
    elif st.stable_degraded_since is None:
        st.stable_degraded_since = run.now
    return st.stable_degraded_since


def _expected_share(run: _Run, weight: int) -> tuple[float, float]:
    """Canary share the router should report at `weight`, and the tolerance around it."""
    spec, st = run.spec, run.st
    if spec.router.kind != "replicas" or weight in (0, 100):
        return float(weight), WEIGHT_TOLERANCE
    stable, _ = replica_split(st.baseline_replicas, weight, spec.replica_mode)
    total = stable + st.canary_replicas
    # With one pod more or less the share moves by at least 100/(total*(total+1)):
    # stay within half of that so the old split (stable not yet scaled) never passes.
    return 100.0 * st.canary_replicas / total, min(WEIGHT_TOLERANCE, 50 / (total * (total + 1)))


def _traffic_at(run: _Run, weight: int) -> bool:
    """True when the router reports the share expected at `weight` (or cannot tell)."""
    served = run.obs.effective_weight
    if served is None:
        return True
    expected, tolerance = _expected_share(run, weight)
    ok = abs(served - expected) <= tolerance
    run.check(
        "traffic",
        ok,
        round(served, 2),
        round(expected, 2),
        f"router serves {served:.1f}% to the canary, expected {expected:.1f}%",
    )
    return ok


def _no_manual_gate_from(spec: CanarySpec, index: int) -> bool:
    return not any(
        isinstance(step, PauseStep) and step.pause is None
        for step in spec.steps[index : spec.plan_length]
    )


def _progressing(run: _Run) -> bool:
    """Progressing and Paused: gates first, then holds, then the current step."""
    st, spec, obs = run.st, run.spec, run.obs
    failure = _canary_failure(run)
    if failure is not None:
        _roll_back(run, *failure)
        return True
    if not obs.stable.exists:
        message = f"stable Deployment {spec.stable} not found"
        run.check("stable-exists", False, message=message)
        _roll_back(run, "StableMissing", message)
        return True
    verdict = obs.analysis
    if verdict is not None and verdict.decision == "rollback":
        _roll_back(run, "AnalysisFailed", verdict.reason or "the analysis verdict is rollback")
        return True
    # A degraded stable pauses instead of rolling back: the canary is not at fault,
    # a rollback could not finish before the stable recovers anyway, and pausing
    # stops raising the canary's share while capacity and the baseline are off.
    degraded_since = _stable_unhealthy_since(run)
    if st.phase is Phase.PAUSED and st.pause_reason is PauseReason.STABLE_DEGRADED:
        if degraded_since is None:
            st.phase, st.pause_reason = Phase.PROGRESSING, None
            run.event("Normal", "StableRecovered", f"stable {spec.stable} is ready again")
            return True
        return run.hold(f"paused: stable {spec.stable} lacks ready replicas")
    if st.pause_reason is PauseReason.COMMAND:
        return run.hold("paused by a user command; resume to continue")
    if degraded_since is not None and run.now - degraded_since > spec.health.ready_deadline:
        st.phase, st.pause_reason, st.pause_until = (
            Phase.PAUSED,
            PauseReason.STABLE_DEGRADED,
            None,
        )
        run.event(
            "Warning",
            "StableDegraded",
            f"stable {spec.stable} has had too few ready replicas for "
            f"{format_duration(run.now - degraded_since)}; pausing until it recovers",
        )
        return True
    if verdict is not None and not verdict.rollout_allowed:
        # A rollout gate: nothing of the canary moves until it says yes.
        return run.hold(_ROLLOUT_GATE)
    index = st.step_index
    if verdict is not None and verdict.decision == "promote" and _no_manual_gate_from(spec, index):
        _promote(run, "AnalysisPromoted", verdict.reason or "the analysis verdict is promote")
        return True
    if index >= spec.plan_length:
        if spec.analysis is not None and (verdict is None or not verdict.promotion_allowed):
            why = verdict.reason if verdict is not None and verdict.reason else "a verdict"
            return run.hold(f"waiting for {why} from the analysis verdict before promoting")
        _promote(run, "StepsCompleted", "all steps passed")
        return True
    step = spec.steps[index]
    if isinstance(step, PauseStep):
        return _pause_step(run, step)
    if isinstance(step, SetCanaryScaleStep):
        return _scale_step(run, step)
    return _weight_step(run, step)


def _pause_step(run: _Run, step: PauseStep) -> bool:
    st, spec = run.st, run.spec
    started = st.step_started_at if st.step_started_at is not None else run.now
    until = None if step.pause is None else started + step.pause
    if st.phase is not Phase.PAUSED:
        st.phase, st.pause_reason, st.pause_until, st.stage = (
            Phase.PAUSED,
            PauseReason.STEP,
            until,
            None,
        )
        length = "until promoted" if step.pause is None else f"for {format_duration(step.pause)}"
        run.event(
            "Normal",
            "Paused",
            f"step {st.step_index + 1}/{len(spec.steps)}: holding {st.weight}% {length}",
        )
        return True
    st.pause_until = until
    if until is None:
        return run.hold("waiting for a promote command")
    if run.now >= until:
        _enter_step(run, st.step_index + 1)
        return True
    return run.hold(f"pause step, {st.weight}% held", until)


_ROLLOUT_GATE = "waiting for the rollout gate (confirm-rollout webhooks) to say yes"


def _may_rise(verdict: Verdict, st: CanaryStatus) -> bool:
    """The traffic gate allows this step's rise: open, and its yes (if it has one) was
    given after the step started, so one yes never covers two rises."""
    if not verdict.traffic_increase_allowed:
        return False
    at = verdict.traffic_increase_confirmed_at
    return at is None or st.step_started_at is None or at > st.step_started_at


def _weight_step(run: _Run, step: SetWeightStep) -> bool:
    st, spec, obs = run.st, run.spec, run.obs
    target = step.set_weight
    verdict = obs.analysis
    if target > st.weight and verdict is not None and not _may_rise(verdict, st):
        # A traffic gate: asked before each rise, scaling up included (it adds capacity
        # for the new weight); a weight already reached is kept.
        return run.hold(
            "waiting for the traffic gate (confirm-traffic-increase webhooks) to say yes "
            f"before raising the canary to {target}%"
        )
    _, canary = replica_split(st.baseline_replicas, target, spec.replica_mode)
    if canary > st.canary_replicas:
        # Raised here only when a traffic gate held it at the step's start: one more
        # pass, so the health gates judge the new count as a fresh decision would.
        st.canary_replicas = canary
        gated = verdict is not None and verdict.traffic_increase_confirmed_at is not None
        said = "the traffic gate said yes; " if gated else ""
        run.event(
            "Normal",
            "CanaryScaling",
            f"step {st.step_index + 1}/{len(spec.steps)}: {said}scaling canary {spec.canary} "
            f"to {canary} ready before sending it {target}%",
        )
        return True
    if st.stage is Stage.SHIFT_TRAFFIC and st.weight == target:
        if _traffic_at(run, target):
            _enter_step(run, st.step_index + 1)
            return True
        return run.hold(f"waiting for the router to serve {target}%")
    st.stage = Stage.SCALE_CANARY
    ready = obs.canary.ready_replicas
    if ready < st.canary_replicas:
        return run.hold(f"waiting for canary {ready}/{st.canary_replicas} ready before {target}%")
    st.stage, st.weight = Stage.SHIFT_TRAFFIC, target
    run.event("Normal", "WeightSet", f"canary {spec.canary} ready; sending it {target}%")
    return True


def _promoting(run: _Run) -> bool:
    st, spec, obs = run.st, run.spec, run.obs
    n, ready = st.baseline_replicas, obs.canary.ready_replicas
    if st.stage is Stage.REMOVE_STABLE:
        # Past the point of no return: gates and abort no longer apply.
        if _stable_removed(run):
            st.phase, st.stage, st.drained_since = Phase.SUCCEEDED, None, None
            run.event(
                "Normal",
                "Succeeded",
                f"canary {spec.canary} serves all traffic with {n} replicas; stable "
                f"{spec.stable} {'deleted' if spec.on_promotion == 'delete' else 'at zero'}",
            )
            return True
        if ready < n:
            return run.hold(f"holding stable removal: canary {ready}/{n} ready")
        if not _drain(run, "stable"):
            return False
        return run.hold(f"waiting for stable {spec.stable} to be removed")
    failure = _canary_failure(run)
    if failure is not None:
        _roll_back(run, *failure)
        return True
    if st.stage is Stage.SCALE_CANARY:
        if ready < n:
            return run.hold(f"waiting for canary {ready}/{n} ready before sending it 100%")
        st.stage, st.weight = Stage.SHIFT_TRAFFIC, 100
        run.event("Normal", "WeightSet", f"canary {spec.canary} ready; sending it 100%")
        return True
    if ready < n:
        return run.hold(f"holding the shift to 100%: canary {ready}/{n} ready")
    if not _traffic_at(run, 100):
        return run.hold("waiting for the router to serve 100%")
    if spec.scale_down_delay:
        # Blue/green: the old version stays ready for an instant rollback (abort) a while.
        if st.full_traffic_at is None:
            st.full_traffic_at = run.now
        until = st.full_traffic_at + spec.scale_down_delay
        if run.now < until:
            return run.hold(
                f"keeping stable {spec.stable} for an instant rollback until "
                f"{format_duration(spec.scale_down_delay)} after the switch",
                until,
            )
    st.stage, st.drained_since = Stage.REMOVE_STABLE, None
    run.event(
        "Normal",
        "RemovingStable",
        f"taking stable {spec.stable} out of every route; {spec.on_promotion} once no endpoint "
        f"lists its pods as serving and {format_duration(spec.drain_delay)} have passed",
    )
    return True


def _stable_removed(run: _Run) -> bool:
    stable = run.obs.stable
    if not stable.exists:
        return True
    scaled_away = stable.desired_replicas == 0 and stable.ready_replicas == 0
    return run.spec.on_promotion == "scale-to-zero" and scaled_away


def _rolling_back(run: _Run) -> bool:
    st, spec, stable, canary = run.st, run.spec, run.obs.stable, run.obs.canary
    n = st.baseline_replicas
    restored = stable.exists and stable.ready_replicas >= n
    if st.stage is Stage.RESTORE_STABLE:
        if restored:
            st.stage, st.weight = Stage.SHIFT_TO_STABLE, 0
            run.event("Normal", "StableRestored", f"stable {spec.stable} has {n} ready; 0% canary")
            return True
        if not stable.exists:
            return run.hold(
                f"stable Deployment {spec.stable} is missing: recreate it to finish the "
                "rollback; the canary keeps serving until then"
            )
        return run.hold(f"waiting for stable {stable.ready_replicas}/{n} ready")
    if not restored:
        # Never take canary capacity away while the stable cannot carry all traffic.
        st.stage = Stage.RESTORE_STABLE
        run.event("Warning", "StableCapacityLost", f"stable {spec.stable} fell below {n} ready")
        return True
    if st.stage is Stage.SHIFT_TO_STABLE:
        if not _traffic_at(run, 0):
            return run.hold("waiting for the router to serve 0% to the canary")
        st.stage, st.drained_since = Stage.REMOVE_CANARY, None
        return True
    if canary.exists and (canary.desired_replicas > 0 or canary.ready_replicas > 0):
        if not _drain(run, "canary"):
            return False
        return run.hold(f"waiting for canary {spec.canary} to scale to zero")
    st.phase, st.stage, st.drained_since = Phase.ROLLED_BACK, None, None
    run.event(
        "Warning",
        "RolledBack",
        f"{st.message}; stable {spec.stable} serves all traffic with {n} replicas",
    )
    return True


def _serving(obs: Observations, target: Target) -> int | None:
    return obs.stable_serving if target == "stable" else obs.canary_serving


def _drain(run: _Run, target: Target) -> bool:
    """True once `target`'s pods may go: none serving, for `drainDelay` (else hold).

    Missing endpoint data holds too: pods are never removed on an unobserved drain.
    """
    st, spec = run.st, run.spec
    name = spec.stable if target == "stable" else spec.canary
    serving = _serving(run.obs, target)
    if serving is None:
        st.drained_since = None
        run.hold(f"holding {target} {name}: its Service endpoints are not observed")
        return False
    run.check(
        f"{target}-drained",
        serving == 0,
        serving,
        0,
        f"{serving} pod(s) of {name} listed as serving by the Services carrying its traffic",
    )
    if serving:
        st.drained_since = None
        run.hold(f"waiting for the endpoints to drop {serving} serving pod(s) of {target} {name}")
        return False
    if st.drained_since is None:
        st.drained_since = run.now
    until = st.drained_since + spec.drain_delay
    if run.now < until:
        run.hold(
            f"draining {target} {name}: no endpoint lists its pods; removing them "
            f"{format_duration(spec.drain_delay)} after that (drainDelay)",
            until,
        )
        return False
    return True


def _drained(spec: CanarySpec, st: CanaryStatus, obs: Observations, target: Target) -> bool:
    """The same test as `_drain`, without changing anything (for the actions)."""
    return (
        _serving(obs, target) == 0
        and st.drained_since is not None
        and obs.now >= st.drained_since + spec.drain_delay
    )


# --- actions ------------------------------------------------------------------------------


def _actions(run: _Run) -> tuple[Action, ...]:
    """Desired state of the current stage, in capacity-before-traffic order."""
    st, spec, obs = run.st, run.spec, run.obs
    n, mode = st.baseline_replicas, spec.replica_mode
    actions: list[Action] = []
    if st.phase in (Phase.PROGRESSING, Phase.PAUSED) or (
        st.phase is Phase.PROMOTING and st.stage is Stage.SCALE_CANARY
    ):
        stable, _ = replica_split(n, st.weight, mode)
        if st.canary_replicas:
            actions.append(EnsureReplicas("canary", st.canary_replicas))
        actions.append(SetWeight(st.weight, stable, st.canary_replicas))
        if stable < n:
            actions.append(ScaleDown("stable", stable))
    elif st.phase is Phase.PROMOTING:
        actions.append(EnsureReplicas("canary", n))
        if obs.canary.ready_replicas >= n:
            actions.append(SetWeight(100, 0, n))
            if st.stage is Stage.REMOVE_STABLE:
                actions.append(DrainStable())
                if _drained(spec, st, obs, "stable"):
                    actions.append(RemoveStable(spec.on_promotion))
    elif st.phase is Phase.ROLLING_BACK:
        if obs.stable.exists:
            actions.append(EnsureReplicas("stable", n))
        # _rolling_back leaves restore-stable only while the stable has n ready.
        if st.stage is not Stage.RESTORE_STABLE:
            actions.append(SetWeight(0, n, 0))
            if st.stage is Stage.REMOVE_CANARY and _drained(spec, st, obs, "canary"):
                actions.append(ScaleDown("canary", 0))
    if run.wait is not None:
        actions.append(run.wait)
    return tuple(actions)

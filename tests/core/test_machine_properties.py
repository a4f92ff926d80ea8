"""Properties of the rollout machine over random specs and random, hostile worlds.

A small simulated cluster applies the machine's actions; pods become ready at a
random pace, crash, restart, vanish and come back; users send commands; the analysis
changes its mind; time jumps. After every decision the invariants of DESIGN.md
("The rollout in states") must hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from canaryctl.core import (
    CanarySpec,
    CanaryStatus,
    CheckRecord,
    Command,
    Decision,
    DeploymentObs,
    DrainStable,
    EnsureReplicas,
    Observations,
    PauseStep,
    Phase,
    PodObs,
    RemoveStable,
    ScaleDown,
    SetWeight,
    Stage,
    Verdict,
    decide,
    parse_spec,
    replica_split,
)
from canaryctl.core.machine import trim_history
from canaryctl.core.models import HISTORY_LIMIT

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- random specs -------------------------------------------------------------------------

ROUTERS = {
    "replicas": {"kind": "replicas"},
    "nginx": {"kind": "nginx", "ingress": "app"},
    "istio": {"kind": "istio", "virtualService": "app"},
    "gateway": {"kind": "gateway", "httproute": "app"},
}


@st.composite
def specs(draw: st.DrawFn) -> CanarySpec:
    weights = sorted(draw(st.sets(st.integers(1, 99), min_size=0, max_size=4)))
    max_weight = draw(st.integers(max(weights, default=1), 100))
    steps: list[dict[str, Any]] = []
    for weight in weights:
        steps.append({"setWeight": weight})
        pause = draw(st.sampled_from([None, None, "30s", "5m", 45, {}]))
        if pause is not None:
            steps.append({"pause": pause})
    if draw(st.booleans()) or not steps:
        steps.append({"setWeight": 100})
    router = draw(st.sampled_from(sorted(ROUTERS)))
    data: dict[str, Any] = {
        "name": "demo",
        "stable": "app-v1",
        "canary": "app-v2",
        "service": "app",
        "router": ROUTERS[router],
        "steps": steps,
        "maxWeight": max_weight,
        "onPromotion": draw(st.sampled_from(["delete", "scale-to-zero"])),
        "health": {
            "readyDeadline": draw(st.sampled_from([20, 60, 120, 600])),
            "maxRestarts": draw(st.integers(0, 2)),
        },
    }
    if router != "replicas":
        data["replicaMode"] = draw(st.sampled_from(["seed", "full"]))
    if draw(st.booleans()):
        data["analysis"] = {"template": "errors"}
    drain = draw(st.sampled_from([None, 0, 5, "10s", 60]))
    if drain is not None:
        data["drainDelay"] = drain
    return parse_spec(data)


# --- the simulated world ------------------------------------------------------------------


@dataclass
class Deployment:
    exists: bool
    desired: int
    ready: int
    restarts: int = 0
    waiting: str | None = None
    progress_exceeded: bool = False
    broken: bool = False  # pods never become ready

    def observe(self, name: str) -> DeploymentObs:
        if not self.exists:
            return DeploymentObs.missing()
        pods = tuple(
            PodObs(
                name=f"{name}-{i}",
                ready=i < self.ready,
                restart_count=self.restarts if i == 0 else 0,
                waiting_reason=self.waiting if i == 0 else None,
            )
            for i in range(self.desired)
        )
        return DeploymentObs(
            desired_replicas=self.desired,
            ready_replicas=self.ready,
            progress_deadline_exceeded=self.progress_exceeded,
            pods=pods,
        )


@dataclass
class World:
    """Two Deployments behind one router; replicas come up `speed` per tick."""

    router: str
    n: int
    stable: Deployment = field(init=False)
    canary: Deployment = field(init=False)
    weight: int = 0
    now: float = 1_000.0
    repointed: bool = False  # the stable Service selects the canary (DrainStable)
    # What the EndpointSlices list as serving, per version: they follow the pods and
    # routes only when the world syncs (endpoints and proxies lag behind).
    listed: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stable = Deployment(exists=True, desired=self.n, ready=self.n)
        self.canary = Deployment(exists=True, desired=0, ready=0)
        self.listed = {"stable": self.n, "canary": 0}

    def in_rotation(self, target: str) -> int:
        """Pods of `target` the Services carrying its traffic select, once synced."""
        dep = self.deployment(target)
        if not dep.exists:
            return 0
        if self.router == "replicas":
            return dep.ready  # one Service selects both versions
        if target == "stable":
            return 0 if self.repointed else dep.ready
        return dep.ready if self.weight > 0 or self.repointed else 0

    def sync(self) -> None:
        self.listed = {t: self.in_rotation(t) for t in ("stable", "canary")}

    def deployment(self, target: str) -> Deployment:
        return self.stable if target == "stable" else self.canary

    def observe(
        self, report: bool, verdict: Verdict | None = None, command: Command | None = None
    ) -> Observations:
        served: float | None = None
        if self.router == "replicas":
            total = self.stable.ready + self.canary.ready
            served = 100 * self.canary.ready / total if total else None
        elif report:
            served = float(self.weight)
        return Observations(
            now=self.now,
            stable=self.stable.observe("app-v1"),
            canary=self.canary.observe("app-v2"),
            effective_weight=served if report else None,
            analysis=verdict,
            command=command,
            stable_serving=self.listed["stable"],
            canary_serving=self.listed["canary"],
        )

    def apply(self, actions: tuple[Any, ...]) -> None:
        for action in actions:
            if isinstance(action, EnsureReplicas):
                dep = self.deployment(action.target)
                if dep.exists:
                    dep.desired = max(dep.desired, action.replicas)
            elif isinstance(action, ScaleDown):
                dep = self.deployment(action.target)
                dep.desired = min(dep.desired, action.replicas)
            elif isinstance(action, SetWeight):
                self.weight = action.weight
                if self.router == "replicas":
                    for dep, count in (
                        (self.stable, action.stable_replicas),
                        (self.canary, action.canary_replicas),
                    ):
                        if dep.exists:
                            dep.desired = count
            elif isinstance(action, DrainStable):
                self.repointed = True
            elif isinstance(action, RemoveStable):
                self.stable.desired = 0
                self.stable.exists = action.mode != "delete"
        for dep in (self.stable, self.canary):
            if not dep.exists:
                dep.desired = dep.ready = 0
            dep.ready = min(dep.ready, dep.desired)  # scale-down is immediate

    def tick(self, dt: float, speed: int, sync: bool = True) -> None:
        self.now += dt
        for dep in (self.stable, self.canary):
            if dep.exists and not dep.broken:
                dep.ready = min(dep.desired, dep.ready + speed)
        if sync:
            self.sync()

    def fault(self, kind: str | None) -> None:
        if kind == "crash":
            self.canary.waiting, self.canary.broken, self.canary.ready = "CrashLoopBackOff", True, 0
        elif kind == "restart":
            self.canary.restarts += 1
        elif kind == "progress":
            self.canary.progress_exceeded = True
        elif kind == "stuck":
            self.canary.broken = True
        elif kind == "canary-gone":
            self.canary.exists = False
        elif kind == "stable-gone":
            self.stable.exists = False
        elif kind == "stable-loss":
            self.stable.ready = max(0, self.stable.ready - 1 - self.n // 2)
        elif kind == "recreate":
            self.heal()

    def heal(self) -> None:
        """The user recreates what vanished (the stable from its manifest: n replicas)."""
        if not self.stable.exists:
            self.stable = Deployment(exists=True, desired=self.n, ready=0)
        if not self.canary.exists:
            self.canary = Deployment(exists=True, desired=1, ready=0)


FAULTS = [None] * 40 + [
    "crash",
    "restart",
    "progress",
    "stuck",
    "canary-gone",
    "stable-gone",
    "stable-loss",
    "recreate",
]
COMMANDS = [None] * 20 + ["promote", "promote", "promote-full", "abort", "pause", "resume"]
VERDICTS = [None] * 6 + ["continue"] * 10 + ["promote", "rollback"]

ticks = st.lists(
    st.fixed_dictionaries(
        {
            "dt": st.sampled_from([1, 5, 15, 30, 60, 300, 3600]),
            "speed": st.integers(0, 6),
            "fault": st.sampled_from(FAULTS),
            "command": st.sampled_from(COMMANDS),
            "verdict": st.sampled_from(VERDICTS),
            "report": st.booleans(),
            "sync": st.booleans(),
        }
    ),
    min_size=1,
    max_size=80,
)


def command(kind: Any, ident: str) -> Command | None:
    if kind is None:
        return None
    if kind == "promote-full":
        return Command(action="promote", id=ident, full=True)
    return Command(action=kind, id=ident)


def verdict(kind: Any) -> Verdict | None:
    return None if kind is None else Verdict(decision=kind, reason=f"judge says {kind}")


# --- invariants ---------------------------------------------------------------------------


@dataclass
class Invariants:
    """Checks one decision against what came before; raises AssertionError on a breach."""

    spec: CanarySpec
    previous: CanaryStatus | None = None
    top_weight: int = 0  # highest weight asked of the router before any rollback
    # Since when each version has been seen with no serving endpoint (None: it has one).
    zero_since: dict[str, float | None] = field(
        default_factory=lambda: {"stable": None, "canary": None}
    )

    def drained_for(self, obs: Observations, target: str) -> float:
        """Seconds `target` has been seen without a serving endpoint (-1: serving now)."""
        since = self.zero_since[target]
        return -1.0 if since is None else obs.now - since

    def check(self, obs: Observations, decision: Decision) -> None:
        spec, status = self.spec, decision.status
        for target, serving in (("stable", obs.stable_serving), ("canary", obs.canary_serving)):
            if serving == 0:
                self.zero_since[target] = self.zero_since[target] or obs.now
            else:
                self.zero_since[target] = None
        again = decide(spec, status, obs)
        assert again.status == status, "decide is not idempotent (status)"
        assert again.actions == decision.actions, "decide is not idempotent (actions)"
        assert again.events == (), "deciding twice repeats events"
        prev = self.previous
        if prev is not None and prev.phase.terminal:
            assert status == prev and decision.actions == (), "terminal phase changed"
        rolling = status.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK)
        n = status.baseline_replicas
        if prev is not None and not rolling:
            assert status.weight >= prev.weight, "weight fell outside a rollback"
        if status.phase in (Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED):
            assert status.weight <= spec.max_weight, "weight above maxWeight before promotion"
        for action in decision.actions:
            if isinstance(action, SetWeight) and not rolling:
                assert action.weight >= self.top_weight, "router asked to lower the weight"
                if status.phase is not Phase.PROMOTING:
                    assert action.weight <= spec.max_weight
                if action.weight > self.top_weight:
                    # capacity before traffic: the canary is ready for its new share
                    needed = (
                        n if action.weight == 100 else replica_split(n, action.weight, "seed")[1]
                    )
                    assert obs.canary.ready_replicas >= needed, "weight moved before capacity"
                self.top_weight = max(self.top_weight, action.weight)
            if isinstance(action, ScaleDown) and action.target == "canary":
                assert status.phase is Phase.ROLLING_BACK, "canary scaled down outside a rollback"
            if rolling and isinstance(action, SetWeight | ScaleDown):
                # traffic or canary capacity goes back only onto a stable at full capacity
                assert obs.stable.exists and obs.stable.ready_replicas >= n, (
                    "canary traffic or capacity removed before the stable was back at N"
                )
            if isinstance(action, RemoveStable) or (
                isinstance(action, SetWeight) and action.weight == 100
            ):
                assert status.phase is Phase.PROMOTING
                assert obs.canary.ready_replicas >= n, "stable traffic/capacity removed early"
            served = obs.effective_weight
            if isinstance(action, RemoveStable):
                assert served is None or served > 99.5, "stable removed while it had traffic"
            if isinstance(action, ScaleDown) and action.target == "canary":
                assert served is None or served < 0.5, "canary removed while it had traffic"
            # Traffic leaves before pods do: no serving endpoint, for the whole drainDelay.
            if isinstance(action, RemoveStable):
                assert self.drained_for(obs, "stable") >= spec.drain_delay, (
                    "stable removed while listed as serving or before drainDelay"
                )
            if isinstance(action, ScaleDown) and action.replicas == 0:
                assert self.drained_for(obs, action.target) >= spec.drain_delay, (
                    f"{action.target} scaled to 0 while serving or before drainDelay"
                )
        promoted = obs.command is not None and obs.command.action == "promote"
        promoted |= obs.analysis is not None and obs.analysis.decision == "promote"
        start = 0 if prev is None else prev.step_index
        for index in range(start, status.step_index):
            pause = spec.steps[index]
            # A timed pause ends its duration after the step started, even when a user's
            # pause/resume in between cleared the stored pause_until.
            expired = (
                prev is not None
                and index == prev.step_index
                and isinstance(pause, PauseStep)
                and pause.pause is not None
                and prev.step_started_at is not None
                and obs.now >= prev.step_started_at + pause.pause
            )
            if isinstance(pause, PauseStep) and not expired:
                assert promoted, f"pause step {index} passed early without a promote"
        if status.phase is Phase.ROLLED_BACK and (prev is None or not prev.phase.terminal):
            assert obs.stable.ready_replicas >= n, "rolled back without the stable at N"
        if status.phase in (Phase.PENDING, Phase.SUCCEEDED, Phase.ROLLED_BACK):
            assert status.stage is None
        elif status.phase in (Phase.PROGRESSING, Phase.PAUSED):
            assert status.stage in (None, Stage.SCALE_CANARY, Stage.SHIFT_TRAFFIC)
        elif status.phase is Phase.PROMOTING:
            assert status.stage in (Stage.SCALE_CANARY, Stage.SHIFT_TRAFFIC, Stage.REMOVE_STABLE)
        else:
            assert status.stage in (
                Stage.RESTORE_STABLE,
                Stage.SHIFT_TO_STABLE,
                Stage.REMOVE_CANARY,
            )
        self.previous = status


def run_ticks(
    spec: CanarySpec, world: World, plan: list[dict[str, Any]], inv: Invariants, tag: str
) -> CanaryStatus | None:
    status = inv.previous
    for i, tick in enumerate(plan):
        world.fault(tick["fault"])
        obs = world.observe(
            tick["report"], verdict(tick["verdict"]), command(tick["command"], f"{tag}{i}")
        )
        decision = decide(spec, status, obs)
        inv.check(obs, decision)
        status = decision.status
        world.apply(decision.actions)
        world.tick(tick["dt"], tick["speed"], tick["sync"])
    return status


# --- properties ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(spec=specs(), n=st.integers(1, 12), plan=ticks)
def test_invariants_hold_in_a_hostile_world(
    spec: CanarySpec, n: int, plan: list[dict[str, Any]]
) -> None:
    world = World(spec.router.kind, n)
    status = run_ticks(spec, world, plan, Invariants(spec), "c")
    assert status is not None
    event(f"ended {status.phase} {status.stage or ''}")  # see --hypothesis-show-statistics


@PROPERTY_SETTINGS
@given(spec=specs(), n=st.integers(1, 12), plan=ticks, cutoff=st.integers(0, 80))
def test_abort_from_any_non_terminal_state_reaches_rolled_back(
    spec: CanarySpec, n: int, plan: list[dict[str, Any]], cutoff: int
) -> None:
    world = World(spec.router.kind, n)
    inv = Invariants(spec)
    status = run_ticks(spec, world, plan[:cutoff], inv, "pre")
    before = status
    world.heal()
    obs = world.observe(report=True, command=Command(action="abort", id="abort"))
    decision = decide(spec, status, obs)
    inv.check(obs, decision)
    world.apply(decision.actions)
    for _ in range(4 * n + 30):  # time to restore the stable, then to drain the canary
        world.tick(dt=5, speed=n)
        obs = world.observe(report=True)
        decision = decide(spec, decision.status, obs)
        inv.check(obs, decision)
        world.apply(decision.actions)
    final = decision.status
    if before is not None and before.phase.terminal:
        assert final == before
    elif before is not None and before.stage is Stage.REMOVE_STABLE:
        # too late to abort: the promotion finishes once the canary is at capacity
        assert final.phase in (Phase.PROMOTING, Phase.SUCCEEDED)
    else:
        assert final.phase is Phase.ROLLED_BACK
        if before is not None and before.phase is not Phase.PENDING:
            assert world.stable.ready >= final.baseline_replicas
            assert world.canary.desired == 0
            assert world.weight == 0


@PROPERTY_SETTINGS
@given(spec=specs(), n=st.integers(1, 12), dts=st.lists(st.sampled_from([1, 5, 10]), min_size=1))
def test_a_healthy_canary_is_promoted(spec: CanarySpec, n: int, dts: list[int]) -> None:
    world = World(spec.router.kind, n)
    inv = Invariants(spec)
    status: CanaryStatus | None = None
    for i in range(400):
        # Approve manual gates, as a user watching the rollout would.
        approve = status is not None and status.pause_until is None and status.phase is Phase.PAUSED
        obs = world.observe(
            report=True,
            verdict=Verdict(decision="continue") if spec.analysis is not None else None,
            command=Command(action="promote", id=f"ok{i}") if approve else None,
        )
        decision = decide(spec, status, obs)
        inv.check(obs, decision)
        status = decision.status
        if status.phase.terminal:
            break
        world.apply(decision.actions)
        world.tick(dt=dts[i % len(dts)] * 10, speed=n)
    assert status is not None and status.phase is Phase.SUCCEEDED
    assert world.canary.ready == n and world.stable.desired == 0
    assert world.stable.exists is (spec.on_promotion == "scale-to-zero")
    if spec.router.kind != "replicas":
        assert world.weight == 100


_RECORD_NAMES = st.sampled_from(["traffic", "errors (sequential)", "canary-ready", "latency"])


@given(st.lists(_RECORD_NAMES, max_size=3 * HISTORY_LIMIT))
@PROPERTY_SETTINGS
def test_trimmed_history_is_bounded_ordered_and_keeps_the_course_longest(names: list[str]) -> None:
    """The trimmed history is a bounded, ordered sub-sequence ending in the newest record;
    weight changes ("traffic") survive analysis records up to half of the limit."""
    history = [CheckRecord(time=float(t), name=n, passed=True) for t, n in enumerate(names)]
    kept = trim_history(history)
    assert len(kept) == min(len(history), HISTORY_LIMIT)
    times = [r.time for r in kept]
    assert times == sorted(times) and set(times) <= {r.time for r in history}
    if history:
        assert kept[-1] == history[-1] or history[-1].name == "traffic"
    traffic = [r for r in history if r.name == "traffic"]
    kept_traffic = [r for r in kept if r.name == "traffic"]
    assert len(kept_traffic) >= min(len(traffic), HISTORY_LIMIT // 2)
    # whatever is dropped among the others is always their oldest
    others = [r for r in history if r.name != "traffic"]
    kept_others = [r for r in kept if r.name != "traffic"]
    assert kept_others == others[len(others) - len(kept_others) :]

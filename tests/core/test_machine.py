"""Example scenarios of the pure rollout machine, driven against a tiny fake cluster."""

from __future__ import annotations

from typing import Any

import pytest

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
    PauseReason,
    Phase,
    PodObs,
    RemoveStable,
    ScaleDown,
    SetWeight,
    Stage,
    Verdict,
    Wait,
    decide,
    parse_spec,
    quick_spec,
    replica_split,
)
from canaryctl.core.models import HISTORY_LIMIT
from canaryctl.errors import SpecError


class Cluster:
    """Two Deployments and a router; scaled replicas are ready at the next look."""

    def __init__(self, stable: int = 10, canary: int = 0, router: str = "replicas") -> None:
        self.router = router
        self.now = 0.0
        self.weight = 0
        self.exists = {"stable": True, "canary": True}
        self.desired = {"stable": stable, "canary": canary}
        self.ready = {"stable": stable, "canary": canary}
        self.pods: dict[str, tuple[PodObs, ...]] = {"stable": (), "canary": ()}
        self.auto_ready = {"stable": True, "canary": True}
        self.repointed = False  # the stable Service selects the canary (after DrainStable)

    def serving(self, target: str) -> int:
        """Pods of `target` the Services carrying its traffic list as serving (no lag)."""
        if not self.exists[target]:
            return 0
        if self.router == "replicas":
            return self.ready[target]  # one Service selects every pod of both versions
        if target == "stable":
            return 0 if self.repointed else self.ready["stable"]
        return self.ready["canary"] if self.weight > 0 or self.repointed else 0

    def deployment(self, target: str) -> DeploymentObs:
        if not self.exists[target]:
            return DeploymentObs.missing()
        return DeploymentObs(
            desired_replicas=self.desired[target],
            ready_replicas=self.ready[target],
            pods=self.pods[target],
        )

    def observe(self, **extra: Any) -> Observations:
        if self.router == "replicas":
            total = self.ready["stable"] + self.ready["canary"]
            served = 100 * self.ready["canary"] / total if total else None
        else:
            served = float(self.weight)
        endpoints = {
            "stable_serving": self.serving("stable"),
            "canary_serving": self.serving("canary"),
        }
        return Observations(
            now=self.now,
            stable=self.deployment("stable"),
            canary=self.deployment("canary"),
            effective_weight=served,
            **{**endpoints, **extra},
        )

    def apply(self, actions: tuple[Any, ...]) -> None:
        for action in actions:
            if isinstance(action, EnsureReplicas):
                self.desired[action.target] = max(self.desired[action.target], action.replicas)
            elif isinstance(action, ScaleDown):
                self.desired[action.target] = min(self.desired[action.target], action.replicas)
            elif isinstance(action, SetWeight):
                self.weight = action.weight
                if self.router == "replicas":
                    self.desired["stable"] = action.stable_replicas
                    self.desired["canary"] = action.canary_replicas
            elif isinstance(action, DrainStable):
                self.repointed = True
            elif isinstance(action, RemoveStable):
                self.exists["stable"] = action.mode != "delete"
                self.desired["stable"] = 0
        for target in ("stable", "canary"):
            if not self.exists[target]:
                self.desired[target] = self.ready[target] = 0
            elif self.auto_ready[target]:
                self.ready[target] = self.desired[target]


def step(spec: CanarySpec, status: CanaryStatus | None, obs: Observations) -> Decision:
    """decide(), checking that deciding again on the result changes nothing."""
    decision = decide(spec, status, obs)
    again = decide(spec, decision.status, obs)
    assert again.status == decision.status
    assert again.actions == decision.actions
    assert again.events == ()
    return decision


def drive(
    spec: CanarySpec,
    cluster: Cluster,
    status: CanaryStatus | None = None,
    ticks: int = 40,
    dt: float = 10.0,
    until: Phase | None = None,
    **extra: Any,
) -> list[Decision]:
    """Observe, decide, act for up to `ticks` rounds; stop at a terminal phase or `until`."""
    decisions: list[Decision] = []
    for _ in range(ticks):
        decision = step(spec, status, cluster.observe(**extra))
        decisions.append(decision)
        status = decision.status
        cluster.apply(decision.actions)
        cluster.now += dt
        if status.phase.terminal or status.phase is until:
            break
    return decisions


def moves(decisions: list[Decision]) -> list[tuple[Any, ...]]:
    """The non-Wait actions of each decision."""
    return [tuple(a for a in d.actions if not isinstance(a, Wait)) for d in decisions]


def seed_spec(**overrides: Any) -> CanarySpec:
    data: dict[str, Any] = {
        "name": "demo",
        "stable": "app-v1",
        "canary": "app-v2",
        "service": "app",
        "steps": [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}],
    }
    data.update(overrides)
    return parse_spec(data)


def crash(name: str = "app-v2-abc", restarts: int = 1, reason: str | None = None) -> PodObs:
    return PodObs(name=name, ready=False, restart_count=restarts, waiting_reason=reason)


# --- replica maths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "weight", "mode", "split"),
    [
        (10, 10, "seed", (9, 1)),
        (10, 50, "seed", (5, 5)),
        (10, 25, "seed", (7, 3)),
        (10, 0, "seed", (10, 0)),
        (10, 100, "seed", (0, 10)),
        (3, 10, "seed", (2, 1)),
        (1, 10, "seed", (1, 1)),
        (2, 90, "seed", (1, 2)),
        (10, 10, "full", (10, 1)),
        (10, 50, "full", (10, 5)),
        (10, 100, "full", (0, 10)),
    ],
)
def test_replica_split_follows_seed_and_full_modes(
    n: int, weight: int, mode: Any, split: tuple[int, int]
) -> None:
    assert replica_split(n, weight, mode) == split


# --- the happy path -----------------------------------------------------------------------


def test_good_canary_walks_to_succeeded_with_exact_action_sequence() -> None:
    spec = seed_spec()
    decisions = drive(spec, Cluster(stable=10, canary=0))
    phases = [(d.status.phase, d.status.stage) for d in decisions]
    assert phases == [
        (Phase.PROGRESSING, Stage.SCALE_CANARY),
        (Phase.PROGRESSING, Stage.SHIFT_TRAFFIC),
        (Phase.PROGRESSING, Stage.SCALE_CANARY),
        (Phase.PROGRESSING, Stage.SHIFT_TRAFFIC),
        (Phase.PROMOTING, Stage.SCALE_CANARY),
        (Phase.PROMOTING, Stage.SHIFT_TRAFFIC),
        (Phase.PROMOTING, Stage.REMOVE_STABLE),  # stable pods gone: drainDelay runs
        (Phase.PROMOTING, Stage.REMOVE_STABLE),  # 10 s later: remove the Deployment
        (Phase.SUCCEEDED, None),
    ]
    drained = (EnsureReplicas("canary", 10), SetWeight(100, 0, 10), DrainStable())
    assert moves(decisions) == [
        (EnsureReplicas("canary", 1), SetWeight(0, 10, 1)),
        (EnsureReplicas("canary", 1), SetWeight(10, 9, 1), ScaleDown("stable", 9)),
        (EnsureReplicas("canary", 5), SetWeight(10, 9, 5), ScaleDown("stable", 9)),
        (EnsureReplicas("canary", 5), SetWeight(50, 5, 5), ScaleDown("stable", 5)),
        (EnsureReplicas("canary", 10), SetWeight(50, 5, 10), ScaleDown("stable", 5)),
        (EnsureReplicas("canary", 10), SetWeight(100, 0, 10)),
        drained,
        (*drained, RemoveStable("delete")),
        (),
    ]
    assert decisions[6].status.drained_since is not None
    final = decisions[-1]
    assert final.status.reason == "StepsCompleted"
    assert [e.reason for e in final.events] == ["Succeeded"]


def test_pause_steps_hold_weight_for_their_duration() -> None:
    spec = quick_spec("demo", "default", "app-v1", "app-v2", "app", "10,100", "45s")
    decisions = drive(spec, Cluster(stable=4, canary=1), until=Phase.PROMOTING)
    paused = [d for d in decisions if d.status.phase is Phase.PAUSED]
    assert paused
    assert {d.status.weight for d in paused} == {10}
    started = paused[0].status.step_started_at
    assert started is not None
    assert paused[0].status.pause_until == started + 45
    assert decisions[-1].status.phase is Phase.PROMOTING
    promoted_at = decisions[-1].status.step_started_at
    assert promoted_at is not None
    assert started + 45 <= promoted_at < started + 45 + 10  # the first look after 45 s
    waits = [a for a in paused[0].actions if isinstance(a, Wait)]
    assert waits[0].until == started + 45


def test_weight_router_in_full_mode_never_scales_the_stable_down_before_removal() -> None:
    spec = seed_spec(router={"kind": "nginx", "ingress": "app"})
    assert spec.replica_mode == "full"
    decisions = drive(spec, Cluster(stable=4, canary=0, router="nginx"))
    assert decisions[-1].status.phase is Phase.SUCCEEDED
    actions = [a for d in decisions for a in d.actions]
    assert not any(isinstance(a, ScaleDown) and a.target == "stable" for a in actions)
    assert [a.weight for a in actions if isinstance(a, SetWeight)][-1] == 100


def test_step_waits_for_the_router_to_report_the_new_weight() -> None:
    spec = seed_spec(router={"kind": "istio", "virtualService": "app"})
    cluster = Cluster(stable=4, canary=1, router="istio")
    first = step(spec, None, cluster.observe())
    assert first.status.stage is Stage.SHIFT_TRAFFIC  # canary was ready already
    lagging = step(spec, first.status, cluster.observe())  # router still reports 0%
    assert lagging.status.stage is Stage.SHIFT_TRAFFIC
    assert lagging.status.checks["traffic"].passed is False
    cluster.apply(lagging.actions)
    moved = step(spec, lagging.status, cluster.observe())
    assert moved.status.step_index == 1


# --- failures -----------------------------------------------------------------------------


def test_crashloop_rolls_back_restoring_stable_before_removing_canary() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    decisions = drive(spec, cluster, ticks=3)  # into step 2 (50%)
    status = decisions[-1].status
    assert status.weight == 10 and status.stage is Stage.SCALE_CANARY
    cluster.pods["canary"] = (crash("app-v2-x1", restarts=3, reason="CrashLoopBackOff"),)
    cluster.auto_ready["stable"] = False  # stable pods take a while to come back
    failing = step(spec, status, cluster.observe())
    assert failing.status.phase is Phase.ROLLING_BACK
    assert failing.status.reason == "CanaryCrashLoop"
    assert "app-v2-x1" in failing.status.message and "CrashLoopBackOff" in failing.status.message
    assert moves([failing]) == [(EnsureReplicas("stable", 10),)]
    cluster.apply(failing.actions)
    waiting = step(spec, failing.status, cluster.observe())  # stable 9/10 ready
    assert waiting.status.stage is Stage.RESTORE_STABLE
    assert moves([waiting]) == [(EnsureReplicas("stable", 10),)]
    cluster.ready["stable"] = 10
    rest = drive(spec, cluster, waiting.status)
    # The replicas router removes the canary pods with the shift itself, so the
    # next look already finds the canary at zero.
    assert moves(rest) == [(EnsureReplicas("stable", 10), SetWeight(0, 10, 0)), ()]
    assert rest[-1].status.phase is Phase.ROLLED_BACK
    assert rest[-1].status.reason == "CanaryCrashLoop"
    assert cluster.desired == {"stable": 10, "canary": 0}


def test_canary_not_ready_within_deadline_rolls_back_naming_the_pods() -> None:
    spec = seed_spec(health={"readyDeadline": "1m"})
    cluster = Cluster(stable=10, canary=0)
    cluster.auto_ready["canary"] = False
    cluster.pods["canary"] = (PodObs(name="app-v2-slow", ready=False),)
    decisions = drive(spec, cluster, ticks=20, dt=15)
    phases = [d.status.phase for d in decisions]
    assert phases[:5] == [Phase.PROGRESSING] * 5  # 0..60 s: within the deadline
    assert phases[5] is Phase.ROLLING_BACK  # at 75 s
    status = decisions[5].status
    assert status.reason == "CanaryNotReady"
    assert "app-v2-slow" in status.message and "0/1 ready" in status.message
    assert decisions[-1].status.phase is Phase.ROLLED_BACK


def test_restarts_beyond_max_restarts_roll_back_but_within_are_tolerated() -> None:
    spec = seed_spec(health={"maxRestarts": 2})
    cluster = Cluster(stable=10, canary=1)
    cluster.pods["canary"] = (PodObs(name="app-v2-a", ready=True, restart_count=2),)
    ok = step(spec, None, cluster.observe())
    assert ok.status.phase is Phase.PROGRESSING
    cluster.pods["canary"] = (PodObs(name="app-v2-a", ready=True, restart_count=3),)
    failed = step(spec, ok.status, cluster.observe())
    assert failed.status.phase is Phase.ROLLING_BACK
    assert failed.status.reason == "CanaryRestarts"
    assert "app-v2-a restarted 3 times" in failed.status.message


def test_progress_deadline_exceeded_rolls_back() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=1)
    started = step(spec, None, cluster.observe())
    obs = cluster.observe().model_copy(
        update={"canary": DeploymentObs(desired_replicas=1, progress_deadline_exceeded=True)}
    )
    failed = step(spec, started.status, obs)
    assert failed.status.reason == "CanaryProgressDeadline"


def test_missing_canary_mid_rollout_rolls_back() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=2)[-1].status
    cluster.exists["canary"] = False
    rest = drive(spec, cluster, status)
    assert rest[0].status.reason == "CanaryMissing"
    assert rest[-1].status.phase is Phase.ROLLED_BACK
    assert cluster.desired["stable"] == 10


def test_missing_stable_holds_the_rollback_and_keeps_the_canary() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=2)[-1].status
    cluster.exists["stable"] = False
    decisions = drive(spec, cluster, status, ticks=5)
    assert all(d.status.phase is Phase.ROLLING_BACK for d in decisions)
    assert decisions[0].status.reason == "StableMissing"
    assert all(moves([d]) == [()] for d in decisions)
    assert "recreate it" in decisions[-1].actions[-1].reason
    assert cluster.desired["canary"] == 1
    cluster.exists["stable"] = True
    cluster.desired["stable"] = cluster.ready["stable"] = 10
    assert drive(spec, cluster, decisions[-1].status)[-1].status.phase is Phase.ROLLED_BACK


def test_rollback_returns_to_restoring_when_stable_capacity_drops() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=2)[-1].status
    aborted = step(spec, status, cluster.observe(command=Command(action="abort", id="a")))
    assert aborted.status.stage is Stage.RESTORE_STABLE  # the stable was at 9 for 10%
    cluster.apply(aborted.actions)
    restored = step(spec, aborted.status, cluster.observe())
    assert restored.status.stage is Stage.SHIFT_TO_STABLE
    cluster.ready["stable"] = 7  # a node dies before the canary is removed
    dropped = step(spec, restored.status, cluster.observe())
    assert dropped.status.stage is Stage.RESTORE_STABLE
    assert moves([dropped]) == [(EnsureReplicas("stable", 10),)]
    assert [e.reason for e in dropped.events] == ["StableCapacityLost"]


def test_analysis_rollback_verdict_rolls_back_with_its_reason() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=1)
    verdict = Verdict(
        decision="rollback",
        reason="error ratio e-value 41 >= 20",
        checks=(CheckRecord(time=0, name="errors", passed=False, value=41, threshold=20),),
    )
    decision = step(spec, None, cluster.observe(analysis=verdict))
    assert decision.status.phase is Phase.ROLLING_BACK
    assert decision.status.reason == "AnalysisFailed"
    assert decision.status.message.startswith("error ratio e-value 41")
    assert any(r.name == "errors" and r.value == 41 for r in decision.status.history)


# --- analysis and promotion ---------------------------------------------------------------


def test_final_promotion_waits_for_a_verdict_when_analysis_is_configured() -> None:
    spec = seed_spec(analysis={"template": "error-rate"})
    cluster = Cluster(stable=10, canary=0)
    decisions = drive(spec, cluster, ticks=12)
    assert decisions[-1].status.phase is Phase.PROGRESSING
    assert decisions[-1].status.step_index == spec.plan_length
    assert "analysis verdict" in decisions[-1].actions[-1].reason
    verdict = Verdict(decision="continue", reason="no regression")
    done = drive(spec, cluster, decisions[-1].status, analysis=verdict)
    assert done[-1].status.phase is Phase.SUCCEEDED


def test_promote_verdict_skips_timed_pauses_but_not_a_manual_gate() -> None:
    timed = quick_spec("demo", "default", "app-v1", "app-v2", "app", "10,20,50", "10m")
    cluster = Cluster(stable=10, canary=1)
    promote = Verdict(decision="promote", reason="e-value 1/beta reached")
    early = step(timed, None, cluster.observe(analysis=promote))
    assert early.status.phase is Phase.PROMOTING
    assert early.status.reason == "AnalysisPromoted"

    gated = seed_spec(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}])
    cluster = Cluster(stable=10, canary=1)
    decisions = drive(gated, cluster, ticks=6, analysis=promote)
    assert decisions[-1].status.phase is Phase.PAUSED
    assert decisions[-1].status.pause_reason is PauseReason.STEP
    approve = Command(action="promote", id="approve-1")
    rest = drive(gated, cluster, decisions[-1].status, command=approve, analysis=promote)
    assert rest[0].status.phase is Phase.PROMOTING
    assert rest[-1].status.phase is Phase.SUCCEEDED


# --- commands -----------------------------------------------------------------------------


def test_promote_command_approves_an_indefinite_pause() -> None:
    spec = seed_spec(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}])
    cluster = Cluster(stable=10, canary=1)
    decisions = drive(spec, cluster, ticks=10)
    status = decisions[-1].status
    assert (status.phase, status.pause_reason, status.weight) == (
        Phase.PAUSED,
        PauseReason.STEP,
        10,
    )
    assert status.pause_until is None
    approved = step(spec, status, cluster.observe(command=Command(action="promote", id="p1")))
    assert approved.status.step_index == 2
    assert approved.status.stage is Stage.SCALE_CANARY
    assert "Approved" in [e.reason for e in approved.events]


def test_pause_command_freezes_weight_until_resume() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=2)[-1].status  # 10% reached, step 2 starting
    pause = Command(action="pause", id="c1")
    held = drive(spec, cluster, status, ticks=5, command=pause)
    assert all(d.status.phase is Phase.PAUSED for d in held)
    assert {d.status.weight for d in held} == {10}
    assert held[0].status.pause_reason is PauseReason.COMMAND
    assert [e.reason for e in held[0].events] == ["Paused"]
    resume = Command(action="resume", id="c2")
    rest = drive(spec, cluster, held[-1].status, command=resume)
    assert rest[0].events[0].reason == "Resumed"
    assert rest[-1].status.phase is Phase.SUCCEEDED


def test_a_pause_asked_by_canaryctl_itself_says_why_not_a_user() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=2)[-1].status
    user = step(spec, status, cluster.observe(command=Command(action="pause", id="u"))).events
    assert [e.message for e in user] == ["paused by a user command; weights are frozen"]
    drift = Command(action="pause", id="d", cause="another actor scaling deployment/app-v1")
    told = step(spec, status, cluster.observe(command=drift)).events
    assert [e.message for e in told] == [
        "paused by another actor scaling deployment/app-v1; weights are frozen"
    ]


def test_full_promote_command_skips_remaining_steps() -> None:
    spec = seed_spec(steps=[{"setWeight": 5}, {"pause": "1h"}, {"setWeight": 50}])
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=3)[-1].status
    assert status.phase is Phase.PAUSED
    full = Command(action="promote", id="f1", full=True)
    rest = drive(spec, cluster, status, command=full)
    assert rest[0].status.phase is Phase.PROMOTING
    assert rest[0].status.reason == "PromotedByUser"
    assert rest[-1].status.phase is Phase.SUCCEEDED


def test_abort_mid_step_rolls_back() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=3)[-1].status
    assert status.weight == 10
    rest = drive(spec, cluster, status, command=Command(action="abort", id="x"))
    assert rest[0].status.reason == "Aborted"
    assert rest[-1].status.phase is Phase.ROLLED_BACK
    assert cluster.weight == 0 and cluster.desired == {"stable": 10, "canary": 0}


def test_abort_with_a_weight_router_moves_traffic_before_scaling_the_canary_down() -> None:
    spec = seed_spec(router={"kind": "gateway", "httproute": "app"})
    cluster = Cluster(stable=4, canary=0, router="gateway")
    status = drive(spec, cluster, ticks=3)[-1].status
    rest = drive(spec, cluster, status, command=Command(action="abort", id="x"))
    back = (EnsureReplicas("stable", 4), SetWeight(0, 4, 0))
    assert moves(rest) == [
        back,
        back,  # no route sends the canary traffic any more: drainDelay runs
        (*back, ScaleDown("canary", 0)),
        (),
    ]
    assert rest[-1].status.phase is Phase.ROLLED_BACK


def test_abort_during_a_rollback_is_ignored_and_does_not_restart_it() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=2)[-1].status
    first = step(spec, status, cluster.observe(command=Command(action="abort", id="a1")))
    cluster.apply(first.actions)
    shifting = step(spec, first.status, cluster.observe())
    assert shifting.status.stage is Stage.SHIFT_TO_STABLE
    again = step(spec, shifting.status, cluster.observe(command=Command(action="abort", id="a2")))
    assert again.status.stage is not Stage.RESTORE_STABLE
    assert [e.reason for e in again.events] == ["CommandIgnored"]


def test_abort_before_start_needs_no_undo() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    cluster.exists["canary"] = False
    waiting = step(spec, None, cluster.observe())
    assert waiting.status.phase is Phase.PENDING
    assert moves([waiting]) == [()]
    aborted = step(spec, waiting.status, cluster.observe(command=Command(action="abort", id="a")))
    assert aborted.status.phase is Phase.ROLLED_BACK
    assert aborted.actions == ()


def test_abort_is_ignored_once_the_stable_is_being_removed() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=4, canary=0)
    decisions = drive(spec, cluster, ticks=20)
    removing = next(d for d in decisions if d.status.stage is Stage.REMOVE_STABLE)
    cluster.exists["stable"] = True  # the stable is not deleted yet: replicas at 0
    late = step(spec, removing.status, cluster.observe(command=Command(action="abort", id="z")))
    assert late.status.phase is Phase.PROMOTING
    assert [e.reason for e in late.events] == ["CommandIgnored"]


def test_a_command_acts_once_per_id() -> None:
    spec = seed_spec(steps=[{"pause": {}}, {"pause": {}}, {"setWeight": 50}])
    cluster = Cluster(stable=10, canary=0)
    first = step(spec, None, cluster.observe())
    approve = Command(action="promote", id="once")
    after = drive(spec, cluster, first.status, ticks=4, command=approve)
    assert {d.status.step_index for d in after} == {1}  # one pause approved, not two
    assert after[-1].status.last_command_id == "once"


def test_resume_on_a_pause_step_is_ignored_with_an_explanation() -> None:
    spec = seed_spec(steps=[{"pause": {}}, {"setWeight": 50}])
    cluster = Cluster(stable=10, canary=0)
    paused = step(spec, None, cluster.observe())
    resumed = step(spec, paused.status, cluster.observe(command=Command(action="resume", id="r")))
    assert resumed.status.phase is Phase.PAUSED
    assert "promote approves it" in resumed.events[0].message


# --- stable health, spec changes, terminal phases -----------------------------------------


def test_degraded_stable_pauses_after_the_deadline_and_resumes_on_recovery() -> None:
    spec = seed_spec(health={"readyDeadline": "30s"})
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=2)[-1].status
    cluster.auto_ready["stable"] = False
    cluster.ready["stable"] = 6
    decisions = drive(spec, cluster, status, ticks=5)
    phases = [d.status.phase for d in decisions]
    assert Phase.PAUSED in phases and Phase.ROLLING_BACK not in phases
    assert decisions[-1].status.pause_reason is PauseReason.STABLE_DEGRADED
    assert decisions[-1].status.weight == 10
    cluster.ready["stable"] = 9
    recovered = step(spec, decisions[-1].status, cluster.observe())
    assert recovered.status.phase is Phase.PROGRESSING
    assert recovered.events[0].reason == "StableRecovered"


def test_pending_waits_for_a_ready_stable() -> None:
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    cluster.ready["stable"] = 8
    decision = step(spec, None, cluster.observe())
    assert decision.status.phase is Phase.PENDING
    assert decision.actions == (Wait("waiting for stable 8/10 ready"),)


def test_edited_spec_continues_without_lowering_the_weight() -> None:
    spec = seed_spec(steps=[{"setWeight": 10}, {"setWeight": 30}, {"setWeight": 60}])
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=4)[-1].status
    assert status.weight == 30 and status.step_index == 1
    edited = seed_spec(steps=[{"setWeight": 20}, {"pause": "1m"}, {"setWeight": 40}])
    decision = step(edited, status, cluster.observe())
    assert decision.events[0].reason == "SpecChanged"
    # 30% is past the new first step (20%): continue with its pause, then 40%.
    assert decision.status.step_index == 1
    assert decision.status.phase is Phase.PAUSED
    assert decision.status.pause_until == cluster.now + 60
    assert decision.status.weight == 30
    assert decision.status.observed_spec_hash == edited.fingerprint


@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.ROLLED_BACK])
def test_terminal_phases_ignore_everything(phase: Phase) -> None:
    spec = seed_spec()
    status = CanaryStatus(phase=phase, weight=7, baseline_replicas=10)
    chaos = Observations(
        now=1e9,
        stable=DeploymentObs.missing(),
        canary=DeploymentObs(pods=(crash(reason="CrashLoopBackOff"),)),
        analysis=Verdict(decision="rollback"),
        command=Command(action="abort", id="late"),
    )
    decision = decide(spec, status, chaos)
    assert decision.status == status
    assert decision.actions == () and decision.events == ()


def test_history_keeps_check_values_and_stays_bounded() -> None:
    spec = seed_spec(steps=[{"setWeight": 10}, {"pause": "1h"}, {"setWeight": 50}])
    cluster = Cluster(stable=10, canary=0)
    status = drive(spec, cluster, ticks=3)[-1].status
    ready = [r for r in status.history if r.name == "canary-ready"]
    assert (ready[0].passed, ready[0].value, ready[0].threshold) == (False, 0, 1)
    assert (ready[-1].passed, ready[-1].value) == (True, 1)
    assert status.checks["stable-ready"].threshold == 9
    for i in range(3 * HISTORY_LIMIT):
        cluster.now += 1
        record = CheckRecord(time=cluster.now, name="latency", passed=True, value=i)
        verdict = Verdict(decision="continue", checks=(record,))
        status = step(spec, status, cluster.observe(analysis=verdict)).status
    assert status.phase is Phase.PAUSED
    assert len(status.history) == HISTORY_LIMIT
    assert [r.value for r in status.history if r.name == "latency"][-1] == 3 * HISTORY_LIMIT - 1


def test_a_continue_verdict_that_disallows_promotion_holds_the_end_of_the_steps() -> None:
    spec = parse_spec(
        {
            "name": "c", "stable": "a", "canary": "b", "service": "s",
            "steps": [{"setWeight": 50}],
            "analysis": {"judge": "sequential"},
        }
    )  # fmt: skip
    status = CanaryStatus(
        phase=Phase.PROGRESSING, step_index=1, weight=50, canary_replicas=5,
        baseline_replicas=10, started_at=0.0, step_started_at=0.0,
        observed_spec_hash=spec.fingerprint,
    )  # fmt: skip
    obs = Observations(
        now=10.0,
        stable=DeploymentObs(desired_replicas=5, ready_replicas=5),
        canary=DeploymentObs(desired_replicas=5, ready_replicas=5),
        analysis=Verdict(decision="continue", reason="evidence", promotion_allowed=False),
    )
    held = decide(spec, status, obs)
    assert held.status.phase is Phase.PROGRESSING
    allowed = obs.model_copy(update={"analysis": Verdict(decision="continue")})
    assert decide(spec, status, allowed).status.phase is Phase.PROMOTING


def _gated_spec() -> CanarySpec:
    return parse_spec(
        {
            "name": "c", "stable": "a", "canary": "b", "service": "s",
            "steps": [{"setWeight": 10}, {"setWeight": 50}],
            "analysis": {"webhooks": []},
        }
    )  # fmt: skip


def test_a_shut_rollout_gate_holds_from_the_first_tick_and_a_rollback_still_goes_through() -> None:
    shut = Verdict(decision="continue", promotion_allowed=False, rollout_allowed=False)
    cluster = Cluster(stable=10, canary=0)  # the replicas router: canary pods are traffic
    decisions = drive(_gated_spec(), cluster, ticks=4, analysis=shut)
    assert {d.status.phase for d in decisions} == {Phase.PENDING}
    assert (cluster.desired, cluster.weight) == ({"stable": 10, "canary": 0}, 0)
    assert "rollout gate" in next(a for a in decisions[-1].actions if isinstance(a, Wait)).reason
    opened = drive(_gated_spec(), cluster, decisions[-1].status, ticks=3, until=Phase.SUCCEEDED,
                   analysis=Verdict(decision="continue"))  # fmt: skip
    assert opened[-1].status.weight > 0 and cluster.desired["canary"] > 0
    failing = shut.model_copy(update={"decision": "rollback", "reason": "hook said so"})
    running = CanaryStatus(
        phase=Phase.PROGRESSING, step_index=0, weight=0, canary_replicas=0,
        baseline_replicas=10, started_at=0.0, step_started_at=0.0,
        observed_spec_hash=_gated_spec().fingerprint,
    )  # fmt: skip
    rolled = step(_gated_spec(), running, Cluster().observe(analysis=failing))
    assert rolled.status.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK)


def test_a_shut_traffic_gate_adds_no_canary_pod_and_keeps_the_weight_reached() -> None:
    shut = Verdict(decision="continue", traffic_increase_allowed=False)
    cluster = Cluster(stable=10, canary=0)
    decisions = drive(_gated_spec(), cluster, ticks=4, analysis=shut)
    assert decisions[-1].status.phase is Phase.PROGRESSING
    assert (cluster.desired, cluster.weight) == ({"stable": 10, "canary": 0}, 0), "no pod"
    assert "traffic gate" in next(a for a in decisions[-1].actions if isinstance(a, Wait)).reason


def test_events_of_a_gated_rollout_tell_only_what_happened() -> None:
    # Event webhooks hear these: none while the rollout gate is shut; once it opens the
    # rollout has started, but no canary pod is claimed before the traffic gate's yes.
    def told(decisions: list[Decision]) -> list[tuple[str, str]]:
        return [(e.reason, e.message) for d in decisions for e in d.events]

    shut = Verdict(decision="continue", rollout_allowed=False, traffic_increase_allowed=False)
    cluster = Cluster(stable=10, canary=0)
    held = drive(_gated_spec(), cluster, ticks=3, analysis=shut.model_copy(
        update={"promotion_allowed": False}))  # fmt: skip
    assert told(held) == [] and held[-1].status.phase is Phase.PENDING
    traffic_shut = Verdict(decision="continue", traffic_increase_allowed=False)
    started = drive(_gated_spec(), cluster, held[-1].status, ticks=3, analysis=traffic_shut)
    assert told(started) == [
        ("Started", "canary b against stable a (10 replicas), 2 steps"),
        ("StepStarted", "step 1/2: waiting for the traffic gate (confirm-traffic-increase "
         "webhooks) before scaling canary b to 1 ready and sending it 10%"),
    ]  # fmt: skip
    assert cluster.desired["canary"] == 0
    yes = Verdict(decision="continue", traffic_increase_confirmed_at=cluster.now)
    rose = drive(_gated_spec(), cluster, started[-1].status, ticks=3, analysis=yes)
    assert told(rose)[:2] == [
        ("CanaryScaling", "step 1/2: the traffic gate said yes; scaling canary b to 1 ready "
         "before sending it 10%"),
        ("WeightSet", "canary b ready; sending it 10%"),
    ]  # fmt: skip
    assert cluster.desired["canary"] == 1


def test_one_yes_of_the_traffic_gate_counts_for_one_rise_only() -> None:
    # A yes given at t = 5 s: the first step (begun at 0 s) rises to 10%; the second,
    # begun later, waits for a newer yes, with no extra canary pod meanwhile.
    yes_at_5 = Verdict(decision="continue", traffic_increase_confirmed_at=5.0)
    cluster = Cluster(stable=10, canary=0)
    decisions = drive(_gated_spec(), cluster, ticks=6, analysis=yes_at_5)
    last = decisions[-1].status
    assert (last.step_index, last.weight, cluster.desired["canary"]) == (1, 10, 1)
    fresh = yes_at_5.model_copy(update={"traffic_increase_confirmed_at": cluster.now})
    after = drive(_gated_spec(), cluster, last, ticks=3, analysis=fresh)
    assert [d.status.weight for d in after][:2] == [10, 50]


def _blue_green(delay: str = "60s") -> CanarySpec:
    return parse_spec(
        {
            "name": "bg", "stable": "a", "canary": "b", "service": "s",
            "router": {"kind": "nginx", "ingress": "web"},
            "steps": [{"setWeight": 100}], "scaleDownDelay": delay,
        }
    )  # fmt: skip


def _switched(spec: CanarySpec, now: float, **status: Any) -> Decision:
    st = CanaryStatus(
        phase=Phase.PROMOTING, stage=Stage.SHIFT_TRAFFIC, step_index=0, weight=100,
        canary_replicas=10, baseline_replicas=10, started_at=0.0, step_started_at=0.0,
        observed_spec_hash=spec.fingerprint, **status,
    )  # fmt: skip
    obs = Observations(
        now=now,
        stable=DeploymentObs(desired_replicas=10, ready_replicas=10),
        canary=DeploymentObs(desired_replicas=10, ready_replicas=10),
        effective_weight=100.0,
    )
    return decide(spec, st, obs)


def test_blue_green_keeps_the_old_version_for_the_scale_down_delay() -> None:
    spec = _blue_green()
    first = _switched(spec, 100.0)
    assert first.status.stage is Stage.SHIFT_TRAFFIC, "the old version is kept"
    assert first.status.full_traffic_at == 100.0
    assert not any(isinstance(a, RemoveStable) for a in first.actions)
    later = _switched(spec, 161.0, full_traffic_at=100.0)
    assert later.status.stage is Stage.REMOVE_STABLE


def test_abort_during_the_scale_down_delay_sends_traffic_back_at_once() -> None:
    spec = _blue_green()
    st = _switched(spec, 100.0).status
    obs = Observations(
        now=130.0,
        stable=DeploymentObs(desired_replicas=10, ready_replicas=10),
        canary=DeploymentObs(desired_replicas=10, ready_replicas=10),
        effective_weight=100.0,
        command=Command(action="abort", id="x"),
    )
    aborted = decide(spec, st, obs)
    assert aborted.status.phase is Phase.ROLLING_BACK
    assert any(isinstance(a, SetWeight) and a.weight == 0 for a in aborted.actions)


# --- drain: traffic leaves before pods do ------------------------------------------------------


def _removals(decisions: list[Decision]) -> list[tuple[float, Any]]:
    return [
        (d.status.drained_since or -1.0, a)
        for d in decisions
        for a in d.actions
        if isinstance(a, RemoveStable) or (isinstance(a, ScaleDown) and a.replicas == 0)
    ]


def test_promotion_removes_the_old_version_only_after_its_endpoints_drained() -> None:
    spec = seed_spec(router={"kind": "nginx", "ingress": "app"}, drainDelay="30s")
    cluster = Cluster(stable=4, canary=0, router="nginx")
    decisions = drive(spec, cluster, until=Phase.PROMOTING)
    lag = 2  # the endpoints keep listing the old pods for two looks after repointing
    status = decisions[-1].status
    seen: list[Decision] = []
    for _ in range(30):
        obs = cluster.observe()
        if cluster.repointed and lag:
            lag -= 1
            obs = obs.model_copy(update={"stable_serving": 4})
        decision = step(spec, status, obs)
        seen.append(decision)
        status = decision.status
        if any(isinstance(a, RemoveStable) for a in decision.actions):
            assert obs.stable_serving == 0
            assert status.drained_since is not None
            assert obs.now >= status.drained_since + 30
        cluster.apply(decision.actions)
        cluster.now += 10
        if status.phase.terminal:
            break
    assert status.phase is Phase.SUCCEEDED
    drains = [i for i, d in enumerate(seen) if DrainStable() in d.actions]
    removes = [i for i, d in enumerate(seen) if any(isinstance(a, RemoveStable) for a in d.actions)]
    # repoint; two looks still list old pods; the first look without them starts the
    # 30 s drainDelay, which ends three looks (10 s apart) later
    assert removes[0] - drains[0] == 2 + 1 + 3
    waits = [a for a in seen[drains[0] + 3].actions if isinstance(a, Wait)]
    assert "drainDelay" in waits[0].reason and waits[0].until is not None


def test_pods_reappearing_in_the_endpoints_restart_the_drain_delay() -> None:
    spec = seed_spec(router={"kind": "gateway", "httproute": "app"})
    cluster = Cluster(stable=4, canary=0, router="gateway")
    status = drive(spec, cluster, until=Phase.PROMOTING)[-1].status
    for _ in range(4):  # into remove-stable, repointed, drained since some time
        decision = step(spec, status, cluster.observe())
        status = decision.status
        cluster.apply(decision.actions)
        cluster.now += 4
        if status.drained_since is not None:
            break
    assert status.stage is Stage.REMOVE_STABLE and status.drained_since is not None
    back = step(spec, status, cluster.observe(stable_serving=1))  # an endpoint came back
    assert back.status.drained_since is None
    assert not any(isinstance(a, RemoveStable) for a in back.actions)
    assert back.status.checks["stable-drained"].passed is False
    again = step(spec, back.status, cluster.observe())
    assert again.status.drained_since == cluster.now
    assert not any(isinstance(a, RemoveStable) for a in again.actions)


def test_unobserved_endpoints_never_remove_a_version() -> None:
    spec = seed_spec(drainDelay=0)
    cluster = Cluster(stable=4, canary=0)
    status = drive(spec, cluster, until=Phase.PROMOTING)[-1].status
    for _ in range(6):
        decision = step(spec, status, cluster.observe(stable_serving=None))
        status = decision.status
        assert not any(isinstance(a, RemoveStable) for a in decision.actions)
        cluster.apply(decision.actions)
        cluster.now += 60
    assert status.stage is Stage.REMOVE_STABLE
    waits = [a for a in decision.actions if isinstance(a, Wait)]
    assert "not observed" in waits[0].reason


def test_rollback_scales_the_canary_down_after_traffic_left_and_the_drain_delay() -> None:
    spec = seed_spec(router={"kind": "istio", "virtualService": "app"}, drainDelay="25s")
    cluster = Cluster(stable=4, canary=0, router="istio")
    status = drive(spec, cluster, ticks=3)[-1].status
    assert status.weight == 10
    abort = Command(action="abort", id="x")
    rest = drive(spec, cluster, status, dt=5.0, command=abort)
    assert rest[-1].status.phase is Phase.ROLLED_BACK
    weight_zero = next(i for i, d in enumerate(rest) if d.status.stage is Stage.REMOVE_CANARY)
    scaled = next(i for i, d in enumerate(rest) if any(isinstance(a, ScaleDown) for a in d.actions))
    assert rest[scaled].status.drained_since is not None
    times = [d.status.drained_since for d in rest[weight_zero:scaled]]
    assert scaled - weight_zero == 25 // 5 and len(set(times)) == 1
    assert _removals(rest) == [(rest[scaled].status.drained_since, ScaleDown("canary", 0))]


def test_drain_delay_is_a_duration_with_a_default() -> None:
    assert seed_spec().drain_delay == 10.0
    assert seed_spec(drainDelay="1m").drain_delay == 60.0
    assert seed_spec(drainDelay=0).drain_delay == 0.0
    assert quick_spec("d", "default", "a", "b", "s", drain_delay="45s").drain_delay == 45.0
    with pytest.raises(SpecError) as err:
        seed_spec(drainDelay="-5s")
    assert err.value.field == "drainDelay"


# --- the hold reason in the status ------------------------------------------------------------


def _waits(decision: Decision) -> list[str]:
    return [a.reason for a in decision.actions if isinstance(a, Wait)]


def test_the_hold_reason_is_stored_while_held_and_cleared_once_the_rollout_ends() -> None:
    """What a held rollout waits for is kept in its status (for `get`, the Canary's
    conditions), equal to the Wait it acts on; the same observations give the same status,
    so a rollout held at rest has nothing new to write."""
    spec = seed_spec(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}])
    cluster = Cluster(stable=10, canary=0)
    cluster.exists["canary"] = False
    missing = step(spec, None, cluster.observe())
    assert missing.status.phase is Phase.PENDING
    assert missing.status.hold_reason == "canary Deployment app-v2 not found"
    assert missing.status.to_dict()["holdReason"] == missing.status.hold_reason
    cluster.exists["canary"] = True
    decisions = drive(spec, cluster, missing.status, ticks=10, until=Phase.PAUSED)
    decisions += drive(spec, cluster, decisions[-1].status, ticks=3)
    assert all(d.status.hold_reason == "".join(_waits(d)) for d in decisions)
    held = [d.status for d in decisions[-3:]]
    assert held[0].hold_reason == "waiting for a promote command"
    assert held[0] == held[1] == held[2], "held at rest: the status does not change"
    approved = step(spec, held[-1], cluster.observe(command=Command(action="promote", id="p")))
    cluster.apply(approved.actions)
    rest = drive(spec, cluster, approved.status)
    assert rest[-1].status.phase is Phase.SUCCEEDED
    assert rest[-1].status.hold_reason == ""
    assert all(d.status.hold_reason == "".join(_waits(d)) for d in [approved, *rest])


def test_the_hold_reason_follows_what_the_rollout_waits_for() -> None:
    """Canary pods not ready yet: the stored reason says so and changes with the count."""
    spec = seed_spec()
    cluster = Cluster(stable=10, canary=0)
    cluster.auto_ready["canary"] = False
    first = step(spec, None, cluster.observe())
    cluster.apply(first.actions)
    waiting = step(spec, first.status, cluster.observe())
    assert waiting.status.hold_reason == "waiting for canary 0/1 ready before 10%"
    cluster.ready["canary"] = 1
    moved = step(spec, waiting.status, cluster.observe())
    assert moved.status.hold_reason != waiting.status.hold_reason

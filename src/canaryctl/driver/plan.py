"""A dry run: every step of a rollout and every object change it would make."""

from __future__ import annotations

from collections.abc import Sequence

from canaryctl.core.durations import format_duration
from canaryctl.core.models import (
    CanarySpec,
    PauseStep,
    SetCanaryScaleStep,
    SetWeightStep,
    replica_split,
)
from canaryctl.kube.store import PREFIX


def plan(
    spec: CanarySpec,
    baseline: int,
    canary_now: int = 0,
    setup: Sequence[object] = (),
    *,
    resource: bool = False,
) -> list[str]:
    """Human-readable plan, one line per step or change, from the current replica counts.

    `setup` lists the router's own changes before the first weight (objects it creates).
    `resource`: the rollout is a Canary resource's (its status holds the state).
    """
    ns, stable, canary = spec.namespace, spec.stable, spec.canary
    if resource:
        lines = [f"write the status of canary/{spec.name} in {ns} (rollout state; no lease)"]
    else:
        lines = [f"create configmap/{PREFIX}{spec.name} in {ns} (rollout state, commands, lease)"]
    lines += [f"{change} (before the first weight)" for change in setup]
    weights = spec.router.kind != "replicas"
    have_stable, have_canary = baseline, canary_now
    for index, step in enumerate(spec.steps[: spec.plan_length]):
        label = f"step {index + 1}:"
        if isinstance(step, PauseStep):
            how = format_duration(step.pause) if step.pause else "until `canaryctl promote`"
            lines.append(f"{label} pause {how}; health gates keep running")
            continue
        if isinstance(step, SetCanaryScaleStep):
            want = max(1, -(-baseline * step.set_canary_scale // 100))
            if want > have_canary:
                lines.append(
                    f"{label} setCanaryScale {step.set_canary_scale}%: scale deployment/"
                    f"{canary} {have_canary} -> {want}, no weight (only header/cookie testers)"
                )
                have_canary = want
            continue
        assert isinstance(step, SetWeightStep)
        want_stable, want_canary = replica_split(baseline, step.set_weight, spec.replica_mode)
        lines.append(f"{label} setWeight {step.set_weight}")
        if weights:
            lines.append(
                f"  patch the {spec.router.kind} route weights to {100 - step.set_weight}/"
                f"{step.set_weight} once deployment/{canary} has ready capacity"
            )
        if want_canary != have_canary:
            lines.append(
                f"  scale deployment/{canary} {have_canary} -> {want_canary}, "
                "wait until ready (gates: readiness deadline, restarts, crash loops)"
            )
        if want_stable != have_stable:
            lines.append(
                f"  then scale deployment/{stable} {have_stable} -> {want_stable} "
                f"(serving pods never drop below {baseline})"
            )
        have_stable, have_canary = want_stable, want_canary
    lines.append("promote:")
    if weights:
        lines.append(f"  route 100% to the canary, then point the stable Service at {canary}")
    if have_canary != baseline:
        lines.append(
            f"  scale deployment/{canary} {have_canary} -> {baseline}, wait until all ready"
        )
    if spec.on_promotion == "delete":
        lines.append(f"  delete deployment/{stable}")
    else:
        lines.append(f"  scale deployment/{stable} {have_stable} -> 0")
    lines.append(
        f"on failure or abort: scale deployment/{stable} back to {baseline}, wait until ready, "
        f"then scale deployment/{canary} to 0"
    )
    return lines

"""Spec parsing and validation, durations, and status serialisation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from canaryctl.core import (
    CanaryStatus,
    CheckRecord,
    PauseReason,
    PauseStep,
    Phase,
    SetWeightStep,
    Stage,
    format_duration,
    parse_duration,
    parse_spec,
    quick_spec,
    spec_hash,
)
from canaryctl.errors import SpecError


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "demo",
        "stable": "app-v1",
        "canary": "app-v2",
        "service": "app",
        "steps": [{"setWeight": 10}, {"pause": "30s"}, {"setWeight": 50}],
    }
    data.update(overrides)
    return data


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("2m", 120),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("1m30s250ms", 90.25),
        ("45", 45),
        (12, 12),
        (0.25, 0.25),
    ],
)
def test_durations_parse_go_style_units_and_plain_seconds(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "3x", "s", "-5s", "1d", "1 m", "5s3", True, -1, None])
def test_invalid_durations_are_rejected(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.5, "500ms"), (30, "30s"), (90, "1m30s"), (3600, "1h"), (5400, "1h30m")]
)
def test_durations_format_compactly(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


# --- friendly spec forms ------------------------------------------------------------------


def test_friendly_yaml_form_parses_into_typed_steps() -> None:
    spec = parse_spec(
        base(
            steps=[
                {"setWeight": 10},
                {"pause": "30s"},
                {"pause": {}},
                {"pause": {"duration": "2m"}},
                {"pause": None},
                {"pause": 5},
                {"setWeight": 40},
            ],
            health={"readyDeadline": "1m30s", "maxRestarts": 1},
        )
    )
    assert spec.steps == (
        SetWeightStep(set_weight=10),
        PauseStep(pause=30.0),
        PauseStep(pause=None),
        PauseStep(pause=120.0),
        PauseStep(pause=None),
        PauseStep(pause=5.0),
        SetWeightStep(set_weight=40),
    )
    assert spec.health.ready_deadline == 90
    assert spec.namespace == "default"
    assert spec.router.kind == "replicas"
    assert spec.on_promotion == "delete"


def test_snake_case_keys_are_accepted_too() -> None:
    spec = parse_spec(base(max_weight=60, steps=[{"set_weight": 60}], on_promotion="scale-to-zero"))
    assert spec.max_weight == 60 and spec.on_promotion == "scale-to-zero"


@pytest.mark.parametrize(
    ("router", "mode"),
    [
        ({"kind": "replicas"}, "seed"),
        ({"kind": "nginx", "ingress": "app"}, "full"),
        ({"kind": "istio", "virtualService": "app", "destinationRule": "app"}, "full"),
        ({"kind": "gateway", "httproute": "app"}, "full"),
    ],
)
def test_replica_mode_defaults_to_seed_for_replicas_and_full_for_weight_routers(
    router: dict[str, str], mode: str
) -> None:
    assert parse_spec(base(router=router)).replica_mode == mode


def test_a_trailing_100_is_the_promotion_not_a_step() -> None:
    spec = parse_spec(base(steps=[{"setWeight": 10}, {"setWeight": 100}], maxWeight=50))
    assert spec.plan_length == 1
    assert parse_spec(base()).plan_length == 3


def test_quick_spec_puts_the_pause_after_each_weight_below_100() -> None:
    spec = quick_spec("demo", "shop", "deploy/app-v1", "deployment/app-v2", "svc/app")
    assert (spec.namespace, spec.stable, spec.canary, spec.service) == (
        "shop",
        "app-v1",
        "app-v2",
        "app",
    )
    assert spec.steps == (
        SetWeightStep(set_weight=10),
        PauseStep(pause=30.0),
        SetWeightStep(set_weight=50),
        PauseStep(pause=30.0),
        SetWeightStep(set_weight=100),
    )
    no_pause = quick_spec("demo", "shop", "a", "b", "s", steps=[20, 60], pause=None)
    assert no_pause.steps == (SetWeightStep(set_weight=20), SetWeightStep(set_weight=60))


def test_quick_spec_reports_bad_steps_as_spec_errors() -> None:
    with pytest.raises(SpecError) as bad:
        quick_spec("demo", "default", "a", "b", "s", steps="10,fifty")
    assert bad.value.field == "steps"
    with pytest.raises(SpecError) as down:
        quick_spec("demo", "default", "a", "b", "s", steps="50,10")
    assert down.value.field == "steps[2].setWeight"


def test_spec_hash_is_stable_and_sees_any_change() -> None:
    spec = parse_spec(base())
    again = parse_spec(json.loads(json.dumps(spec.model_dump(mode="json", by_alias=True))))
    assert spec_hash(spec) == spec_hash(again)
    assert spec_hash(spec) != spec_hash(parse_spec(base(maxWeight=60)))
    assert spec_hash(spec) != spec_hash(parse_spec(base(analysis={"interval": "1m"})))
    assert spec_hash(spec) != spec_hash(spec.model_copy(update={"max_weight": 60}))


# --- validation errors name the field -----------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"name": "Demo"}, "name", "DNS-1123 label"),
        ({"name": None}, "name", "valid string"),
        ({"canary": "app-v1"}, "canary", "different Deployment"),
        ({"service": "my_svc"}, "service", "DNS-1123"),
        ({"steps": []}, "steps", "at least one"),
        ({"steps": [{}]}, "steps[0]", "exactly one of setWeight, setCanaryScale or pause"),
        ({"steps": [{"setWeight": 10, "pause": "1s"}]}, "steps[0]", "exactly one"),
        ({"steps": [{"setWeigth": 10}]}, "steps[0]", "exactly one"),
        ({"steps": [{"setWeight": 0}]}, "steps[0].setWeight", "greater than 0"),
        ({"steps": [{"setWeight": 101}]}, "steps[0].setWeight", "less than or equal to 100"),
        ({"steps": [{"setWeight": "ten"}]}, "steps[0].setWeight", "valid integer"),
        (
            {"steps": [{"setWeight": 10}, {"pause": "1m"}, {"setWeight": 10}]},
            "steps[2].setWeight",
            "strictly increase",
        ),
        ({"steps": [{"setWeight": 60}], "maxWeight": 50}, "steps[0].setWeight", "maxWeight 50"),
        ({"steps": [{"setWeight": 100}, {"pause": "1m"}]}, "steps[0].setWeight", "last step"),
        ({"steps": [{"pause": "3 minutes"}]}, "steps[0].pause", "invalid duration"),
        ({"steps": [{"pause": "0s"}]}, "steps[0].pause", "longer than 0s"),
        ({"steps": [{"pause": {"for": "1m"}}]}, "steps[0].pause", "unknown key 'for'"),
        ({"steps": [{"setWeight": 10, "weight": 5}]}, "steps[0].weight", "unknown field"),
        ({"maxWeight": 0}, "maxWeight", "greater than 0"),
        ({"replicaMode": "half"}, "replicaMode", "'seed' or 'full'"),
        ({"onPromotion": "keep"}, "onPromotion", "'delete' or 'scale-to-zero'"),
        ({"router": {"kind": "linkerd"}}, "router.kind", "got 'linkerd'"),
        ({"router": {"kind": "nginx"}}, "router.ingress", "required by the nginx router"),
        ({"router": {"kind": "istio"}}, "router.virtualService", "required by the istio"),
        ({"router": {"kind": "gateway"}}, "router.httproute", "required by the gateway"),
        (
            {"router": {"kind": "nginx", "ingress": "app", "httproute": "r"}},
            "router.httproute",
            "not used by the nginx router",
        ),
        ({"router": {"header": {"X-Track": "canary"}}}, "router.header", "pod ratio"),
        ({"router": {"cookie": "canary"}}, "router.cookie", "pod ratio"),
        (
            {"router": {"kind": "nginx", "ingress": "app", "header": {"a": "1", "b": "2"}}},
            "router.header",
            "single header",
        ),
        ({"canaryNamespace": "other"}, "canaryNamespace", "istio or gateway"),
        ({"health": {"readyDeadline": "-1s"}}, "health.readyDeadline", "invalid duration"),
        ({"health": {"maxRestarts": -1}}, "health.maxRestarts", "greater than or equal to 0"),
        ({"health": {"stableMinReadyRatio": 1.5}}, "health.stableMinReadyRatio", "less than"),
        ({"extra": 1}, "extra", "unknown field"),
        # Keys that would print as nothing are quoted (found by the CLI fuzzer).
        ({"\r": 1}, "spec['\\r']", "unknown field"),
        ({"health": {" ": 1}}, "health[' ']", "unknown field"),
        ({"targetRef": {"name": "app"}}, "targetRef", "exclusive"),
        ({"targetRef": {"kind": "StatefulSet", "name": "app"}}, "targetRef.kind", "Deployment"),
        ({"targetRef": {"kind": "Deployment"}}, "targetRef.name", "is required"),
        ({"targetRef": {"name": "App"}}, "targetRef.name", "Kubernetes object name"),
        ({"stable": None}, "stable", "is required (or give targetRef"),
    ],
)
def test_invalid_specs_raise_spec_error_naming_the_field(
    overrides: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(base(**overrides))
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_cross_namespace_canary_may_share_the_stable_name_with_istio() -> None:
    spec = parse_spec(
        base(
            canary="app-v1",
            canaryNamespace="canary",
            router={"kind": "istio", "virtualService": "app", "header": {"X-Track": "canary"}},
        )
    )
    assert spec.canary_namespace == "canary"


def test_parse_spec_rejects_a_non_mapping() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(["steps"])  # type: ignore[arg-type]
    assert caught.value.field == "spec"


# --- status -------------------------------------------------------------------------------


def test_status_round_trips_through_json() -> None:
    record = CheckRecord(time=5.0, name="canary-ready", passed=False, value=0, threshold=1)
    status = CanaryStatus(
        phase=Phase.PAUSED,
        stage=Stage.SHIFT_TRAFFIC,
        step_index=2,
        weight=50,
        canary_replicas=5,
        baseline_replicas=10,
        pause_reason=PauseReason.STEP,
        pause_until=130.0,
        checks={"canary-ready": record},
        history=[record],
        observed_spec_hash="abc",
        last_command_id="cmd-1",
    )
    stored = json.loads(json.dumps(status.to_dict()))
    assert stored["phase"] == "Paused" and stored["pauseReason"] == "step"
    assert stored["baselineReplicas"] == 10
    assert CanaryStatus.from_dict(stored) == status


def test_status_from_a_newer_canaryctl_ignores_unknown_keys() -> None:
    status = CanaryStatus.from_dict({"phase": "Progressing", "weight": 10, "futureField": 1})
    assert (status.phase, status.weight) == (Phase.PROGRESSING, 10)


def test_set_canary_scale_needs_a_weight_router() -> None:
    base = {"name": "c", "stable": "a", "canary": "b", "service": "s"}
    with pytest.raises(SpecError) as err:
        parse_spec({**base, "steps": [{"setCanaryScale": 20}, {"pause": {}}]})
    assert err.value.field == "steps[0].setCanaryScale"
    spec = parse_spec(
        {**base, "router": {"kind": "nginx", "ingress": "web", "header": {"X-Track": "canary"}},
         "steps": [{"setCanaryScale": 20}, {"pause": {}}]}
    )  # fmt: skip
    assert spec.steps[0].set_canary_scale == 20


DARK_LAUNCH = [{"setCanaryScale": 20}, {"pause": {}}, {"setWeight": 10}]


def test_mirroring_is_an_istio_feature() -> None:
    base = {"name": "c", "stable": "a", "canary": "b", "service": "s", "steps": DARK_LAUNCH}
    with pytest.raises(SpecError) as err:
        parse_spec({**base, "router": {"kind": "nginx", "ingress": "web", "mirror": 10}})
    assert err.value.field == "router.mirror"
    spec = parse_spec({**base, "router": {"kind": "istio", "virtualService": "vs", "mirror": 10}})
    assert spec.router.mirror == 10


@pytest.mark.parametrize(
    "steps",
    [
        [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}],
        [{"pause": {}}, {"setWeight": 10}],  # a pause at weight 0 has no canary pods
        [{"setWeight": 10}, {"setCanaryScale": 50}, {"pause": {}}],  # scale after a weight
        [{"pause": {"duration": "1m"}}],
    ],
)
def test_a_mirror_that_could_never_run_is_refused_naming_it(steps: list[dict]) -> None:
    """Mirroring is a dark launch (canary pods, weight 0): without a setCanaryScale step
    before the first setWeight, nothing would ever be mirrored."""
    router = {"kind": "istio", "virtualService": "vs", "mirror": 10}
    with pytest.raises(SpecError) as err:
        parse_spec(base(router=router, steps=steps))
    assert err.value.field == "router.mirror"
    assert "setCanaryScale step before the first setWeight" in err.value.reason


@pytest.mark.parametrize(
    "steps",
    [
        DARK_LAUNCH,
        [{"pause": {}}, {"setCanaryScale": 20}, {"pause": {"duration": "5m"}}, {"setWeight": 100}],
        [{"setCanaryScale": 20}, {"pause": {}}],  # A/B plus mirror, then promotion
    ],
)
def test_a_mirror_with_a_dark_launch_step_is_accepted(steps: list[dict]) -> None:
    router = {"kind": "istio", "virtualService": "vs", "mirror": 10}
    assert parse_spec(base(router=router, steps=steps)).router.mirror == 10


def test_quick_mode_mirroring_starts_with_a_dark_launch_held_for_one_pause() -> None:
    router = {"kind": "istio", "virtualService": "vs", "mirror": 20}
    spec = quick_spec("d", "ns", "a", "b", "s", steps="10,50,100", pause="30s", router=router)
    kinds = [step.model_dump(by_alias=True) for step in spec.steps]
    assert kinds[:3] == [{"setCanaryScale": 10}, {"pause": 30.0}, {"setWeight": 10}]
    with pytest.raises(SpecError) as err:
        quick_spec("d", "ns", "a", "b", "s", steps="10,100", pause=None, router=router)
    assert err.value.field == "pause"


def test_managed_mode_names_only_the_target() -> None:
    data = base(targetRef={"kind": "Deployment", "name": "app"})
    del data["stable"], data["canary"]
    spec = parse_spec(data)
    assert spec.managed and spec.target_ref is not None and spec.target_ref.name == "app"
    assert spec.stable is None and spec.canary is None
    data["canary"] = "app-v2"
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert caught.value.field == "targetRef" and "canary" in caught.value.reason


def test_a_managed_spec_resolves_to_the_primary_and_the_target() -> None:
    data = base(targetRef={"name": "app"})
    del data["stable"], data["canary"]
    managed = parse_spec(data)
    pair = managed.resolved()
    assert (pair.stable, pair.canary, pair.on_promotion) == ("app-primary", "app", "scale-to-zero")
    assert pair.steps == managed.steps and pair.pair == managed.pair
    assert pair.fingerprint != managed.fingerprint
    unmanaged = parse_spec(base())
    assert unmanaged.resolved() is unmanaged

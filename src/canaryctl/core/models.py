"""Spec, status and observation models of one canary rollout.

The spec is what the user asked for (validated, immutable). The status is what the
rollout machine remembers between decisions; others store it in the cluster as JSON.
Observations are the fresh facts adapters gather before each decision.

Input is accepted in the friendly camelCase form of YAML/JSON manifests
(`setWeight`, `maxWeight`, `readyDeadline`, ...) and in snake_case; unknown keys are
rejected. `parse_spec` turns every validation failure into a
`canaryctl.errors.SpecError` whose field is a dotted path such as `steps[2].setWeight`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from canaryctl.core.durations import parse_duration
from canaryctl.errors import RecordError, SpecError

RouterKind = Literal["replicas", "nginx", "istio", "gateway"]
ReplicaMode = Literal["seed", "full"]
OnPromotion = Literal["delete", "scale-to-zero"]
Target = Literal["stable", "canary"]

#: Seconds a version keeps its pods after traffic has left them (see docs/routers.md):
#: covers endpoint propagation to kube-proxy and proxies (Traefik batches provider
#: updates for 2 s, ingress-nginx syncs endpoints about every second) and the
#: in-flight requests of a typical HTTP service, yet stays short next to a rollout.
DEFAULT_DRAIN_DELAY = 10.0
#: Most check records kept in `CanaryStatus.history` (oldest dropped first).
HISTORY_LIMIT = 50

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SPEC_CONFIG = ConfigDict(
    extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
)
_OBS_CONFIG = ConfigDict(extra="forbid", frozen=True)
# Router fields that name objects of one router kind, and the one each kind needs.
_ROUTER_FIELDS: dict[str, tuple[str, ...]] = {
    "replicas": (),
    "nginx": ("ingress",),
    "istio": ("virtual_service", "destination_rule"),
    "gateway": ("httproute",),
}
_ROUTER_REQUIRED = {"nginx": "ingress", "istio": "virtual_service", "gateway": "httproute"}


# --- schema hints -----------------------------------------------------------------------
# The Canary CRD's OpenAPI schema is generated from these models (canaryctl.kube.crd).
# Python validators that JSON Schema cannot see carry their wire form here, and the
# cross-field rules carry their CEL twin (x-kubernetes-validations) next to the Python
# check, so the API server refuses what `parse_spec` refuses, naming the same field.

_DURATION_RE = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$|^[0-9]+(\.[0-9]+)?$"
#: A duration: seconds as an integer, or Go-style units ("500ms", "30s", "1h30m").
DURATION_SCHEMA: dict[str, Any] = {
    "x-kubernetes-int-or-string": True,
    "pattern": _DURATION_RE,
    "maxLength": 32,
    "description": "A duration: seconds as an integer, or units ms, s, m, h ('30s', '1h30m').",
}


#: A duration that must be longer than 0s.
POSITIVE_DURATION_SCHEMA: dict[str, Any] = {
    **DURATION_SCHEMA,
    "x-kubernetes-validations": [
        {
            "rule": "type(self) == int ? self > 0 : self.matches('[1-9]')",
            "message": "must be longer than 0s",
        }
    ],
}
#: A pause in the resource: {duration: D}, or {} to wait for a promote command (the
#: Argo Rollouts form). The API server's schema cannot type a field that is either a
#: string or an object (and CEL cannot see an untyped one), so the short `pause: 30s`
#: and `pause: null` forms are for `canaryctl rollout -f` files only.
PAUSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Hold the weight for {duration: '30s'}, or until `canaryctl promote` ({}).",
    "properties": {"duration": POSITIVE_DURATION_SCHEMA},
}
_LABEL_SCHEMA = {"pattern": _DNS_LABEL.pattern.join("^$"), "maxLength": 63}
_NAME_SCHEMA = {"pattern": _DNS_SUBDOMAIN.pattern.join("^$"), "maxLength": 253}
# In CEL: the router kind, defaulting like RouterSpec.kind.
_KIND = "(has(self.kind) ? self.kind : 'replicas')"


def _owned_by(field: str, kind: str) -> dict[str, str]:
    return {
        "rule": f"!has(self.{field}) || {_KIND} == '{kind}'",
        "message": f"{field} is used by the {kind} router only",
        "fieldPath": f".{field}",
    }


def _required_by(kind: str, field: str) -> dict[str, str]:
    return {
        "rule": f"{_KIND} != '{kind}' || has(self.{field})",
        "message": f"{field} is required by the {kind} router (name of the object)",
        "fieldPath": f".{field}",
    }


class _FieldError(ValueError):
    """A cross-field rule failed; `field` is relative to the model that raised it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid Kubernetes object name: lower-case letters, digits, "
            "'-' and '.', starting and ending with a letter or digit"
        )
    return value


# --- spec -------------------------------------------------------------------------------


class RouterSpec(BaseModel):
    """Which traffic router moves weight, and the objects it patches.

    `ingress` (nginx), `virtual_service`/`destination_rule` (istio) and `httproute`
    (gateway) name the user's existing routing objects; `header`/`cookie` add A/B
    routing of matching requests to the canary (not possible with the replicas router,
    which splits by pod ratio only).
    """

    model_config = _SPEC_CONFIG | ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _owned_by("ingress", "nginx"),
                _owned_by("virtualService", "istio"),
                _owned_by("destinationRule", "istio"),
                _owned_by("httproute", "gateway"),
                _required_by("nginx", "ingress"),
                _required_by("istio", "virtualService"),
                _required_by("gateway", "httproute"),
                {
                    "rule": f"{_KIND} != 'replicas' || !has(self.header) && !has(self.cookie)",
                    "message": "the replicas router splits traffic by pod ratio and cannot "
                    "route by header or cookie; use the nginx, istio or gateway router",
                    "fieldPath": ".kind",
                },
                _owned_by("mirror", "istio"),
                {
                    "rule": f"{_KIND} != 'nginx' || !has(self.header) || size(self.header) <= 1",
                    "message": "the nginx router matches a single header",
                    "fieldPath": ".header",
                },
            ]
        }
    )

    kind: RouterKind = "replicas"
    ingress: str | None = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    virtual_service: str | None = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    destination_rule: str | None = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    httproute: str | None = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    header: dict[str, str] | None = Field(default=None, json_schema_extra={"minProperties": 1})
    cookie: str | None = None
    mirror: float | None = Field(default=None, gt=0, le=100)

    @field_validator("ingress", "virtual_service", "destination_rule", "httproute")
    @classmethod
    def _object_name(cls, value: str | None) -> str | None:
        return None if value is None else _dns_subdomain(value)

    @field_validator("header")
    @classmethod
    def _header_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (not value or any(not name.strip() for name in value)):
            raise ValueError("give at least one header as name: value, with non-empty names")
        return value

    @model_validator(mode="after")
    def _fields_match_kind(self) -> RouterSpec:
        owned = {name for names in _ROUTER_FIELDS.values() for name in names}
        for name in sorted(owned - set(_ROUTER_FIELDS[self.kind])):
            if getattr(self, name) is not None:
                raise _FieldError(to_camel(name), f"is not used by the {self.kind} router")
        required = _ROUTER_REQUIRED.get(self.kind)
        if required and getattr(self, required) is None:
            raise _FieldError(
                to_camel(required), f"is required by the {self.kind} router (name of the object)"
            )
        if self.kind == "replicas" and (self.header or self.cookie):
            field = "header" if self.header else "cookie"
            raise _FieldError(
                field,
                "the replicas router splits traffic by pod ratio and cannot route by "
                "header or cookie; use the nginx, istio or gateway router",
            )
        if self.mirror is not None and self.kind != "istio":
            raise _FieldError("mirror", "traffic mirroring is available with the istio router")
        if self.kind == "nginx" and self.header and len(self.header) > 1:
            raise _FieldError("header", "the nginx router matches a single header")
        return self


class SetWeightStep(BaseModel):
    """Send `set_weight` percent of traffic to the canary (`{setWeight: 10}`)."""

    model_config = _SPEC_CONFIG

    set_weight: int = Field(gt=0, le=100)


class SetCanaryScaleStep(BaseModel):
    """Give the canary `set_canary_scale` percent of the stable's replicas, moving no weight.

    With a header or cookie route this is A/B testing: only matching requests (testers)
    reach the canary until promotion (`{setCanaryScale: 20}`; weight routers only).
    """

    model_config = _SPEC_CONFIG

    set_canary_scale: int = Field(gt=0, le=100)


class PauseStep(BaseModel):
    """Hold the current weight for `pause` seconds; None waits for a promote command.

    Accepts `{pause: "30s"}`, `{pause: 30}`, `{pause: {duration: "30s"}}`, and
    `{pause: {}}` or `{pause: null}` for an indefinite pause.
    """

    model_config = _SPEC_CONFIG

    pause: Annotated[float | None, WithJsonSchema(PAUSE_SCHEMA)]

    @field_validator("pause", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        if isinstance(value, Mapping):
            unknown = set(value) - {"duration"}
            if unknown:
                raise ValueError(
                    f"unknown key {sorted(unknown)[0]!r}: use a duration like '30s', "
                    "{duration: '30s'}, or {} to wait for a promote command"
                )
            value = value.get("duration")
        if value is None:
            return None
        seconds = parse_duration(value)
        if seconds <= 0:
            raise ValueError("must be longer than 0s; remove the step to skip it")
        return seconds


_STEP_KEYS = {
    "set-weight-step": ("setWeight", "set_weight"),
    "pause-step": ("pause",),
    "set-canary-scale-step": ("setCanaryScale", "set_canary_scale"),
}
_STEP_CLASSES = {
    SetWeightStep: "set-weight-step",
    PauseStep: "pause-step",
    SetCanaryScaleStep: "set-canary-scale-step",
}


def _step_kind(value: Any) -> str | None:
    if type(value) in _STEP_CLASSES:
        return _STEP_CLASSES[type(value)]
    if isinstance(value, Mapping):
        kinds = [tag for tag, keys in _STEP_KEYS.items() if any(k in value for k in keys)]
        if len(kinds) == 1:
            return kinds[0]
    return None


_STEP_TAGS = frozenset(_STEP_KEYS)

Step = Annotated[
    Annotated[SetWeightStep, Tag("set-weight-step")]
    | Annotated[PauseStep, Tag("pause-step")]
    | Annotated[SetCanaryScaleStep, Tag("set-canary-scale-step")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="each step needs exactly one of setWeight, setCanaryScale or pause",
    ),
]


class HealthSpec(BaseModel):
    """Health gates that need no metrics system.

    `ready_deadline`: seconds the canary has to reach its replica count after each
    change (and the stable to recover before the rollout pauses). `max_restarts`: any
    canary pod restarting more often fails the rollout. `stable_min_ready_ratio`:
    share of the stable's expected replicas that must stay ready.
    """

    model_config = _SPEC_CONFIG

    ready_deadline: Annotated[float, WithJsonSchema(POSITIVE_DURATION_SCHEMA)] = 120.0
    max_restarts: int = Field(default=0, ge=0)
    stable_min_ready_ratio: float = Field(default=1.0, gt=0, le=1)

    @field_validator("ready_deadline", mode="before")
    @classmethod
    def _deadline(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if seconds <= 0:
            raise ValueError("must be longer than 0s")
        return seconds


class AnalysisRef(BaseModel):
    """Analysis configuration, opaque to the rollout machine (it only reads verdicts)."""

    model_config = ConfigDict(extra="allow", frozen=True)


#: Most steps in one spec (keeps the API server's CEL cost bounded, and plans readable).
MAX_STEPS = 64
_ROUTER_KIND = "(has(self.router) && has(self.router.kind) ? self.router.kind : 'replicas')"
#: Mirroring is a dark launch (on only while the canary has capacity and weight 0): without
#: a setCanaryScale step before the first setWeight, a spec would never mirror anything.
_MIRROR_NEEDS_DARK_LAUNCH = (
    "mirroring runs only while the canary has pods and weight 0 (a dark launch), so it "
    "needs a setCanaryScale step before the first setWeight, e.g. steps: "
    "[{setCanaryScale: 20}, {pause: {duration: 10m}}, {setWeight: 10}, ...]; "
    "without one nothing is ever mirrored: add the step or remove mirror"
)
# The CEL twins of CanarySpec._consistent, in the same order.
_SPEC_RULES: list[dict[str, str]] = [
    {
        "rule": "!has(self.targetRef) || !has(self.stable) && !has(self.canary)",
        "message": "managed mode (targetRef) and pair mode (stable/canary) are exclusive: "
        "name either targetRef, or both stable and canary",
        "fieldPath": ".targetRef",
    },
    {
        "rule": "!has(self.targetRef) || !has(self.canaryNamespace)",
        "message": "managed mode keeps <target>-primary next to the target: "
        "remove canaryNamespace or use stable/canary",
        "fieldPath": ".canaryNamespace",
    },
    {
        "rule": "has(self.targetRef) || has(self.stable) && has(self.canary)",
        "message": "stable and canary are required (or give targetRef for managed mode)",
        "fieldPath": ".stable",
    },
    {
        # Stricter than the Python rule, which also accepts canaryNamespace equal to the
        # rollout's own namespace: a spec cannot see its object's namespace in CEL.
        "rule": f"!has(self.canaryNamespace) || {_ROUTER_KIND} in ['istio', 'gateway']",
        "message": "cross-namespace canaries need the istio or gateway router",
        "fieldPath": ".canaryNamespace",
    },
    {
        "rule": "has(self.canaryNamespace) || !has(self.stable) || !has(self.canary) "
        "|| self.stable != self.canary",
        "message": "canary must name a different Deployment than stable",
        "fieldPath": ".canary",
    },
    {
        "rule": f"{_ROUTER_KIND} != 'replicas' || !self.steps.exists(s, has(s.setCanaryScale))",
        "message": "setCanaryScale needs a weight router (nginx, istio, gateway): the "
        "replicas router sends traffic to every canary pod",
        "fieldPath": ".steps",
    },
    {
        "rule": "self.steps.all(i, s, !has(s.setWeight) || self.steps.all(j, t, "
        "j >= i || !has(t.setWeight) || t.setWeight < s.setWeight))",
        "message": "setWeight values must strictly increase",
        "fieldPath": ".steps",
    },
    {
        "rule": "self.steps.all(i, s, !has(s.setWeight) || s.setWeight != 100 "
        "|| i == size(self.steps) - 1)",
        "message": "setWeight 100 means promotion and must be the last step",
        "fieldPath": ".steps",
    },
    {
        "rule": "self.steps.all(s, !has(s.setWeight) || s.setWeight == 100 "
        "|| s.setWeight <= (has(self.maxWeight) ? self.maxWeight : 100))",
        "message": "a setWeight exceeds maxWeight; lower it, raise maxWeight, "
        "or end the steps with 100 to promote",
        "fieldPath": ".steps",
    },
    {
        "rule": "!has(self.router) || !has(self.router.mirror) || self.steps.exists(i, s, "
        "has(s.setCanaryScale) && self.steps.all(j, t, j >= i || !has(t.setWeight)))",
        "message": _MIRROR_NEEDS_DARK_LAUNCH,
        "fieldPath": ".router.mirror",
    },
]


class TargetRef(BaseModel):
    """The workload of managed mode (`targetRef: {kind: Deployment, name: app}`).

    The operator keeps `<name>-primary` serving and runs each new pod template of
    `<name>` as the canary. Only the operator drives managed mode.
    """

    model_config = _SPEC_CONFIG

    kind: Literal["Deployment"] = "Deployment"
    name: str = Field(json_schema_extra=_NAME_SCHEMA)

    @field_validator("name")
    @classmethod
    def _object_name(cls, value: str) -> str:
        return _dns_subdomain(value)


class CanarySpec(BaseModel):
    """One canary rollout: which Deployments, how traffic moves, which steps, which gates.

    Steps: setWeight weights strictly increase, each at most `max_weight`; a final
    `setWeight: 100` is allowed above `max_weight` and means "promote here" (it is
    the promotion, not a step of its own). The plan ends with promotion in any case.
    `scale_down_delay` keeps the old stable, with all traffic on the canary, for that long
    before removing it (blue/green: `steps: [{setWeight: 100}]`; an abort in that window
    sends traffic straight back). `replica_mode` defaults to "seed" for the replicas router
    and "full" otherwise. With
    the replicas router, "full" keeps the stable at N until promotion, so the canary's
    share is c/(N+c) rather than the step's weight (more capacity, a smaller share).
    `drain_delay` is how long a version that traffic has left (its pods no longer listed
    as serving by the Services that carry its traffic) keeps its pods before they are
    removed, for proxies and kube-proxy to catch up and in-flight requests to finish.
    """

    model_config = _SPEC_CONFIG | ConfigDict(
        json_schema_extra={"x-kubernetes-validations": _SPEC_RULES}
    )

    name: str = Field(json_schema_extra=_LABEL_SCHEMA)
    namespace: str = Field(default="default", json_schema_extra=_LABEL_SCHEMA)
    stable: str | None = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    canary: str | None = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    target_ref: TargetRef | None = None
    canary_namespace: str | None = Field(default=None, json_schema_extra=_LABEL_SCHEMA)
    service: str = Field(json_schema_extra=_LABEL_SCHEMA)
    router: RouterSpec = RouterSpec()
    # Always set by _default_replica_mode (seed for the replicas router, else full).
    replica_mode: ReplicaMode = "seed"
    on_promotion: OnPromotion = "delete"
    steps: tuple[Step, ...] = Field(min_length=1, max_length=MAX_STEPS)
    max_weight: int = Field(default=100, gt=0, le=100)
    scale_down_delay: Annotated[float, WithJsonSchema(DURATION_SCHEMA)] = 0.0
    drain_delay: Annotated[float, WithJsonSchema(DURATION_SCHEMA)] = DEFAULT_DRAIN_DELAY
    health: HealthSpec = HealthSpec()
    analysis: AnalysisRef | None = None

    @field_validator("scale_down_delay", "drain_delay", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if seconds < 0:
            raise ValueError("must be 0s or longer")
        return seconds

    @model_validator(mode="before")
    @classmethod
    def _default_replica_mode(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "replicaMode" in data or "replica_mode" in data:
            return data
        router = data.get("router")
        if isinstance(router, RouterSpec):
            kind = router.kind
        elif isinstance(router, Mapping):
            kind = router.get("kind", "replicas")
        else:
            kind = "replicas"
        return {**data, "replicaMode": "seed" if kind == "replicas" else "full"}

    @field_validator("name", "namespace", "service")
    @classmethod
    def _label(cls, value: str) -> str:
        return _dns_label(value)

    @field_validator("stable", "canary")
    @classmethod
    def _object_name(cls, value: str | None) -> str | None:
        return None if value is None else _dns_subdomain(value)

    @field_validator("canary_namespace")
    @classmethod
    def _canary_namespace(cls, value: str | None) -> str | None:
        return None if value is None else _dns_label(value)

    @model_validator(mode="after")
    def _consistent(self) -> CanarySpec:
        if self.target_ref is not None:
            both = [f for f in ("stable", "canary") if getattr(self, f) is not None]
            if both:
                raise _FieldError(
                    "targetRef",
                    f"managed mode (targetRef) and pair mode ({' and '.join(both)}) are "
                    "exclusive: name either targetRef, or both stable and canary",
                )
            if self.canary_namespace is not None:
                raise _FieldError(
                    "canaryNamespace",
                    "managed mode keeps <target>-primary next to the target: "
                    "remove canaryNamespace or use stable/canary",
                )
        else:
            for name in ("stable", "canary"):
                if getattr(self, name) is None:
                    raise _FieldError(name, "is required (or give targetRef for managed mode)")
        cross_namespace = self.canary_namespace not in (None, self.namespace)
        if cross_namespace and self.router.kind not in ("istio", "gateway"):
            raise _FieldError(
                "canaryNamespace",
                f"the {self.router.kind} router needs both Deployments in one namespace; "
                "cross-namespace canaries need the istio or gateway router",
            )
        if not cross_namespace and self.stable is not None and self.stable == self.canary:
            raise _FieldError("canary", "must name a different Deployment than stable")
        previous = 0
        for index, step in enumerate(self.steps):
            if isinstance(step, SetCanaryScaleStep) and self.router.kind == "replicas":
                raise _FieldError(
                    f"steps[{index}].setCanaryScale",
                    "the replicas router sends traffic to every canary pod, so it cannot add "
                    "canary pods without weight; use setWeight, or a weight router "
                    "(nginx, istio, gateway) with a header route for A/B tests",
                )
            if not isinstance(step, SetWeightStep):
                continue
            field = f"steps[{index}].setWeight"
            weight = step.set_weight
            if weight <= previous:
                raise _FieldError(
                    field, f"weights must strictly increase: {weight} follows {previous}"
                )
            if weight == 100 and index != len(self.steps) - 1:
                raise _FieldError(field, "setWeight 100 means promotion and must be the last step")
            if weight != 100 and weight > self.max_weight:
                raise _FieldError(
                    field,
                    f"{weight} exceeds maxWeight {self.max_weight}; lower it, raise maxWeight, "
                    "or end the steps with 100 to promote",
                )
            previous = weight
        if self.router.mirror is not None and not _dark_launch(self.steps):
            raise _FieldError("router.mirror", _MIRROR_NEEDS_DARK_LAUNCH)
        return self

    @property
    def managed(self) -> bool:
        """True in managed mode (targetRef), which only the operator drives."""
        return self.target_ref is not None

    def resolved(self) -> CanarySpec:
        """Pair-mode view of a managed spec: `<target>-primary` is the stable, the target the
        canary, and promotion scales the primary to zero (the operator copies the promoted
        template into it afterwards) instead of deleting it. A pair-mode spec is returned
        as it is. The fingerprint of the result is what a rollout's status records."""
        if self.target_ref is None:
            return self
        target = self.target_ref.name
        return self.model_copy(
            update={
                "stable": f"{target}-primary",
                "canary": target,
                "on_promotion": "scale-to-zero",
            }
        )

    @property
    def pair(self) -> tuple[str, str]:
        """(stable, canary) Deployment names; managed mode: (`<target>-primary`, `<target>`)."""
        if self.target_ref is not None:
            return f"{self.target_ref.name}-primary", self.target_ref.name
        assert self.stable is not None and self.canary is not None  # checked by _consistent
        return self.stable, self.canary

    @property
    def plan_length(self) -> int:
        """Number of steps before promotion (a final setWeight 100 is the promotion)."""
        last = self.steps[-1]
        trailing_full = isinstance(last, SetWeightStep) and last.set_weight == 100
        return len(self.steps) - 1 if trailing_full else len(self.steps)

    @property
    def fingerprint(self) -> str:
        """Stable short hash of the whole spec (recorded as `observed_spec_hash`).

        Computed on each use (about 10 us): a cached value would survive `model_copy`.
        """
        canonical = json.dumps(
            self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _dark_launch(steps: Sequence[Any]) -> bool:
    """Whether a setCanaryScale step comes before the first setWeight (weight 0 with pods)."""
    for step in steps:
        if isinstance(step, SetCanaryScaleStep):
            return True
        if isinstance(step, SetWeightStep):
            return False
    return False


def spec_hash(spec: CanarySpec) -> str:
    """Return the spec's fingerprint, used to notice a spec edited mid-rollout."""
    return spec.fingerprint


def _format_loc(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if part in _STEP_TAGS:
            continue  # discriminator tags are ours, not the user's field names
        path = field_path((path, part)) if path else field_path((part,))
    return path


def field_path(loc: Sequence[int | str]) -> str:
    """A dotted field path (`a.b[2].c`) naming every part, quoting a key that would print
    as nothing (blank or control characters: `a[' ']`)."""
    path = ""
    for part in loc:
        if isinstance(part, str) and (not part.strip() or not part.isprintable()):
            path = f"{path or 'spec'}[{part!r}]"
        elif isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _join(base: str, field: str) -> str:
    return f"{base}.{field}" if base else field


def _spec_error(exc: ValidationError) -> SpecError:
    first = exc.errors()[0]
    path = _format_loc(first["loc"])
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):
        return SpecError(_join(path, cause.field), cause.reason)
    if isinstance(cause, ValueError):
        return SpecError(path or "spec", str(cause))
    kind = first["type"]
    if kind == "missing":
        reason = "is required"
    elif kind == "too_short":
        reason = "needs at least one entry"
    elif kind == "extra_forbidden":
        reason = "unknown field (check spelling; names are camelCase, e.g. setWeight)"
    else:
        message = first["msg"]
        reason = message[0].lower() + message[1:]
        value = first.get("input")
        if isinstance(value, str | int | float | bool | type(None)):
            reason += f" (got {value!r})"
    return SpecError(path or "spec", reason)


def parse_spec(data: Mapping[str, Any]) -> CanarySpec:
    """Validate a spec mapping (camelCase or snake_case keys) into a `CanarySpec`.

    Raises `SpecError(field, reason)` for the first problem, `field` being a dotted
    path like `steps[2].setWeight` or `router.ingress`.
    """
    if not isinstance(data, Mapping):
        raise SpecError("spec", f"must be a mapping of fields, got {type(data).__name__}")
    try:
        return CanarySpec.model_validate(dict(data))
    except ValidationError as exc:
        raise _spec_error(exc) from exc


_KIND_PREFIXES = {
    "stable": ("deploy/", "deployment/", "deployments/", "deployment.apps/"),
    "canary": ("deploy/", "deployment/", "deployments/", "deployment.apps/"),
    "service": ("svc/", "service/", "services/"),
}


def _strip_kind(field: str, value: str) -> str:
    for prefix in _KIND_PREFIXES[field]:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def _quick_weights(steps: str | Sequence[int]) -> list[int]:
    if not isinstance(steps, str):
        return list(steps)
    try:
        return [int(part) for part in steps.split(",") if part.strip()]
    except ValueError:
        raise SpecError(
            "steps", f"{steps!r} is not a comma-separated list of weights like '10,50,100'"
        ) from None


def quick_spec(
    name: str,
    namespace: str,
    stable: str,
    canary: str,
    service: str,
    steps: str | Sequence[int] = "10,50,100",
    pause: str | float | None = "30s",
    *,
    router: Mapping[str, Any] | None = None,
    replica_mode: ReplicaMode | None = None,
    on_promotion: OnPromotion = "delete",
    max_weight: int = 100,
    health: Mapping[str, Any] | None = None,
    analysis: Mapping[str, Any] | None = None,
    canary_namespace: str | None = None,
    scale_down_delay: str | float | None = None,
    drain_delay: str | float | None = None,
) -> CanarySpec:
    """Build a spec from CLI quick-mode flags (`--steps 10,50,100 --pause 30s`).

    Each weight below 100 becomes a setWeight step followed by the pause (when given);
    a trailing 100 is the promotion, so "10,50,100" with "30s" means: 10%, wait 30s,
    50%, wait 30s, promote. "10,50" promotes after the last pause as well. With a
    `mirror` in `router` the steps start with a dark launch: `setCanaryScale` at the first
    weight, then the pause (required), while requests are mirrored to the canary.
    `kind/name` forms like `deploy/app-v1` and `svc/app` are accepted. Raises `SpecError`.
    """
    plan: list[dict[str, Any]] = []
    weights = _quick_weights(steps)
    if router is not None and router.get("mirror") is not None and weights:
        # Mirroring is a dark launch: the canary first gets the first weight's capacity
        # and no weight, held for one pause while requests are mirrored to it.
        if pause is None:
            raise SpecError(
                "pause",
                "mirroring in quick mode holds a dark launch (canary pods, weight 0, mirrored "
                "requests) for one pause before the first weight: give --pause, e.g. 5m",
            )
        plan += [{"setCanaryScale": weights[0]}, {"pause": pause}]
    for weight in weights:
        plan.append({"setWeight": weight})
        if pause is not None and weight != 100:
            plan.append({"pause": pause})
    data: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "stable": _strip_kind("stable", stable),
        "canary": _strip_kind("canary", canary),
        "service": _strip_kind("service", service),
        "onPromotion": on_promotion,
        "steps": plan,
        "maxWeight": max_weight,
    }
    if router is not None:
        data["router"] = dict(router)
    if replica_mode is not None:
        data["replicaMode"] = replica_mode
    if health is not None:
        data["health"] = dict(health)
    if analysis is not None:
        data["analysis"] = dict(analysis)
    if canary_namespace is not None:
        data["canaryNamespace"] = canary_namespace
    if scale_down_delay is not None:
        data["scaleDownDelay"] = scale_down_delay
    if drain_delay is not None:
        data["drainDelay"] = drain_delay
    return parse_spec(data)


# --- status -----------------------------------------------------------------------------


class Phase(StrEnum):
    """Where a rollout is; Succeeded and RolledBack are terminal."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"

    @property
    def terminal(self) -> bool:
        """True for phases that ignore every later observation and command."""
        return self in (Phase.SUCCEEDED, Phase.ROLLED_BACK)


class Stage(StrEnum):
    """Sub-stage of a setWeight step (Progressing), Promoting or RollingBack.

    Each stage both asks for its change and waits for it to be observed, so there is
    no separate "wait" stage: scale-canary waits for canary readiness, restore-stable
    for stable readiness, shift-* for the router to report the weight.
    """

    SCALE_CANARY = "scale-canary"
    SHIFT_TRAFFIC = "shift-traffic"
    REMOVE_STABLE = "remove-stable"
    RESTORE_STABLE = "restore-stable"
    SHIFT_TO_STABLE = "shift-to-stable"
    REMOVE_CANARY = "remove-canary"


class PauseReason(StrEnum):
    """Why a rollout is Paused, which decides what ends the pause."""

    STEP = "step"  # a pause step: its duration, or a promote command
    COMMAND = "command"  # a user's pause command: a resume command
    STABLE_DEGRADED = "stable-degraded"  # the stable lost capacity: its recovery or resume


class CheckRecord(BaseModel):
    """One evaluated check, kept so a verdict can be explained afterwards."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    time: float
    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    message: str = ""


#: The most replicas a Deployment can have (spec.replicas is an int32).
MAX_REPLICAS = 2**31 - 1


class RoutesRef(BaseModel):
    """The objects a canary's router writes to, by name (`CanaryStatus.routes`).

    The operator keeps it in the Canary's status whenever it reconciles a valid spec, so
    that a deletion can still put the routes back on the stable when the spec no longer
    parses: an operator restarted since has no earlier spec in memory, and the routes
    would keep sending the canary's share to `<service>-canary`, which the garbage
    collector deletes with the Canary. Names and the mirror setting only (what the
    router's `cleanup` needs), never header values or cookies: a tester's header may be
    a token. Read back with `parse_routes`.
    """

    model_config = _SPEC_CONFIG

    kind: RouterKind
    ingress: str | None = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    virtual_service: str | None = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    destination_rule: str | None = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    httproute: str | None = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    # The mirror's percentage: the Istio router removes a mirror only when it has one.
    mirror: float | None = Field(default=None, gt=0, le=100)
    service: str = Field(json_schema_extra=_LABEL_SCHEMA)
    stable: str = Field(json_schema_extra=_NAME_SCHEMA)
    canary: str = Field(json_schema_extra=_NAME_SCHEMA)
    canary_namespace: str | None = Field(default=None, json_schema_extra=_LABEL_SCHEMA)

    @field_validator("ingress", "virtual_service", "destination_rule", "httproute", "stable",
                     "canary")  # fmt: skip
    @classmethod
    def _object_name(cls, value: str | None) -> str | None:
        return None if value is None else _dns_subdomain(value)

    @field_validator("service", "canary_namespace")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return None if value is None else _dns_label(value)

    @classmethod
    def of(cls, spec: CanarySpec) -> RoutesRef:
        """The routes of a valid spec (managed mode: its resolved Deployments)."""
        router = spec.router
        stable, canary = spec.pair
        return cls(
            kind=router.kind,
            ingress=router.ingress,
            virtual_service=router.virtual_service,
            destination_rule=router.destination_rule,
            httproute=router.httproute,
            mirror=router.mirror,
            service=spec.service,
            stable=stable,
            canary=canary,
            canary_namespace=spec.canary_namespace,
        )

    def router_spec(self) -> RouterSpec:
        """The router section these routes came from, without header and cookie routes
        (the routers recognise the tester routes they made by name, not by value)."""
        return RouterSpec(
            kind=self.kind,
            ingress=self.ingress,
            virtual_service=self.virtual_service,
            destination_rule=self.destination_rule,
            httproute=self.httproute,
            mirror=self.mirror,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase mapping without unset fields, as stored in the status."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def parse_routes(data: Any) -> RoutesRef:
    """Read a stored `CanaryStatus.routes`; SpecError naming `status.routes.<field>` when
    it is not one (edited by hand, or written by another canaryctl)."""
    if not isinstance(data, Mapping):
        raise SpecError("status.routes", f"must be a mapping of fields, got {type(data).__name__}")
    try:
        routes = RoutesRef.model_validate(dict(data))
        routes.router_spec()  # the router's own rules: names per kind, required names
    except ValidationError as exc:
        error = _spec_error(exc)
        raise SpecError(_join("status.routes", error.field), error.reason) from exc
    return routes


def _routes_schema() -> dict[str, Any]:
    """`status.routes` in the CRD: RoutesRef's schema (the status keeps it as a mapping, so
    a stored value that is not one cannot make the whole status unreadable)."""
    schema = RoutesRef.model_json_schema(by_alias=True, mode="validation")
    schema["description"] = (
        "The objects the router writes to, by name: a deletion resets the routes with "
        "them when the spec no longer parses."
    )
    return {"anyOf": [schema, {"type": "null"}]}


class CanaryStatus(BaseModel):
    """What the machine remembers between decisions (stored as JSON in the cluster).

    `weight` is the canary weight currently asked of the router; `canary_replicas` the
    canary capacity currently asked for; `baseline_replicas` the stable's replica count
    when the rollout started (the capacity restored on rollback). Times are epoch
    seconds taken from observations. `checks` holds the latest outcome of each named
    check, `history` the last `HISTORY_LIMIT` changes of outcome (with analysis records).
    `last_command_id` makes a command act once even if it is read again. Unknown keys
    (from a newer canaryctl) are ignored.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    phase: Phase = Phase.PENDING
    stage: Stage | None = None
    # Bounded so that a record edited by hand cannot ask for an impossible weight or
    # replica count (Kubernetes replicas are int32).
    step_index: int = Field(default=0, ge=0, le=MAX_STEPS)
    weight: int = Field(default=0, ge=0, le=100)
    canary_replicas: int = Field(default=0, ge=0, le=MAX_REPLICAS)
    baseline_replicas: int = Field(default=0, ge=0, le=MAX_REPLICAS)
    started_at: float | None = None
    step_started_at: float | None = None
    pause_reason: PauseReason | None = None
    pause_until: float | None = None
    full_traffic_at: float | None = None
    # Since when the version leaving (stable at promotion, canary at rollback) has had
    # no pod listed as serving in the Services that carry its traffic; drainDelay runs
    # from here before its pods are removed.
    drained_since: float | None = None
    canary_unready_since: float | None = None
    stable_degraded_since: float | None = None
    reason: str = ""
    message: str = ""
    # What the rollout waits for now (the machine's hold), e.g. "waiting for a promote
    # command"; empty while it moves or once it has ended. Changes only with the reason,
    # so a rollout held at rest writes nothing more.
    hold_reason: str = ""
    checks: dict[str, CheckRecord] = Field(default_factory=dict)
    history: list[CheckRecord] = Field(default_factory=list)
    analysis_seen_until: float | None = None
    observed_spec_hash: str = ""
    last_command_id: str | None = None
    # Opaque to the machine: the analysis driver's judge evidence and last verdict, stored
    # with each decision so a restarted process resumes the same e-process.
    analysis_state: dict[str, Any] | None = None
    last_verdict: dict[str, Any] | None = None
    # Opaque to the machine: the last change by another actor that paused the rollout.
    drift_handled: str | None = None
    # Opaque to the machine: in managed mode, the template hash this rollout analyses
    # (set by the operator when it starts the rollout). Its verdict applies to that
    # template only: a promotion copies it, a rollback marks it failed.
    revision: str | None = None
    # Opaque to the machine: in operator mode, the router's objects by name
    # (`RoutesRef.to_dict()`, read with `parse_routes`). A mapping here, so that a stored
    # value that is not a RoutesRef is reported where it is used, not as an unreadable
    # status.
    routes: Annotated[dict[str, Any] | None, WithJsonSchema(_routes_schema())] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase mapping; `from_dict` reads it back unchanged."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CanaryStatus:
        """Read a status written by `to_dict`."""
        return cls.model_validate(dict(data))


# --- observations -----------------------------------------------------------------------


class PodObs(BaseModel):
    """One pod of a Deployment, as the pod-health provider sees it."""

    model_config = _OBS_CONFIG

    name: str
    ready: bool = False
    restart_count: int = 0
    waiting_reason: str | None = None
    ready_since: float | None = None


class DeploymentObs(BaseModel):
    """A Deployment's replica counts and pods; `exists=False` when it is not found."""

    model_config = _OBS_CONFIG

    exists: bool = True
    desired_replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    progress_deadline_exceeded: bool = False
    pods: tuple[PodObs, ...] = ()
    hpa_min: int | None = None
    hpa_max: int | None = None

    @classmethod
    def missing(cls) -> DeploymentObs:
        """Observation of a Deployment that does not exist."""
        return cls(exists=False)


class Verdict(BaseModel):
    """The analysis' current opinion on the canary.

    continue: no objection, follow the steps; promote: enough evidence, skip the
    remaining automatic steps (never past an indefinite pause); rollback: fail now.
    """

    model_config = _OBS_CONFIG

    decision: Literal["continue", "promote", "rollback"]
    reason: str = ""
    checks: tuple[CheckRecord, ...] = ()
    # False while "continue" must not end in promotion at the end of the steps (a judge
    # that promotes only on evidence, or a promotion gate that has not said yes).
    promotion_allowed: bool = True
    # Gates (confirm-rollout and confirm-traffic-increase webhooks): False while the
    # rollout must not start (no canary pod, no traffic), or no weight may rise.
    rollout_allowed: bool = True
    traffic_increase_allowed: bool = True
    # When the traffic gate last said yes: a yes counts for one rise only, so it must be
    # newer than the start of the step that raises the weight.
    traffic_increase_confirmed_at: float | None = None


class Command(BaseModel):
    """A user command read from the cluster; `id` makes it act only once."""

    model_config = _OBS_CONFIG

    action: Literal["promote", "abort", "pause", "resume"]
    id: str
    full: bool = False
    # Set by parse_command: the stored command was unreadable, this pause stands for it.
    unreadable: bool = False
    # Who asked, when not a user: told in the command's Event (e.g. the drift pause).
    cause: str | None = None


def parse_status(data: Any, where: str) -> CanaryStatus | None:
    """A stored status (None when there is none yet); RecordError names what is wrong.

    `where` names the stored record for the message (e.g. `configmap/canaryctl-app`).
    """
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise RecordError(f"{where}: status is {type(data).__name__}, not a JSON object")
    try:
        return CanaryStatus.from_dict(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "status"
        raise RecordError(
            f"{where}: status.{field}: {first['msg']}; the record was changed by hand or "
            "by another tool: restore it, or delete it to start the rollout anew "
            "(the Deployments stay as they are)"
        ) from exc


def parse_command(data: Any) -> Command | None:
    """A stored user command; an unreadable one becomes a pause (safe: nothing moves).

    Its id is derived from the stored text, so the pause acts once, like any command.
    """
    if data is None:
        return None
    try:
        return Command.model_validate(data)
    except ValidationError:
        text = json.dumps(data, sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return Command(action="pause", id=f"unreadable-{digest}", unreadable=True)


class Observations(BaseModel):
    """Everything one decision may look at; `now` is the only clock the machine sees.

    `effective_weight` is the canary share the router reports as really served
    (None when it cannot tell); `analysis` is None while no verdict is available.
    `stable_serving`/`canary_serving` count the version's pods still listed as serving
    (`conditions.serving`, terminating ones included) in the EndpointSlices of the
    Services the router sends that version's traffic through; None when not observed.
    """

    model_config = _OBS_CONFIG

    now: float
    stable: DeploymentObs
    canary: DeploymentObs
    effective_weight: float | None = None
    analysis: Verdict | None = None
    command: Command | None = None
    stable_serving: int | None = Field(default=None, ge=0)
    canary_serving: int | None = Field(default=None, ge=0)


def replica_split(n: int, weight: int, mode: ReplicaMode) -> tuple[int, int]:
    """Return (stable, canary) replicas for baseline `n` at `weight` percent.

    The canary gets ceil(n*weight/100), at least 1 when weight > 0. "seed" shrinks
    the stable to n - canary but keeps one stable pod below 100% (with n=1 a 10%
    step would otherwise hand the canary all traffic); "full" keeps the stable at n.
    At 100 the stable has 0 (promotion); at 0 the canary has 0.
    """
    if weight <= 0:
        return n, 0
    if weight >= 100:
        return 0, n
    canary = max(1, -(-n * weight // 100))  # integer ceil: no float rounding
    if mode == "full":
        return n, canary
    return max(n - canary, 1), canary

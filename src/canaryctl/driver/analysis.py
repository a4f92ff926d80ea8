"""Analysis for the engine: Prometheus counts per look judged by a core judge, and
Flagger-compatible webhooks (gates, load tests, rollback requests, notifications).

Every `interval` the canary's and the stable's requests and errors since the previous look
are read with PromQL and fed to the judge. The looks are stored in the rollout's status
(`analysisState`), and the judge is rebuilt from them on every tick, so a restarted
process continues the very same test: the e-process does not restart from 1.
Missing data (Prometheus unreachable, empty or NaN results, no canary traffic) is never a
reason to promote: it yields no verdict, and the machine waits at the end of the steps.

Webhooks, per look: `pre-rollout` once before the first (a failure rolls back), `rollout`
(e.g. a load test; `failureLimit` failures in a row roll back), `rollback` (a 200 asks for
rollback), `confirm-promotion` (promotion waits until every one answers 200),
`confirm-rollout` (nothing of the canary moves until every one has answered 200 once;
asked before any other hook) and `confirm-traffic-increase` (no weight rises, nor does
the canary scale up for it, until every one answers 200 at a look after the step began:
one yes, one rise); and `event` on each transition and
`post-rollout` once at the end, from the engine.

Time: a tick holds the lease, so everything a tick asks of the outside (webhooks of every
kind, then the look's Prometheus queries) shares one budget, `TICK_SECONDS` (half the
lease) from the start of the tick (`Analysis.tick_budget`). A hook cut short by it is a
failed call (gates stay shut, a rollback hook asks for nothing, a rollout hook counts a
failure); Prometheus queries left without time are a missing look (no promotion on it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from canaryctl.core.durations import parse_duration
from canaryctl.core.judges import (
    DEFAULT_MAX_INTERVAL,
    DEFAULT_MIN_INTERVAL,
    Batch,
    Histogram,
    LookSchedule,
    PodCounts,
    PodOutlierJudge,
    PodSummary,
    RelativeLatencyJudge,
    SequentialJudge,
    ThresholdJudge,
    split_alpha,
)
from canaryctl.core.judges import Verdict as JudgeVerdict
from canaryctl.core.models import (
    CanarySpec,
    CanaryStatus,
    CheckRecord,
    Phase,
    Verdict,
    field_path,
)
from canaryctl.errors import AnalysisError, SpecError
from canaryctl.kube.store import LEASE_SECONDS
from canaryctl.providers.prometheus import Auth, PrometheusClient
from canaryctl.providers.templates import (
    MetricSource,
    Target,
    error_batch,
    fetch_histograms,
    fetch_pod_counts,
    latency_batch,
)
from canaryctl.providers.webhooks import HookType, Webhook, WebhookClient

#: Most looks kept in the status per test: 2000 looks of 5 s (the shortest automatic look)
#: are about 2.8 hours, of 10 s 5.5 hours, of 60 s (the longest) 33 hours. Older looks are
#: folded into the test's stored state (`Analysis._fold`): they still count.
MAX_LOOKS = 2000
#: Seconds between the threshold judge's checks when `interval` is not set.
THRESHOLD_INTERVAL = 10.0
#: Time one tick's webhooks and Prometheus queries may take in all, retries included: a
#: tick holds the lease, and a slow hook or Prometheus must not stall it until another
#: process may take over (the other half is for the API server's reads and writes).
TICK_SECONDS = LEASE_SECONDS / 2
#: The same budget, for one look (its hooks and queries) outside a tick's budget.
LOOK_SECONDS = TICK_SECONDS
#: Why no call may be given more than TICK_SECONDS (the end of a refusal's message).
_BUDGET_WHY = (
    f"a tick may spend on webhooks and Prometheus queries in all (half the "
    f"{LEASE_SECONDS:g}s lease)"
)

_CONFIG = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class PrometheusSpec(BaseModel):
    """Where Prometheus answers, and how to authenticate (credentials from files/Secrets)."""

    model_config = _CONFIG

    url: str
    auth: dict[str, Any] | None = None
    timeout: float = 5.0

    @field_validator("timeout")
    @classmethod
    def _within_the_tick(cls, value: float) -> float:
        # A query runs inside a tick's budget: a longer timeout would be cut to it silently.
        if not value > 0:  # also NaN, which compares false with everything
            raise ValueError(f"must be a positive number of seconds, got {value:g}")
        if value > TICK_SECONDS:
            raise ValueError(
                f"{value:g} exceeds the {TICK_SECONDS:g}s {_BUDGET_WHY}; "
                f"use at most {TICK_SECONDS:g}"
            )
        return value


class AnalysisSpec(BaseModel):
    """The `analysis` block of a canary spec.

    judge "sequential" (default) compares canary with stable (anytime-valid e-process);
    "threshold" reproduces Flagger's per-interval success-rate checks. `latencyThreshold`
    (seconds, a histogram bucket bound) adds a sequential test on requests slower than it;
    `latencyQuantile` (e.g. 0.95) adds one on requests above the bucket bound at the
    stable's own quantile, read from earlier looks (no threshold to choose); `perPod`
    tests each canary pod's errors against the stable (`sum by (podLabel)`). The
    sequential tests share one false-rollback budget: `alpha` is split evenly among them.
    """

    model_config = _CONFIG

    prometheus: PrometheusSpec | None = None
    webhooks: list[dict[str, Any]] = Field(default_factory=list)
    judge: Literal["sequential", "threshold"] = "sequential"
    # None: "auto" (looks sized to the evidence) for the sequential judge, 10 s for the
    # threshold judge, whose checks are defined per fixed interval.
    interval: float | Literal["auto"] | None = None
    min_interval: float = DEFAULT_MIN_INTERVAL
    max_interval: float = DEFAULT_MAX_INTERVAL
    app: str | None = None
    version_label: str = "version"
    alpha: float = 0.05
    beta: float = 0.05
    tolerance: float = 0.1
    promote_ratio: float = 1.5
    max_canary_error_rate: float | None = 0.5
    min_success_rate: float = Field(default=0.99, ge=0, le=1)
    failure_limit: int = Field(default=5, ge=1)
    promote_after: int = Field(default=10, ge=1)
    latency_threshold: float | None = None
    latency_quantile: float | None = Field(default=None, gt=0, lt=1)
    per_pod: bool = False
    pod_label: str = Field(default="pod", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> float | str | None:
        if value is None or value == "auto":
            return value
        seconds = parse_duration(value)
        if seconds < 1:
            raise ValueError("must be at least 1s (or auto)")
        return seconds

    @field_validator("min_interval", "max_interval", mode="before")
    @classmethod
    def _bounds(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if seconds < 1:
            raise ValueError("must be at least 1s")
        return seconds

    @model_validator(mode="after")
    def _auto_looks(self) -> AnalysisSpec:
        if self.interval is None:
            self.interval = "auto" if self.judge == "sequential" else THRESHOLD_INTERVAL
        if self.interval == "auto":
            if self.judge != "sequential":
                raise ValueError("interval auto needs the sequential judge (Flagger-like checks "
                                 "are defined per fixed interval)")  # fmt: skip
            if self.max_interval < self.min_interval:
                raise ValueError("maxInterval must be at least minInterval")
        return self


def parse_analysis(spec: CanarySpec) -> AnalysisSpec | None:
    """The spec's analysis block, validated; SpecError names the field."""
    if spec.analysis is None:
        return None
    try:
        return AnalysisSpec.model_validate(spec.analysis.model_dump())
    except ValidationError as exc:
        first = exc.errors()[0]
        # Our validators' reasons read as they are, without pydantic's "Value error, ".
        reason = first["msg"].removeprefix("Value error, ")
        raise SpecError(field_path(("analysis", *first["loc"])), reason) from exc


def webhooks_of(config: AnalysisSpec) -> list[Webhook]:
    """The block's webhooks, validated; SpecError names the hook by its place in the list.

    Every hook runs inside a tick's budget (the look's hooks, pre-rollout included, and
    `event` and `post-rollout` from the engine), so a `timeout` above TICK_SECONDS is
    refused rather than cut to it silently, and a hook without one gets the default (10 s,
    Flagger's) cut to TICK_SECONDS."""
    return [
        Webhook.from_mapping(
            hook, where=f"analysis.webhooks[{index}]", max_timeout=TICK_SECONDS, why=_BUDGET_WHY
        )
        for index, hook in enumerate(config.webhooks)
    ]


@dataclass(frozen=True)
class Result:
    """What one evaluation produced: a verdict (None = no opinion), state to store, a warning."""

    verdict: Verdict | None
    state: dict[str, Any] | None
    summary: dict[str, Any] | None = None
    warning: str | None = None


class Analysis:
    """Metric judges and webhooks for one canary."""

    def __init__(
        self,
        spec: CanarySpec,
        config: AnalysisSpec,
        source: MetricSource | None,
        hooks: WebhookClient | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        self.source = source
        self.webhooks = webhooks_of(config)
        self._tail_bounds: dict[str, float | None] = {}
        self.hooks = hooks or WebhookClient()
        # Monotonic end of the current tick's budget (None: each look gets LOOK_SECONDS).
        self._deadline: float | None = None

    @classmethod
    def from_spec(cls, spec: CanarySpec, secrets: Any = None) -> Analysis | None:
        """Build from the spec's analysis block (None when the spec has none)."""
        config = parse_analysis(spec)
        if config is None:
            return None
        source = None
        if config.prometheus is not None:
            prom = config.prometheus
            auth = Auth.from_mapping(prom.auth) if prom.auth else None
            source = PrometheusClient(prom.url, auth=auth, secrets=secrets, timeout=prom.timeout)
        return cls(spec, config, source)

    @contextmanager
    def tick_budget(self, seconds: float = TICK_SECONDS) -> Iterator[None]:
        """Bound every webhook call and Prometheus query inside the block to `seconds` in
        all (the engine wraps each tick in it). Nested budgets never extend an outer one."""
        outer = self._deadline
        deadline = time.monotonic() + seconds
        self._deadline = deadline if outer is None else min(outer, deadline)
        try:
            yield
        finally:
            self._deadline = outer

    def _left(self) -> float:
        """Seconds left in the tick's budget (a whole look's when no tick budget is set)."""
        if self._deadline is None:
            return LOOK_SECONDS
        return max(0.0, self._deadline - time.monotonic())

    def _call(self, hook_type: HookType, phase: str) -> list[Any]:
        with self.hooks.within(self._left()):
            return self.hooks.run(
                self.webhooks, hook_type, name=self.spec.name, namespace=self.spec.namespace,
                phase=phase, checksum=self.spec.fingerprint,
            )  # fmt: skip

    def notify(self, phase: str, type_: str, message: str) -> None:
        """Send one transition to the `event` webhooks (never raises)."""
        if any(h.type is HookType.EVENT for h in self.webhooks):
            with self.hooks.within(self._left()):
                self.hooks.notify(
                    self.webhooks, name=self.spec.name, namespace=self.spec.namespace,
                    phase=phase, message=message, event_type=type_,
                    checksum=self.spec.fingerprint,
                )  # fmt: skip

    def finish(self, status: CanaryStatus) -> None:
        """Call the `post-rollout` webhooks once the rollout has ended."""
        self._call(HookType.POST_ROLLOUT, status.phase.value)

    def _judges(self) -> list[tuple[str, Any]]:
        c = self.config
        if self.source is None:
            return []
        names = ["errors"]
        if c.latency_threshold is not None:
            names.append("latency")
        if c.latency_quantile is not None:
            names.append(_relative_name(c.latency_quantile))
        if c.per_pod and c.judge == "sequential":
            names.append(PODS)
        # One false-rollback budget for all sequential tests (union bound; see core.judges.panel).
        sequential = names if c.judge == "sequential" else names[1:]
        alpha = split_alpha(c.alpha, dict.fromkeys(sequential, 1.0)) if sequential else {}
        judges: list[tuple[str, Any]] = []
        if c.judge == "threshold":
            judges.append(
                ("errors", ThresholdJudge(c.min_success_rate, c.failure_limit, c.promote_after))
            )
        else:
            judges.append(("errors", SequentialJudge(
                alpha["errors"], c.beta, c.tolerance, c.promote_ratio,
                max_canary_error_rate=c.max_canary_error_rate,
            )))  # fmt: skip
        if c.latency_threshold is not None:
            slow = SequentialJudge(
                alpha["latency"], c.beta, c.tolerance, c.promote_ratio, max_canary_error_rate=None
            )
            judges.append(("latency", slow))
        if c.latency_quantile is not None:
            name = _relative_name(c.latency_quantile)
            relative = RelativeLatencyJudge(
                c.latency_quantile, alpha=alpha[name], beta=c.beta, tolerance=c.tolerance,
                promote_ratio=c.promote_ratio,
            )  # fmt: skip
            judges.append((name, relative))
        if PODS in alpha:
            judges.append((PODS, PodOutlierJudge(alpha[PODS])))
        return judges

    def evaluate(self, status: CanaryStatus, now: float, versions: tuple[str, str]) -> Result:
        """One tick: look again if `interval` has passed, and judge all looks so far.

        The look's webhooks and queries share the tick's budget (`tick_budget`; without
        one, LOOK_SECONDS for this call)."""
        with self.tick_budget(self._left()):
            return self._evaluate(status, now, versions)

    def _evaluate(self, status: CanaryStatus, now: float, versions: tuple[str, str]) -> Result:
        state = dict(status.analysis_state or {})
        if status.phase is Phase.PENDING:
            # Not started (the operator stores Pending first): a shut gate holds from here,
            # and the rollout gate is asked here, every look interval, until it says yes.
            return self._pending(status, state, now)
        if status.phase not in (Phase.PROGRESSING, Phase.PAUSED):
            # Promoting or rolling back: the verdict that led here stays on record.
            return Result(None, status.analysis_state, status.last_verdict)
        last = state.get("lastLook")
        looks: dict[str, list[list[float]]] = {
            k: list(v) for k, v in state.get("looks", {}).items()
        }
        warning = None
        if last is None:
            state["lastLook"] = state["firstLook"] = now  # the first window starts now
            return Result(self.gate_verdict(state), state)
        hook_checks: list[CheckRecord] = []
        if now - last >= self._next_interval(state, looks):
            window = now - last
            # One look, its hooks and then all its queries, stays inside the tick's budget
            # (outside a tick: LOOK_SECONDS for the look), well inside the lease.
            hook_checks = self._look_hooks(status, state, now)
            within = getattr(self.source, "within", None)
            with within(self._left()) if within else nullcontext():
                try:
                    fresh = self._fetch(window, now, versions) if self.source else {}
                except AnalysisError as exc:
                    fresh, warning = {}, str(exc)
                # Each extra source reports its own trouble; none of them blocks the others.
                fetched = warning is None
                pods: tuple[tuple[PodCounts, ...], tuple[PodCounts, ...]] | None = None
                if self._per_pod() and fetched and fresh.get("errors") is not None:
                    pods, pod_warning = self._fetch_pods(window, now, versions)
                    warning = warning or pod_warning
                for name, batch in fresh.items():
                    if batch is not None:
                        rows = looks.setdefault(name, [])
                        rows.append(_row(batch, pods if name == "errors" else None, state))
                        self._fold(state, name, rows)
                if pods is not None:
                    self._judge_pods(state, fresh.get("errors"), pods)
                quantile = self.config.latency_quantile
                if self.source is not None and quantile is not None and fetched:
                    try:
                        pair = self._fetch_histograms(window, now, versions)
                    except AnalysisError as exc:
                        pair, warning = None, warning or str(exc)
                    fresh[_relative_name(quantile)] = None
                    if pair is not None:
                        fresh[_relative_name(quantile)] = Batch(pair[0].count, 0, pair[1].count, 0)
                        rows = looks.setdefault(_relative_name(quantile), [])
                        rows.append(_histograms_to_row(*pair))
                        self._fold(state, _relative_name(quantile), rows)
            state["lastLook"] = now
            state["looks"] = looks
            missing = any(b is None for b in fresh.values())
            if warning is None and missing:
                warning = "no data from Prometheus for this look (empty, NaN or Inf)"
            # The look's own counts were missing or invalid (not only a side test's):
            # no promotion until a look brings good data, whatever earlier looks said.
            state["invalidLook"] = bool(self.source is not None and (not fetched or missing))
            state["warning"] = warning
        else:
            # Between looks the last look's trouble stays on record (status, CLI, events).
            warning = state.get("warning")
        verdicts = self._replay(looks, state.get("folded"))
        errors = verdicts.get("errors")
        if self._per_pod() and errors is not None and errors.dispersion is not None:
            # Known before the next look: how bursty errors are (sets how its pods are trimmed).
            state["errorsDispersion"] = errors.dispersion
        if PODS in dict(self._judges()):
            verdicts[PODS] = _pod_verdict(state)
        result = self._combine(status, state["lastLook"], verdicts, state, warning)
        return self._with_hooks(status, result, hook_checks, state)

    def _next_interval(self, state: dict[str, Any], looks: dict[str, list[list[float]]]) -> float:
        """Seconds between the previous look and the next one.

        `interval: auto` sizes looks to hold about 10 errors from the error rate seen so
        far (`core.judges.LookSchedule`), between minInterval and maxInterval: looks
        depend only on earlier looks, so the tests' guarantees are unchanged.
        """
        c = self.config
        if c.interval != "auto":
            return float(c.interval)
        elapsed = float(state["lastLook"]) - float(state.get("firstLook", state["lastLook"]))
        folded = (state.get("folded") or {}).get("errors") or {}
        errors = float(folded.get("errors", 0.0))
        errors += sum(row[1] + row[3] for row in looks.get("errors", []))
        schedule = LookSchedule(min_interval=c.min_interval, max_interval=c.max_interval)
        return schedule.next_interval(elapsed, errors)

    def _look_hooks(
        self, status: CanaryStatus, state: dict[str, Any], now: float
    ) -> list[CheckRecord]:
        """Call this look's webhooks; their outcome is kept in `state` for the verdict."""
        phase = status.phase.value
        checks: list[CheckRecord] = []

        def record(results: list[Any]) -> None:
            for r in results:
                checks.append(CheckRecord(time=now, name=f"webhook {r.name} ({r.type})",
                                          passed=r.passed, message=r.message))  # fmt: skip

        if not self._rollout_confirmed(state):
            # Nothing else is asked before the rollout is confirmed (as Flagger does).
            results = self._call(HookType.CONFIRM_ROLLOUT, phase)
            record(results)
            state["rolloutConfirmed"] = all(r.passed for r in results)
            if not state["rolloutConfirmed"]:
                return checks
        if any(h.type is HookType.CONFIRM_TRAFFIC_INCREASE for h in self.webhooks):
            # Asked at every look, so a "yes" is fresh when the next weight is due.
            results = self._call(HookType.CONFIRM_TRAFFIC_INCREASE, phase)
            record(results)
            state["trafficIncreaseConfirmed"] = all(r.passed for r in results)
            state["trafficIncreaseAt"] = now  # a yes counts for rises of steps begun before
        if not state.get("preRolloutDone"):
            results = self._call(HookType.PRE_ROLLOUT, phase)
            record(results)
            state["preRolloutDone"] = True
            state["preRolloutFailed"] = next((r.message for r in results if not r.passed), None)
        rollout = self._call(HookType.ROLLOUT, phase)
        record(rollout)
        failed = [r for r in rollout if not r.passed]
        state["rolloutFailures"] = state.get("rolloutFailures", 0) + 1 if failed else 0
        rollback = self._call(HookType.ROLLBACK, phase)
        # For rollback hooks a 200 is a request to roll back, so it "fails" the canary.
        for r in rollback:
            checks.append(CheckRecord(time=now, name=f"webhook {r.name} (rollback)",
                                      passed=not r.passed, message=r.message))  # fmt: skip
        state["rollbackRequested"] = next((r.name for r in rollback if r.passed), None)
        # Asked at every look (as Flagger does before promoting), so a "yes" is fresh.
        confirm = self._call(HookType.CONFIRM_PROMOTION, phase)
        record(confirm)
        state["promotionConfirmed"] = all(r.passed for r in confirm)
        return checks

    def _with_hooks(
        self,
        status: CanaryStatus,
        result: Result,
        checks: list[CheckRecord],
        state: dict[str, Any],
    ) -> Result:
        """Let webhook outcomes veto or gate the metric verdict."""
        all_checks = tuple(checks) + (result.verdict.checks if result.verdict else ())
        why = None
        if state.get("preRolloutFailed"):
            why = f"pre-rollout webhook failed: {state['preRolloutFailed']}"
        elif state.get("rollbackRequested"):
            why = f"rollback requested by webhook {state['rollbackRequested']}"
        elif state.get("rolloutFailures", 0) >= self.config.failure_limit:
            why = f"rollout webhooks failed {state['rolloutFailures']} looks in a row"
        if why is not None:
            verdict = Verdict(decision="rollback", reason=why, checks=all_checks)
            return Result(verdict, state, result.summary, result.warning)
        verdict = result.verdict
        if verdict is None and self.source is None:
            # Webhooks only: no metric judge, so the steps decide; the hooks may still veto.
            verdict = Verdict(decision="continue", reason="webhooks passed", checks=all_checks)
        elif verdict is not None and checks:
            verdict = verdict.model_copy(update={"checks": all_checks})
        gated = any(h.type is HookType.CONFIRM_PROMOTION for h in self.webhooks)
        if verdict is not None and gated and not state.get("promotionConfirmed"):
            # Hold promotion (by evidence or at the end of the steps) until the gate says yes.
            verdict = Verdict(
                decision="continue",
                reason="the confirm-promotion webhooks",
                checks=verdict.checks,
                promotion_allowed=False,
            )
        gate = self.gate_verdict(state)
        if gate is not None and (verdict is None or verdict.decision != "rollback"):
            # A shut rollout gate holds everything the metrics say but a rollback (gates
            # never keep a failing canary); a shut traffic gate only stops weights rising.
            if verdict is None or not gate.rollout_allowed:
                checks_so_far = verdict.checks if verdict is not None else ()
                verdict = gate.model_copy(update={"checks": checks_so_far})
            else:
                verdict = verdict.model_copy(update={"traffic_increase_allowed": False})
        elif self._traffic_gated() and (verdict is None or verdict.decision != "rollback"):
            # Open: the machine still checks that this yes is newer than the step it
            # raises. Without a metric verdict the gate's own says so (and, as any missing
            # verdict, allows no promotion).
            at = state.get("trafficIncreaseAt")
            verdict = (verdict or Verdict(
                decision="continue", reason="no verdict yet", promotion_allowed=False
            )).model_copy(update={"traffic_increase_confirmed_at": at})  # fmt: skip
        return Result(verdict, state, result.summary, result.warning)

    def gate_verdict(self, state: dict[str, Any]) -> Verdict | None:
        """A verdict holding the rollout while a confirm-rollout or confirm-traffic-increase
        gate is shut (never asked counts as shut), or None when no gate holds anything.

        Also the verdict of a rollout's first tick, before any look: a gate must hold from
        the start, not from its first answer."""
        rollout = self._rollout_confirmed(state)
        traffic = not self._traffic_gated() or bool(state.get("trafficIncreaseConfirmed"))
        if rollout and traffic:
            return None
        which = "confirm-rollout" if not rollout else "confirm-traffic-increase"
        return Verdict(
            decision="continue",
            reason=f"the {which} webhooks",
            promotion_allowed=False,
            rollout_allowed=rollout,
            traffic_increase_allowed=traffic,
        )

    def _pending(self, status: CanaryStatus, state: dict[str, Any], now: float) -> Result:
        checks: tuple[CheckRecord, ...] = ()
        asked = state.get("rolloutGateAskedAt")
        interval = self.config.interval
        every = float(interval) if isinstance(interval, int | float) else self.config.min_interval
        if not self._rollout_confirmed(state) and (asked is None or now - asked >= every):
            results = self._call(HookType.CONFIRM_ROLLOUT, status.phase.value)
            state["rolloutConfirmed"] = all(r.passed for r in results)
            state["rolloutGateAskedAt"] = now
            checks = tuple(
                CheckRecord(time=now, name=f"webhook {r.name} ({r.type})", passed=r.passed,
                            message=r.message)
                for r in results
            )  # fmt: skip
        gate = self.gate_verdict(state)
        verdict = gate.model_copy(update={"checks": checks}) if gate is not None else None
        return Result(verdict, state, status.last_verdict)

    def _traffic_gated(self) -> bool:
        return any(h.type is HookType.CONFIRM_TRAFFIC_INCREASE for h in self.webhooks)

    def _rollout_confirmed(self, state: dict[str, Any]) -> bool:
        gated = any(h.type is HookType.CONFIRM_ROLLOUT for h in self.webhooks)
        return not gated or bool(state.get("rolloutConfirmed"))

    def _fetch(
        self, window: float, now: float, versions: tuple[str, str]
    ) -> dict[str, Batch | None]:
        target = self._target(versions)
        seconds = max(1, round(window))
        out: dict[str, Batch | None] = {"errors": error_batch(self.source, target, seconds, at=now)}
        if self.config.latency_threshold is not None:
            out["latency"] = latency_batch(
                self.source, target, seconds, self.config.latency_threshold, at=now
            )
        return out

    def _per_pod(self) -> bool:
        return self.source is not None and self.config.per_pod and self.config.judge == "sequential"

    def _fetch_pods(
        self, window: float, now: float, versions: tuple[str, str]
    ) -> tuple[tuple[tuple[PodCounts, ...], tuple[PodCounts, ...]] | None, str | None]:
        """The look's counts per pod (canary's, stable's), or None and why not."""
        try:
            pods = fetch_pod_counts(
                self.source, self._target(versions), max(1, round(window)), at=now,  # type: ignore[arg-type]
                label=self.config.pod_label,
            )  # fmt: skip
        except AnalysisError as exc:
            return None, str(exc)
        if pods is None:
            return None, f"no per-pod data (is {self.config.pod_label!r} a label of the series?)"
        return (tuple(pods[0]), tuple(pods[1])), None

    def _judge_pods(
        self,
        state: dict[str, Any],
        batch: Batch | None,
        pods: tuple[tuple[PodCounts, ...], tuple[PodCounts, ...]],
    ) -> None:
        """One look of the per-pod test. Unlike the other tests it is not replayed from
        stored looks (pods would outgrow the status): its evidence is kept as state."""
        judge = dict(self._judges()).get(PODS)
        if not isinstance(judge, PodOutlierJudge) or batch is None:
            return
        previous = state.get("pods") or {}
        if previous.get("verdict", {}).get("decision") == "rollback":
            return
        if previous.get("judge"):
            judge.load_state(previous["judge"])
        verdict = judge.observe(
            Batch(batch.canary_requests, batch.canary_errors, batch.stable_requests,
                  batch.stable_errors, canary_pods=pods[0], stable_pods=pods[1])
        )  # fmt: skip
        record = verdict.to_dict()
        record["pods"] = judge.evidence()
        state["pods"] = {"judge": None if verdict.final else judge.state(), "verdict": record}

    def _target(self, versions: tuple[str, str]) -> Target:
        """Whose series the queries select: this rollout's app, (stable, canary) versions."""
        stable_version, canary_version = versions
        return Target(
            namespace=self.spec.namespace,
            app=self.config.app or self.spec.service,
            canary=canary_version,
            stable=stable_version,
        )

    def _fetch_histograms(
        self, window: float, now: float, versions: tuple[str, str]
    ) -> tuple[Histogram, Histogram] | None:
        if not hasattr(self.source, "query_by"):
            raise AnalysisError("relative latency needs a Prometheus source (grouped queries)")
        target = self._target(versions)
        return fetch_histograms(self.source, target, max(1, round(window)), at=now)  # type: ignore[arg-type]

    def _fold(self, state: dict[str, Any], name: str, rows: list[list[float]]) -> None:
        """Keep at most MAX_LOOKS looks of a test: older ones are folded into its stored
        state (a few numbers), so the test goes on weighing every look since the first.
        Dropping them instead would turn the e-process into a sliding window, which is
        not a supermartingale. The threshold judge, whose checks are per interval, keeps
        its last MAX_LOOKS looks."""
        excess = len(rows) - MAX_LOOKS
        if excess <= 0:
            return
        judge = dict(self._judges()).get(name)
        if not hasattr(judge, "load_state"):
            del rows[:excess]
            return
        folded = state.setdefault("folded", {})
        previous = folded.get(name) or {}
        final = previous.get("final")
        if final is None:
            if previous.get("judge") is not None:
                judge.load_state(previous["judge"])  # type: ignore[union-attr]
            for row in rows[:excess]:
                verdict = _observe(judge, row)
                if verdict.final:
                    final = verdict.to_dict()  # absorbing: later looks change nothing
                    break
        errors = float(previous.get("errors", 0.0))
        if name == "errors":
            errors += sum(row[1] + row[3] for row in rows[:excess])
        folded[name] = {
            "looks": int(previous.get("looks", 0)) + excess,
            "errors": errors,
            "judge": None if final is not None else judge.state(),  # type: ignore[union-attr]
            "final": final,
        }
        del rows[:excess]

    def _replay(
        self, looks: dict[str, list[list[float]]], folded: dict[str, Any] | None = None
    ) -> dict[str, JudgeVerdict | None]:
        verdicts: dict[str, JudgeVerdict | None] = {}
        for name, judge in self._judges():
            if name == PODS:
                continue  # judged at each look and kept as state (see `_judge_pods`)
            verdict = None
            start = (folded or {}).get(name) or {}
            if start.get("final") is not None:
                verdicts[name] = JudgeVerdict.from_dict(start["final"])
                continue
            if start.get("judge") is not None:
                judge.load_state(start["judge"])
            for row in looks.get(name, []):
                verdict = _observe(judge, row)
            verdicts[name] = verdict
            if isinstance(judge, RelativeLatencyJudge):
                self._tail_bounds[name] = judge.bound
        return verdicts

    def _combine(
        self,
        status: CanaryStatus,
        looked_at: float,
        verdicts: dict[str, JudgeVerdict | None],
        state: dict[str, Any],
        warning: str | None,
    ) -> Result:
        checks = []
        for index, (name, v) in enumerate(verdicts.items()):
            if v is None:
                continue
            value = v.rollback_evalue if v.rollback_evalue is not None else v.success_rate
            threshold = (
                v.rollback_threshold
                if v.rollback_evalue is not None
                else self.config.min_success_rate
            )
            checks.append(
                CheckRecord(
                    # Stamped with the look, so the history gets one record per look.
                    time=looked_at - 0.001 * (len(verdicts) - 1 - index),
                    name=f"{name} ({self.config.judge})",
                    passed=v.decision != "rollback",
                    value=value,
                    threshold=threshold,
                    message=f"{v.decision}: {v.message}",
                )
            )
        summary = {name: v.to_dict() for name, v in verdicts.items() if v is not None}
        for name, bound in self._tail_bounds.items():
            if name in summary and bound is not None:
                summary[name]["tailBound"] = bound  # the stable's quantile bound, in seconds
        if PODS in summary:
            summary[PODS]["pods"] = (state.get("pods") or {}).get("verdict", {}).get("pods", {})
        if warning:
            summary["warning"] = warning
        decided = [v for v in verdicts.values() if v is not None]
        # The per-pod test only vetoes: it never holds or grants promotion.
        voters = {k: v for k, v in verdicts.items() if k != PODS}
        if any(v.decision == "rollback" for v in decided):
            bad = next(v for v in decided if v.decision == "rollback")
            return Result(Verdict(decision="rollback", reason=bad.message, checks=tuple(checks)),
                          state, summary, warning)  # fmt: skip
        if not verdicts:
            return Result(None, state, summary or None, warning)
        voting = [v for v in voters.values() if v is not None]
        complete = len(voting) == len(voters) and voting
        if state.get("invalidLook"):
            # Earlier evidence may already suffice, but the latest answer was garbage or
            # missing: hold (never promote on it) until a look brings valid data.
            return Result(None, state, summary, warning)
        if complete and all(v.decision == "promote" for v in voting):
            reason = "; ".join(v.message for v in voting)
            return Result(Verdict(decision="promote", reason=reason, checks=tuple(checks)),
                          state, summary, warning)  # fmt: skip
        no_data = (
            not complete
            or warning is not None
            or any(v.reason in ("no-canary-traffic", "invalid-counts", "no-data") for v in voting)
        )
        if no_data:
            return Result(None, state, summary, warning)  # never promote on missing data
        # A sequential judge promotes only on evidence: its "continue" never lets the end of
        # the steps promote; a threshold judge's passing checks do (Flagger's semantics).
        evidence_only = self.config.judge == "sequential"
        verdict = Verdict(
            decision="continue",
            reason="evidence for promotion" if evidence_only else "no objection",
            checks=tuple(checks),
            promotion_allowed=not evidence_only,
        )
        return Result(verdict, state, summary, warning)


def _row(
    batch: Batch,
    pods: tuple[tuple[PodCounts, ...], tuple[PodCounts, ...]] | None,
    state: dict[str, Any],
) -> list[float]:
    """One look as stored: its four counts, and with per-pod counts the five numbers the
    pooled test takes from them (`PodSummary`; the pods themselves would outgrow the
    status). The pods are trimmed with the dispersion known before the look."""
    row = [batch.canary_requests, batch.canary_errors, batch.stable_requests, batch.stable_errors]
    if pods is not None:
        with_pods = Batch(*row, canary_pods=pods[0], stable_pods=pods[1])
        summary = with_pods.pods(float(state.get("errorsDispersion") or 1.0))
        if summary is not None:
            row += summary.to_row()
    return row


def _observe(judge: Any, row: list[float]) -> JudgeVerdict:
    """One stored look through its judge."""
    if isinstance(judge, RelativeLatencyJudge):
        return judge.observe(_histograms_from_row(row))
    return judge.observe(_batch_from_row(row))


def _batch_from_row(row: list[float]) -> Batch:
    """A stored look back as a batch (see `_row`)."""
    if len(row) >= 9:
        return Batch(*row[:4], pod_summary=PodSummary(*row[4:9]))
    return Batch(*row[:4])


def _relative_name(quantile: float) -> str:
    return f"latency p{quantile * 100:g}"


def _histograms_to_row(canary: Histogram, stable: Histogram) -> list[float]:
    """One look of both histograms as a flat row: n, canary count, stable count, bounds,
    canary cumulative counts, stable cumulative counts."""
    n = len(canary.bounds)
    return [float(n), canary.count, stable.count, *canary.bounds, *canary.cumulative,
            *stable.bounds, *stable.cumulative]  # fmt: skip


def _histograms_from_row(row: list[float]) -> tuple[Histogram, Histogram]:
    n = int(row[0])
    canary_count, stable_count = row[1], row[2]
    rest = row[3:]
    canary = Histogram(tuple(rest[:n]), tuple(rest[n : 2 * n]), canary_count)
    m = (len(rest) - 2 * n) // 2
    stable = Histogram(tuple(rest[2 * n : 2 * n + m]), tuple(rest[2 * n + m :]), stable_count)
    return canary, stable


PODS = "pods"


def _pod_verdict(state: dict[str, Any]) -> JudgeVerdict | None:
    """The per-pod test's last verdict, from the state it keeps (None before its first look)."""
    record = (state.get("pods") or {}).get("verdict")
    if not record:
        return None
    return JudgeVerdict(
        decision=record["decision"],
        reason=record["reason"],
        message=record["message"],
        look=int(record["look"]),
        totals=Batch(0, 0, 0, 0),
        rollback_evalue=record.get("rollbackEvalue"),
        rollback_threshold=record.get("rollbackThreshold"),
    )

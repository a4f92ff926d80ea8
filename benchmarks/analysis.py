"""Benchmark of canary judges on simulated request streams with known truth.

    python -P benchmarks/analysis.py              # full run, a few minutes
    python -P benchmarks/analysis.py --quick      # smoke run
    python -P benchmarks/analysis.py --grid-only  # only the exposure grid (section 3)
    python -P benchmarks/analysis.py --panel-only # only section 4 (latency, pods, one budget)

(`-P`: benchmarks/operator.py would otherwise shadow the standard library's `operator`.)
Every stream is seeded from its scenario and run number, and every judge in a
scenario reads the same streams. The sequential judge looks as a rollout does by
default (`LookSchedule()`: sized to the evidence, 5-60 s) unless a variant says
otherwise; the baselines check every minute, as Flagger and Argo are usually
configured. See benchmarks/README.md for the model and the definitions.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from canaryctl.core.judges import Batch, LookSchedule, SequentialJudge, ThresholdJudge, Verdict
from canaryctl.core.judges.baselines import (
    ArgoLikeJudge,
    MannWhitneyJudge,
    ZTestJudge,
)

LOOK_SECONDS = 10
CHECK_SECONDS = 60  # baselines check once a minute
HORIZON_SECONDS = 3600  # 60 min of analysis in the scenario tables
GRID_MAX_SECONDS = 86400  # the exposure grid runs the sequential judge until it decides, up to 24 h
# An acceptance line: its name, PASS (True) / FAIL (False) / INFO (None), the figure.
Check = tuple[str, bool | None, str]
AFTER_PROMOTION_SECONDS = 3600  # a wrong promotion serves everyone for 60 min
FLAGGER_ITERATIONS = 10  # successful checks before Flagger promotes
ALPHA = 0.05
WRONG_PROMOTION_LIMIT = 0.01
LOOK_BUDGET = 2000  # looks a rollout keeps in its status (driver.analysis.MAX_LOOKS)


# ---------------------------------------------------------------- sampling


def poisson(lam: float, rng: random.Random) -> int:
    """Exact Poisson draw: inversion for small means, PTRS (Hormann 1993) above."""
    if lam <= 0:
        return 0
    if lam < 12:
        u = rng.random()
        k, p = 0, math.exp(-lam)
        cdf = p
        while u > cdf and p > 0:
            k += 1
            p *= lam / k
            cdf += p
        return k
    slam = math.sqrt(lam)
    log_lam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= v_r:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b) <= (
            -lam + k * log_lam - math.lgamma(k + 1)
        ):
            return k


def binomial(n: int, p: float, rng: random.Random) -> int:
    """Exact Binomial draw: inversion for small means, BTRS (Hormann 1993) above."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if p > 0.5:
        return n - binomial(n, 1.0 - p, rng)
    if n * p < 10:
        odds = p / (1.0 - p)
        u = rng.random()
        k, pk = 0, (1.0 - p) ** n
        cdf = pk
        while u > cdf and k < n:
            pk *= odds * (n - k) / (k + 1)
            k += 1
            cdf += pk
        return k
    spq = math.sqrt(n * p * (1 - p))
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    alpha = (2.83 + 5.1 / b) * spq
    v_r = 0.92 - 4.2 / b
    m = math.floor((n + 1) * p)
    log_odds = math.log(p / (1 - p))
    h = math.lgamma(m + 1) + math.lgamma(n - m + 1)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + c)
        if k < 0 or k > n:
            continue
        if us >= 0.07 and v <= v_r:
            return k
        if math.log(v * alpha / (a / (us * us) + b)) <= (
            h - math.lgamma(k + 1) - math.lgamma(n - k + 1) + (k - m) * log_odds
        ):
            return k


def error_clusters(requests: int, rate: float, burst: float, rng: random.Random) -> list[int]:
    """Errors among `requests` as bursts: each fails on its own, or in bursts of geometric size.

    `burst` is the mean burst size; 1 means independent errors (bursts of one).
    Bursts model a pod failing several requests in a row; the mean rate is kept.
    The sizes sum to at most `requests` (the last burst is cut short if need be).
    """
    if burst <= 1:
        return [1] * binomial(requests, rate, rng)
    log_q = math.log(1.0 - 1.0 / burst)
    sizes, left = [], requests
    for _ in range(poisson(requests * rate / burst, rng)):
        size = min(left, 1 + int(math.log(1.0 - rng.random()) / log_q))
        if size > 0:
            sizes.append(size)
            left -= size
    return sizes


def error_count(requests: int, rate: float, burst: float, rng: random.Random) -> int:
    """Errors among `requests` (see `error_clusters`)."""
    return sum(error_clusters(requests, rate, burst, rng))


# ---------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """Traffic and error model with a known truth R = canary / stable error rate."""

    name: str
    ratio: float
    stable_rate: float = 0.01
    rps: float = 100.0
    share: float = 0.10
    steps: tuple[tuple[int, float], ...] = ()  # (minute, canary share) weight steps
    diurnal: float = 0.0  # load multiplied by 1 + diurnal * sin(2 pi t / 60 min)
    burst: float = 1.0  # mean errors per burst; 1 = independent errors
    # (canary pods, stable pods): looks carry per-pod counts, each burst from one pod
    # chosen at random; a pod's requests are its even share of its version's, or its
    # errors if more (a burst fails every request it meets); (0, 0): no pods.
    pods: tuple[int, int] = (0, 0)

    def share_at(self, seconds: float) -> float:
        share = self.share
        for minute, step_share in self.steps:
            if seconds >= minute * 60:
                share = step_share
        return share

    def rps_at(self, seconds: float) -> float:
        if not self.diurnal:
            return self.rps
        return self.rps * (1 + self.diurnal * math.sin(2 * math.pi * seconds / 3600))

    @property
    def excess_rate(self) -> float:
        """Extra errors per canary request (0 unless the canary is worse)."""
        return self.stable_rate * max(self.ratio - 1.0, 0.0)


class Stream:
    """One run's counts per tick, generated lazily so every judge reads the same data.

    Judges read windows of whole ticks: a 10-s look, a 1-min check. Running
    totals make any window one subtraction.
    """

    def __init__(self, scenario: Scenario, run: int, tick: int = LOOK_SECONDS) -> None:
        self.scenario = scenario
        self.tick = tick
        self.rng = random.Random(f"{scenario.name}|{scenario.ratio}|{run}")
        # After each tick: canary requests, canary errors, stable requests, stable errors.
        self._totals: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)]
        # Pods draw from their own generator, so the versions' counts are the same
        # with and without pods (same seeds, same streams).
        self._pod_rng = random.Random(f"pods|{scenario.name}|{scenario.ratio}|{run}")
        self._pod_totals: list[tuple[int, ...]] = [(0,) * sum(scenario.pods)]

    def window(self, start: int, ticks: int, pods: bool = False) -> Batch:
        """Counts of ticks [start, start + ticks); per pod too if asked and the scenario
        has pods."""
        end = start + ticks
        while len(self._totals) <= end:
            self._generate()
        a, b = self._totals[start], self._totals[end]
        nc, ns = b[0] - a[0], b[2] - a[2]
        canary_pods, stable_pods = self.scenario.pods
        if not (pods and canary_pods):
            return Batch(nc, b[1] - a[1], ns, b[3] - a[3])
        errors = [
            y - x for x, y in zip(self._pod_totals[start], self._pod_totals[end], strict=True)
        ]
        return Batch(
            nc, b[1] - a[1], ns, b[3] - a[3],
            canary_pods=tuple(
                (f"canary-{i}", max(nc / canary_pods, errors[i]), float(errors[i]))
                for i in range(canary_pods)
            ),
            stable_pods=tuple(
                (f"stable-{i}", max(ns / stable_pods, errors[canary_pods + i]),
                 float(errors[canary_pods + i]))
                for i in range(stable_pods)
            ),
        )  # fmt: skip

    def canary_requests_until(self, ticks: int) -> float:
        self.window(0, ticks)
        return self._totals[ticks][0]

    def ticks(self, seconds: int) -> int:
        if seconds % self.tick:
            raise ValueError(f"{seconds} s is not a whole number of {self.tick}-s ticks")
        return seconds // self.tick

    def check(self, index: int) -> Batch:
        """The index-th 1-min check."""
        per = self.ticks(CHECK_SECONDS)
        return self.window(index * per, per)

    def sub_batches(self, check: int) -> list[Batch]:
        """The 10-s looks of one check, for the Kayenta-like comparison."""
        per, look = self.ticks(CHECK_SECONDS), self.ticks(LOOK_SECONDS)
        return [self.window(check * per + k * look, look) for k in range(per // look)]

    def _generate(self) -> None:
        s, rng = self.scenario, self.rng
        seconds = (len(self._totals) - 1) * self.tick
        rps, share = s.rps_at(seconds), s.share_at(seconds)
        nc = poisson(rps * share * self.tick, rng)
        ns = poisson(rps * (1 - share) * self.tick, rng)
        canary = error_clusters(nc, s.stable_rate * s.ratio, s.burst, rng)
        stable = error_clusters(ns, s.stable_rate, s.burst, rng)
        last = self._totals[-1]
        self._totals.append(
            (last[0] + nc, last[1] + sum(canary), last[2] + ns, last[3] + sum(stable))
        )
        canary_pods, stable_pods = s.pods
        if canary_pods:
            pods = list(self._pod_totals[-1])
            for size in canary:
                pods[self._pod_rng.randrange(canary_pods)] += size
            for size in stable:
                pods[canary_pods + self._pod_rng.randrange(stable_pods)] += size
            self._pod_totals.append(tuple(pods))


# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    decision: str  # "rollback", "promote" or "none" (undecided at the horizon)
    seconds: int  # until the decision (or the horizon)
    canary_requests: float
    looks: int = 0  # looks taken (sequential judges; each look is a round of PromQL queries)
    reason: str = ""  # the verdict's reason (e.g. "kill-switch", "evidence")


def exposure(scenario: Scenario, outcome: Outcome) -> float:
    """Excess errors served by the canary until rollback, or 60 min past a promotion.

    An undecided run counts as promoted at the horizon (the harshest reading).
    """
    excess = scenario.excess_rate * outcome.canary_requests
    if outcome.decision != "rollback":
        excess += scenario.excess_rate * scenario.rps * AFTER_PROMOTION_SECONDS
    return excess


def run_sequential(
    stream: Stream,
    make: Callable[[], SequentialJudge],
    max_seconds: int,
    look_seconds: int = LOOK_SECONDS,
) -> Outcome:
    judge = make()
    per = stream.ticks(look_seconds)
    for i in range(max_seconds // look_seconds):
        verdict = judge.observe(stream.window(i * per, per))
        if verdict.final:
            ticks = (i + 1) * per
            return Outcome(
                verdict.decision, ticks * stream.tick, stream.canary_requests_until(ticks), i + 1,
                verdict.reason,
            )  # fmt: skip
    looks = max_seconds // look_seconds
    ticks = looks * per
    return Outcome("none", ticks * stream.tick, stream.canary_requests_until(ticks), looks)


def run_scheduled(
    stream: Stream,
    make: Callable[[], SequentialJudge],
    max_seconds: int,
    schedule: LookSchedule,
    pods: bool = False,
) -> Outcome:
    """Like `run_sequential`, with each look's length chosen by `schedule` from past looks.

    A look lasts the schedule's interval rounded up to whole ticks. `pods`: looks carry
    per-pod counts (`perPod: true`), when the scenario has pods.
    """
    judge = make()
    ticks = looks = 0
    errors = 0.0
    limit = max_seconds // stream.tick
    while ticks < limit:
        interval = schedule.next_interval(ticks * stream.tick, errors)
        n = min(max(1, math.ceil(interval / stream.tick - 1e-9)), limit - ticks)
        batch = stream.window(ticks, n, pods)
        ticks += n
        looks += 1
        errors += batch.canary_errors + batch.stable_errors
        verdict = judge.observe(batch)
        if verdict.final:
            return Outcome(
                verdict.decision, ticks * stream.tick, stream.canary_requests_until(ticks), looks,
                verdict.reason,
            )  # fmt: skip
    return Outcome("none", ticks * stream.tick, stream.canary_requests_until(ticks), looks)


class PerCheckJudge(Protocol):
    def observe(self, data: Any, /) -> Verdict: ...


def run_per_check(
    stream: Stream, judge: PerCheckJudge, max_checks: int, *, sub: bool = False
) -> Outcome:
    per = stream.ticks(CHECK_SECONDS)
    for k in range(max_checks):
        data = stream.sub_batches(k) if sub else stream.check(k)
        verdict = judge.observe(data)
        if verdict.final:
            return Outcome(
                verdict.decision,
                (k + 1) * CHECK_SECONDS,
                stream.canary_requests_until((k + 1) * per),
            )
    return Outcome(
        "none", max_checks * CHECK_SECONDS, stream.canary_requests_until(max_checks * per)
    )


JudgeRunner = Callable[[Stream], Outcome]

FLAGGER_MAX_CHECKS = FLAGGER_ITERATIONS + 10  # enough for any failure threshold up to 10
AUTO = "sequential (auto)"
#: The schedule of `AUTO` and of the grid's 'defaults' (`--shortest-look` changes its minimum).
DEFAULT_SCHEDULE = LookSchedule()
BASELINES: dict[str, JudgeRunner] = {
    AUTO: lambda s: run_scheduled(s, SequentialJudge, HORIZON_SECONDS, DEFAULT_SCHEDULE),
    "sequential (10 s)": lambda s: run_sequential(s, SequentialJudge, HORIZON_SECONDS),
    "flagger-like 99%/5": lambda s: run_per_check(
        s, ThresholdJudge(0.99, 5, FLAGGER_ITERATIONS), FLAGGER_MAX_CHECKS
    ),
    "argo-like limit 0": lambda s: run_per_check(s, ArgoLikeJudge(0.99, 0, 10), 10),
    "argo-like limit 3": lambda s: run_per_check(s, ArgoLikeJudge(0.99, 3, 10), 10),
    "z-test each min": lambda s: run_per_check(s, ZTestJudge(ALPHA, 10), 10),
    "kayenta-like MW": lambda s: run_per_check(s, MannWhitneyJudge(ALPHA, 10), 10, sub=True),
}


# ---------------------------------------------------------------- statistics


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_text(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{k:>3}/{n} {k / n:6.1%} [{low:4.1%},{high:5.1%}]"


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


@dataclass
class Summary:
    scenario: Scenario
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, decision: str) -> int:
        return sum(o.decision == decision for o in self.outcomes)

    def seconds(self, decision: str) -> list[float]:
        return [o.seconds for o in self.outcomes if o.decision == decision]

    def requests(self, decision: str) -> list[float]:
        return [o.canary_requests for o in self.outcomes if o.decision == decision]

    def mean_exposure(self) -> float:
        return statistics.fmean(exposure(self.scenario, o) for o in self.outcomes)


# ---------------------------------------------------------------- section 1: scenarios


def main_scenarios() -> list[Scenario]:
    steps = ((0, 0.10), (5, 0.20), (10, 0.30), (15, 0.40), (20, 0.50))
    out = []
    for ratio in (1.0, 2.0):
        tag = "A/A" if ratio == 1.0 else "2x"
        out += [
            Scenario(f"{tag} base 1% share 10%", ratio),
            Scenario(f"{tag} errors 0.1%", ratio, stable_rate=0.001),
            Scenario(f"{tag} share 5%", ratio, share=0.05),
            Scenario(f"{tag} share 50%", ratio, share=0.50),
            Scenario(f"{tag} weight steps 10->50%", ratio, steps=steps),
            Scenario(f"{tag} diurnal load x0.2-x1.8", ratio, diurnal=0.8),
            Scenario(f"{tag} bursts of 3 errors", ratio, burst=3.0),
        ]
    out += [
        Scenario("R=1.1 (at tolerance) base", 1.1),
        Scenario("R=1.5 base", 1.5),
        Scenario("R=5 base", 5.0),
        Scenario("R=5 errors 0.1%", 5.0, stable_rate=0.001),
        # Gross failures, what the kill switch is for (canary error rate 60% and 100%).
        Scenario(GROSS_60, 60.0),
        Scenario(GROSS_ALL, 100.0),
    ]
    return out


GROSS_60 = "gross: canary fails 60%"
GROSS_ALL = "gross: canary fails every request"
GROSS_SECONDS = 10  # what two 5-s looks take: the errors test needs two looks anyway


def simulate(
    scenarios: Iterable[Scenario], runners: dict[str, JudgeRunner], runs: int, tick: int = 1
):
    """Every runner on the same streams; 1-s ticks so that adaptive looks can be short."""
    results: dict[tuple[str, str], Summary] = {}
    for scenario in scenarios:
        for name in runners:
            results[scenario.name, name] = Summary(scenario)
        for run in range(runs):
            stream = Stream(scenario, run, tick)
            for name, runner in runners.items():
                results[scenario.name, name].outcomes.append(runner(stream))
    return results


def print_scenarios(scenarios: list[Scenario], results: dict[tuple[str, str], Summary]) -> None:
    header = (
        f"  {'judge':<20} {'rollbacks [95% Wilson]':<26} {'promotions':<26} {'undec':>5} "
        f"{'t_rb med s':>10} {'req_rb med':>10} {'exposure':>9} {'t_pr med s':>10}"
    )
    for scenario in scenarios:
        print(
            f"\n{scenario.name}: R={scenario.ratio:g}, stable errors {scenario.stable_rate:.1%}, "
            f"{scenario.rps:g} req/s"
        )
        print(header)
        for (scenario_name, judge), summary in results.items():
            if scenario_name != scenario.name:
                continue
            n = len(summary.outcomes)
            print(
                f"  {judge:<20} {rate_text(summary.count('rollback'), n):<26} "
                f"{rate_text(summary.count('promote'), n):<26} {summary.count('none'):>5} "
                f"{fmt(median(summary.seconds('rollback'))):>10} "
                f"{fmt(median(summary.requests('rollback'))):>10} "
                f"{fmt(summary.mean_exposure(), '.1f') if scenario.ratio > 1 else '-':>9} "
                f"{fmt(median(summary.seconds('promote'))):>10}"
            )


BURST_CELLS = ((100, 0.01), (100, 0.05), (1000, 0.01))
BURST_PODS = (5, 9)  # canary pods, stable pods: each burst comes from one of them


def burst_stress() -> list[Scenario]:
    """A/A with errors in bursts from one pod, and 2x regressions with the same bursts."""
    aa = [
        Scenario(
            f"A/A bursts of {burst:g} at {rps} req/s {rate:.0%}",
            1.0,
            rate,
            rps,
            burst=burst,
            pods=BURST_PODS,
        )
        for burst in (1.0, 2.0, 3.0, 5.0, 8.0)
        for rps, rate in BURST_CELLS
    ]
    bad = [
        Scenario(
            f"2x bursts of {burst:g} at {rps} req/s {rate:.0%}",
            2.0,
            rate,
            rps,
            burst=burst,
            pods=BURST_PODS,
        )
        for burst in (3.0, 5.0, 8.0)
        for rps, rate in BURST_CELLS
    ]
    return aa + bad


# ---------------------------------------------------------------- section 3: exposure grid

GRID_RATES = (0.001, 0.01, 0.05)
GRID_RPS = (10, 100, 1000)
GRID_SHARE = 0.10
GRID_RATIO = 2.0
FLAGGER_THRESHOLDS = tuple(
    [0.90 + i / 100 for i in range(10)] + [0.99 + i / 1000 for i in range(1, 10)]
)
FLAGGER_LIMITS = tuple(range(1, 11))


def grid_tick(rate: float, rps: float) -> int:
    """Tick of a cell's streams: 1 s where a 10-s look holds five errors or more, else 10 s.

    Only there can looking more often than every 10 s shorten a decision much; elsewhere
    a look rarely holds more than one error.
    """
    return 1 if rate * rps * LOOK_SECONDS >= 5 else LOOK_SECONDS


@dataclass(frozen=True)
class Variant:
    """A SequentialJudge configuration and how often it looks."""

    look_seconds: int  # 0: looks chosen by `schedule`
    kwargs: Mapping[str, Any]
    schedule: LookSchedule | None = None


# Tuned to the cell's regression, as the best Flagger-like threshold is: Wald's SPRT of
# R = 1 against R = 2 exactly, Poisson errors trusted (no per-look cap, dispersion fixed
# at 1), and a stricter promotion (beta 1%, warm-up of 3 min) since a wrong promotion
# costs an hour of full traffic.
TUNED_2X: dict[str, Any] = {
    "tolerance": 0.0,
    "rollback_ratios": (GRID_RATIO, GRID_RATIO),
    "min_decisive_looks": 1,
    "dispersion_prior": 1.0,
    "dispersion_prior_looks": math.inf,
    "beta": 0.01,
}
# What a rollout does when its analysis block sets nothing: SequentialJudge() with looks
# sized to the evidence between 5 and 60 s (`interval: auto`, the default).
DEFAULTS = "defaults"
FIXED_10 = "defaults, 10 s"
SEQUENTIAL_VARIANTS: dict[str, Variant] = {
    DEFAULTS: Variant(0, {}, DEFAULT_SCHEDULE),
    # The same judge where Prometheus can deliver shorter looks (scrapes of 1 s or 0.5 s):
    # what the 5-s shortest look costs in the busiest cells.
    "defaults, >= 2 s": Variant(0, {}, LookSchedule(min_interval=2)),
    "defaults, >= 1 s": Variant(0, {}, LookSchedule(min_interval=1)),
    FIXED_10: Variant(10, {}),
    # Generic: trust the independent-error model, test against R0 = 1, any regression size.
    "no guard, tol 0": Variant(
        10, {"min_decisive_looks": 1, "dispersion_prior": 1.0, "tolerance": 0.0}
    ),
    "2x SPRT, 10 s": Variant(10, {**TUNED_2X, "promote_warmup_looks": 18}),
    "2x SPRT, 1 s": Variant(1, {**TUNED_2X, "promote_warmup_looks": 180}),
}


@dataclass
class SequentialResult:
    """One variant's outcomes in a cell's A/A runs and 2x runs."""

    aa: list[Outcome] = field(default_factory=list)
    bad: list[Outcome] = field(default_factory=list)


@dataclass(frozen=True)
class FlaggerExpectation:
    """Exact expectations of one Flagger-like configuration in one cell."""

    false_rollback: float  # P(rollback) in A/A
    exposure: float  # mean exposure of the 2x regression
    # Flagger itself rolls back at the tick after the check that reaches the threshold
    # (the threshold test runs before the analysis in its scheduler): one more interval.
    exposure_as_shipped: float


@dataclass
class Cell:
    """One grid cell: its scenarios, the sequential outcomes and the Flagger-like numbers."""

    rate: float
    rps: int
    aa: Scenario
    bad: Scenario
    tick: int
    sequential: dict[str, SequentialResult] = field(default_factory=dict)
    flagger: dict[tuple[float, int], FlaggerExpectation] = field(default_factory=dict)
    # exact P(a check fails) per success-rate threshold, A/A and 2x
    q_aa: dict[float, float] = field(default_factory=dict)
    q_bad: dict[float, float] = field(default_factory=dict)
    flagger_runs_aa: list[list[float]] = field(default_factory=list)  # per-check success rates
    flagger_runs_bad: list[list[float]] = field(default_factory=list)
    flagger_requests_bad: list[list[float]] = field(default_factory=list)  # cumulative per check

    @property
    def label(self) -> str:
        return f"{self.rate:.1%} x {self.rps:>4} req/s"

    @property
    def penalty(self) -> float:
        """Exposure of a wrong promotion: 60 min of the whole traffic."""
        return self.bad.excess_rate * self.rps * AFTER_PROMOTION_SECONDS

    def variants(self) -> list[str]:
        return [v for v in SEQUENTIAL_VARIANTS if v in self.sequential]

    def false_rollbacks(self, variant: str) -> int:
        return sum(o.decision == "rollback" for o in self.sequential[variant].aa)

    def exposures(self, variant: str) -> list[float]:
        return [exposure(self.bad, o) for o in self.sequential[variant].bad]

    def mean_exposure(self, variant: str) -> float:
        return statistics.fmean(self.exposures(variant))

    def exposure_half_width(self, variant: str) -> float:
        """Half-width of the 95% interval of the mean exposure (normal approximation)."""
        values = self.exposures(variant)
        return 1.96 * statistics.stdev(values) / math.sqrt(len(values))


# ---- Flagger-like: exact expectations


def check_failure_probability(
    rate: float, rps: float, share: float, thresholds: Sequence[float]
) -> dict[float, float]:
    """P(a 1-min check fails) per success-rate threshold, exactly.

    Canary requests in a minute are Poisson(rps * share * 60) and its errors
    Binomial(requests, rate), as in the streams; the check fails when
    1 - errors / requests < threshold (evaluated as ThresholdJudge does) or when
    there are no requests.
    """
    mean = rps * share * CHECK_SECONDS
    spread = 10 * math.sqrt(mean) + 10
    fail = dict.fromkeys(thresholds, 0.0)
    for n in range(max(0, int(mean - spread)), int(mean + spread) + 1):
        weight = math.exp(-mean + n * math.log(mean) - math.lgamma(n + 1))
        if n == 0:
            for t in thresholds:
                fail[t] += weight
            continue
        mu, sd = n * rate, math.sqrt(n * rate * (1 - rate))
        low, high = max(0, int(mu - 12 * sd - 10)), min(n, int(mu + 12 * sd + 10))
        pmf = [
            math.exp(
                math.lgamma(n + 1)
                - math.lgamma(e + 1)
                - math.lgamma(n - e + 1)
                + e * math.log(rate)
                + (n - e) * math.log1p(-rate)
            )
            for e in range(low, high + 1)
        ]
        tail = [0.0] * (len(pmf) + 1)
        for i in range(len(pmf) - 1, -1, -1):
            tail[i] = tail[i + 1] + pmf[i]
        for t in thresholds:
            first = max(0, math.floor(n * (1 - t)) - 2)
            while 1.0 - first / n >= t:
                first += 1
            fail[t] += weight * tail[min(max(first - low, 0), len(pmf))]
    return fail


def flagger_race(q: float, limit: int) -> tuple[float, float]:
    """(P(promote), E[checks]) when each check fails independently with probability q.

    Promote after FLAGGER_ITERATIONS successful checks, roll back after `limit`
    failed ones, whichever comes first.
    """
    reach = {(0, 0): 1.0}
    promote = checks = 0.0
    for total in range(FLAGGER_ITERATIONS + limit - 1):
        for successes in range(total + 1):
            mass = reach.get((successes, total - successes), 0.0)
            if not mass:
                continue
            checks += mass
            failures = total - successes
            if successes + 1 >= FLAGGER_ITERATIONS:
                promote += mass * (1 - q)
            else:
                reach[successes + 1, failures] = reach.get(
                    (successes + 1, failures), 0.0
                ) + mass * (1 - q)
            if failures + 1 < limit:
                reach[successes, failures + 1] = (
                    reach.get((successes, failures + 1), 0.0) + mass * q
                )
    return promote, checks


def flagger_expectations(cell: Cell) -> None:
    """Every Flagger-like configuration's exact false rollbacks and exposure in the cell.

    Checks are independent and identically distributed (constant traffic), so the
    canary requests until the decision average E[requests per check] * E[checks]
    (Wald's identity). Exact values replace a minimum over 190 noisy Monte Carlo
    means, whose luck with rare wrong promotions (each costing an hour of full
    traffic) would decide the comparison.
    """
    cell.q_aa = check_failure_probability(cell.rate, cell.rps, GRID_SHARE, FLAGGER_THRESHOLDS)
    cell.q_bad = check_failure_probability(
        cell.rate * GRID_RATIO, cell.rps, GRID_SHARE, FLAGGER_THRESHOLDS
    )
    per_check = cell.rps * GRID_SHARE * CHECK_SECONDS * cell.bad.excess_rate
    for threshold in FLAGGER_THRESHOLDS:
        for limit in FLAGGER_LIMITS:
            promote_aa, _ = flagger_race(cell.q_aa[threshold], limit)
            promote_bad, checks_bad = flagger_race(cell.q_bad[threshold], limit)
            analysis = per_check * checks_bad + promote_bad * cell.penalty
            cell.flagger[threshold, limit] = FlaggerExpectation(
                1.0 - promote_aa, analysis, analysis + per_check * (1 - promote_bad)
            )


def flagger_model_z(cell: Cell) -> float:
    """Largest |z| between the exact per-check failure probabilities and the streams'."""
    worst = 0.0
    for runs, q in ((cell.flagger_runs_aa, cell.q_aa), (cell.flagger_runs_bad, cell.q_bad)):
        rates = [r for run in runs for r in run]
        for threshold in FLAGGER_THRESHOLDS:
            p = q[threshold]
            variance = len(rates) * p * (1 - p)
            if variance < 1:
                continue
            failed = sum(r < threshold for r in rates)
            worst = max(worst, abs(failed - len(rates) * p) / math.sqrt(variance))
    return worst


def flagger_replay(rates: Sequence[float], threshold: float, limit: int) -> tuple[str, int]:
    """(decision, checks) of ThresholdJudge(threshold, limit, FLAGGER_ITERATIONS) on these rates."""
    successes = failures = 0
    for k, rate in enumerate(rates):
        if rate >= threshold:
            successes += 1
            if successes >= FLAGGER_ITERATIONS:
                return "promote", k + 1
        else:
            failures += 1
            if failures >= limit:
                return "rollback", k + 1
    raise AssertionError("FLAGGER_MAX_CHECKS too small")


def flagger_rates(stream: Stream) -> tuple[list[float], list[float]]:
    """Per-check canary success rates and cumulative canary requests after each check."""
    rates, cumulative = [], []
    per = stream.ticks(CHECK_SECONDS)
    for k in range(FLAGGER_MAX_CHECKS):
        check = stream.check(k)
        # A minute without canary requests fails the check, as Flagger's "no values found" does.
        n = check.canary_requests
        rates.append(1.0 - check.canary_errors / n if n else 0.0)
        cumulative.append(stream.canary_requests_until((k + 1) * per))
    return rates, cumulative


def flagger_monte_carlo(cell: Cell, config: tuple[float, int]) -> float:
    """Mean exposure of one configuration on the cell's 2x streams."""
    threshold, limit = config
    total = 0.0
    for rates, requests in zip(cell.flagger_runs_bad, cell.flagger_requests_bad, strict=True):
        decision, checks = flagger_replay(rates, threshold, limit)
        total += exposure(cell.bad, Outcome(decision, checks * CHECK_SECONDS, requests[checks - 1]))
    return total / len(cell.flagger_runs_bad)


def _check_replay(stream: Stream, rates: list[float]) -> None:
    """The fast replay, which the exact model mirrors, must agree with ThresholdJudge."""
    for threshold, limit in ((0.99, 5), (0.95, 1), (0.999, 10)):
        judged = run_per_check(
            stream, ThresholdJudge(threshold, limit, FLAGGER_ITERATIONS), FLAGGER_MAX_CHECKS
        )
        decision, checks = flagger_replay(rates, threshold, limit)
        assert (judged.decision, judged.seconds) == (decision, checks * CHECK_SECONDS)


# ---- the least exposure any valid test can reach


def _bernoulli_kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def exposure_floor(rate: float, rps: float, alpha: float) -> float:
    """Wald's lower bound on the mean exposure of any test comparing canary with stable.

    A test that rolls back a good canary with probability <= alpha at every stable
    error rate, and rolls back the regression with probability 1 - beta, gathers on
    average at least kl(1 - beta, alpha) nats of evidence against the nearest good
    world (both versions at the pooled error rate), whatever its looks. Evidence per
    excess error is fixed by the cell, so this bounds the exposure; a wrong
    promotion adds an hour of full traffic. Minimised over beta.
    """
    canary, stable = rate * GRID_RATIO, rate
    pooled = GRID_SHARE * canary + (1 - GRID_SHARE) * stable
    nats_per_request = GRID_SHARE * _bernoulli_kl(canary, pooled) + (
        1 - GRID_SHARE
    ) * _bernoulli_kl(stable, pooled)
    nats_per_excess = nats_per_request / (GRID_SHARE * (canary - stable))
    penalty = (canary - stable) * rps * AFTER_PROMOTION_SECONDS
    best = math.log(1 / alpha) / nats_per_excess
    for i in range(1, 400):
        beta = 10 ** (-i / 40)
        power = 1 - beta
        evidence = power * math.log(power / alpha) + beta * math.log(beta / (1 - alpha))
        best = min(best, evidence / nats_per_excess + beta * penalty)
    return best


# ---- running the grid


def exposure_grid(runs: int, max_seconds: int) -> list[Cell]:
    cells = []
    for rate in GRID_RATES:
        for rps in GRID_RPS:
            name = f"grid {rate} {rps}"
            cell = Cell(
                rate,
                rps,
                Scenario(name, 1.0, rate, rps, GRID_SHARE),
                Scenario(name, GRID_RATIO, rate, rps, GRID_SHARE),
                grid_tick(rate, rps),
            )
            variants = {
                key: variant
                for key, variant in SEQUENTIAL_VARIANTS.items()
                if variant.look_seconds % cell.tick == 0  # 0: adaptive, any tick
            }
            for variant in variants:
                cell.sequential[variant] = SequentialResult()
            for run in range(runs):
                # One run at a time: fine ticks over hours would not fit in memory for all runs.
                for scenario in (cell.aa, cell.bad):
                    stream = Stream(scenario, run, cell.tick)
                    for variant_name, variant in variants.items():

                        def make(kwargs: Mapping[str, Any] = variant.kwargs) -> SequentialJudge:
                            return SequentialJudge(**kwargs)

                        if variant.schedule is not None:
                            outcome = run_scheduled(stream, make, max_seconds, variant.schedule)
                        else:
                            outcome = run_sequential(
                                stream, make, max_seconds, variant.look_seconds
                            )
                        result = cell.sequential[variant_name]
                        (result.aa if scenario is cell.aa else result.bad).append(outcome)
                    rates, requests = flagger_rates(stream)
                    if scenario is cell.aa:
                        cell.flagger_runs_aa.append(rates)
                    else:
                        cell.flagger_runs_bad.append(rates)
                        cell.flagger_requests_bad.append(requests)
                    if run < 10:
                        _check_replay(stream, rates)
            flagger_expectations(cell)
            cells.append(cell)
    return cells


def config_text(cell: Cell, config: tuple[float, int]) -> str:
    """Success-rate threshold, failure threshold and exact A/A false rollbacks."""
    return f"{config[0]:.1%}, {config[1]}, {cell.flagger[config].false_rollback:.1%}"


def report_grid(cells: list[Cell], runs: int) -> list[Check]:
    limit = int(ALPHA * runs)  # false rollbacks allowed per cell (point estimate <= 5%)
    wrong_limit = int(WRONG_PROMOTION_LIMIT * runs)
    checks: list[Check] = []
    print("\nSequential judge per cell: A/A false rollbacks; 2x regression: mean exposure and")
    print("its 95% interval, wrong promotions, undecided (charged as promoted at the horizon)")
    print(
        f"  {'cell':<19} {'variant':<16} {'false rb [95% Wilson]':<26} {'exposure':>14} "
        f"{'wrong pr':>8} {'undec':>5} {'t_rb med s':>10} {'t_pr A/A med s':>14}"
    )
    for cell in cells:
        for variant in cell.variants():
            result = cell.sequential[variant]
            wrong = sum(o.decision == "promote" for o in result.bad)
            undecided = sum(o.decision == "none" for o in result.bad)
            mean = f"{cell.mean_exposure(variant):.1f} +-{cell.exposure_half_width(variant):.1f}"
            false = rate_text(cell.false_rollbacks(variant), runs)
            print(
                f"  {cell.label:<19} {variant:<16} {false:<26} "
                f"{mean:>14} {wrong:>8} {undecided:>5} "
                f"{fmt(median([o.seconds for o in result.bad if o.decision == 'rollback'])):>10} "
                f"{fmt(median([o.seconds for o in result.aa if o.decision == 'promote'])):>14}"
            )

    # Flagger-like: exact expectations; the Monte Carlo replay must agree with them.
    worst_z = max(flagger_model_z(cell) for cell in cells)
    checks.append(
        (
            "grid: exact Flagger-like model matches the streams (per-check failure rates)",
            worst_z < 5,
            f"max |z| {worst_z:.1f}",
        )
    )

    # (1) one configuration for the whole grid
    configs = list(cells[0].flagger)
    feasible = [
        c for c in configs if all(cell.flagger[c].false_rollback <= ALPHA for cell in cells)
    ]
    seq_mean = statistics.fmean(cell.mean_exposure(DEFAULTS) for cell in cells)
    seq_ok = all(cell.false_rollbacks(DEFAULTS) <= limit for cell in cells)
    print("\n(1) One configuration for the whole grid (false rollbacks <= 5% in every A/A cell)")
    print(
        f"  SequentialJudge defaults: mean exposure {seq_mean:.2f}; all cells within 5%: {seq_ok}"
    )
    checks.append(("grid (1): defaults keep false rollbacks <= 5% in every A/A cell", seq_ok, ""))
    if feasible:
        best = min(
            feasible, key=lambda c: statistics.fmean(cell.flagger[c].exposure for cell in cells)
        )
        flagger_mean = statistics.fmean(cell.flagger[best].exposure for cell in cells)
        ratio = flagger_mean / seq_mean
        print(
            f"  best single Flagger-like: success rate >= {best[0]:.1%}, threshold {best[1]}: "
            f"mean exposure {flagger_mean:.1f} ({len(feasible)} of {len(configs)} configs feasible)"
        )
        print(f"  per cell:   {'cell':<19} {'sequential':>10} {'flagger':>10} {'ratio':>8}")
        for cell in cells:
            flagger = cell.flagger[best].exposure
            default = cell.mean_exposure(DEFAULTS)
            print(
                f"              {cell.label:<19} {default:>10.1f} {flagger:>10.1f} "
                f"{flagger / default:>8.1f}"
            )
        print(f"  ratio of means: {ratio:.1f}x (target >= 100x)")
        checks.append(
            (
                "grid (1): mean exposure >= 100x lower than best single Flagger",
                ratio >= 100,
                f"{ratio:.1f}x",
            )
        )
    else:
        print("  no single Flagger-like configuration keeps false rollbacks <= 5% in every cell")
        checks.append(("grid (1): a single Flagger-like configuration is feasible", False, ""))

    # (2) tuned per cell
    print(
        "\n(2) Tuned per cell. Flagger-like: the configuration with the least exact mean exposure"
    )
    print("    among those with <= 5% false rollbacks (MC: its mean on this run's streams).")
    print("    Sequential: the variant with the least mean exposure among those with <= 5% false")
    print("    rollbacks and <= 1% wrong promotions measured in the cell. floor: the least mean")
    print("    exposure of any test that compares with stable and keeps false rollbacks <= 5%")
    print("    (Wald's bound); max: the ratio a test at the floor would reach.")
    print(
        f"  {'cell':<19} {'flagger sr, T, fr':<19} {'exact':>6} {'MC':>6} {'floor':>5} {'max':>5} "
        f"{'defaults':>8} {'ratio':>5}  {'best, 10-s looks':<22} {'ratio':>5}  "
        f"{'best, any looks':<22} {'ratio [95%]':<16}"
    )
    worst: tuple[float, str] = (math.inf, "")
    tuned_by_cell = {}
    for cell in cells:
        best = min(
            (c for c in configs if cell.flagger[c].false_rollback <= ALPHA),
            key=lambda c: cell.flagger[c].exposure,
        )
        flagger = cell.flagger[best].exposure
        monte_carlo = flagger_monte_carlo(cell, best)
        floor = exposure_floor(cell.rate, cell.rps, ALPHA)
        default = cell.mean_exposure(DEFAULTS)
        usable = [
            v
            for v in cell.variants()
            if cell.false_rollbacks(v) <= limit
            and sum(o.decision == "promote" for o in cell.sequential[v].bad) <= wrong_limit
        ]
        slow = min(
            (v for v in usable if SEQUENTIAL_VARIANTS[v].look_seconds >= LOOK_SECONDS),
            key=cell.mean_exposure,
        )
        tuned = tuned_by_cell[cell.label] = min(usable, key=cell.mean_exposure)
        mean, half = cell.mean_exposure(tuned), cell.exposure_half_width(tuned)
        slow_mean = cell.mean_exposure(slow)
        worst = min(worst, (flagger / mean, cell.label))
        interval = f"[{flagger / (mean + half):.1f}, {flagger / max(mean - half, 1e-9):.1f}]"
        print(
            f"  {cell.label:<19} {config_text(cell, best):<19} {flagger:>6.1f} "
            f"{monte_carlo:>6.1f} {floor:>5.1f} {flagger / floor:>4.1f}x "
            f"{default:>8.1f} {flagger / default:>4.1f}x  "
            f"{slow_mean:>5.1f} {slow:<16} {flagger / slow_mean:>4.1f}x  "
            f"{mean:>5.1f} {tuned:<16} {flagger / mean:>4.1f}x {interval}"
        )
    checks.append(
        (
            "grid (2): tuned sequential vs tuned Flagger per cell (info: target retired, see "
            "DESIGN.md; the 5% cells sit near the floor)",
            None,  # information, not a target
            f"least {worst[0]:.2f}x at {' '.join(worst[1].split())}",
        )
    )

    print("\n(2b) For reference, not a target: the same against Flagger-like checks that act as")
    print("    Flagger's scheduler does, rolling back one interval after the failing check.")
    print(f"  {'cell':<19} {'flagger sr, T, fr':<19} {'exact':>6}  {'sequential':<22} {'ratio':>5}")
    for cell in cells:
        best = min(
            (c for c in configs if cell.flagger[c].false_rollback <= ALPHA),
            key=lambda c: cell.flagger[c].exposure_as_shipped,
        )
        flagger = cell.flagger[best].exposure_as_shipped
        tuned = tuned_by_cell[cell.label]
        mean = cell.mean_exposure(tuned)
        print(
            f"  {cell.label:<19} {config_text(cell, best):<19} {flagger:>6.1f}  "
            f"{mean:>5.1f} {tuned:<16} {flagger / mean:>4.1f}x"
        )
    checks += report_defaults(cells, runs, tuned_by_cell)
    return checks


def report_defaults(cells: list[Cell], runs: int, tuned_by_cell: Mapping[str, str]) -> list[Check]:
    """(4) the one default configuration against the floor; (5) its promotion speed."""
    checks: list[Check] = []
    shortest = DEFAULT_SCHEDULE.min_interval
    longest = DEFAULT_SCHEDULE.max_interval
    print(f"\n(4) One default configuration ({DEFAULTS!r}: SequentialJudge(), looks sized to the")
    print(f"    evidence, {shortest:g}-{longest:g} s) against Wald's floor in every cell. Target: "
          "within 3x of the")  # fmt: skip
    print("    floor, false rollbacks <= 5%, wrong promotions <= 1%. '1st look': no test can")
    print(f"    decide before its first look, so none whose looks last >= {shortest:g} s beats "
          "excess rate x")  # fmt: skip
    print(f"    {shortest:g} s (as a multiple of the floor). looks p99: looks to a decision (A/A "
          f"and 2x; the status keeps {LOOK_BUDGET}).")  # fmt: skip
    print("    Then the same judge with shorter looks (where scrapes are faster), fixed 10-s looks")
    print("    and the best variant tuned to the cell, as multiples of the floor.")
    others = ("defaults, >= 2 s", "defaults, >= 1 s", FIXED_10)
    print(
        f"  {'cell':<19} {'floor':>5} {'defaults':>14} {'x floor':>7} {'1st look':>8} "
        f"{'false rb [95% Wilson]':<26} {'wrong pr':>8} {'looks p99':>9} "
        f"{'>=2 s':>6} {'>=1 s':>6} {'10 s':>6} {'tuned':>6}"
    )
    worst_ratio: tuple[float, str] = (0.0, "")
    worst_reachable: tuple[float, str] = (0.0, "")
    worst_fast: tuple[float, str] = (0.0, "")
    worst_false: tuple[int, str] = (0, "")
    worst_wrong: tuple[int, str] = (0, "")
    most_looks: tuple[int, str] = (0, "")
    for cell in cells:
        floor = exposure_floor(cell.rate, cell.rps, ALPHA)
        mean, half = cell.mean_exposure(DEFAULTS), cell.exposure_half_width(DEFAULTS)
        false = cell.false_rollbacks(DEFAULTS)
        wrong = sum(o.decision == "promote" for o in cell.sequential[DEFAULTS].bad)
        first_look = cell.bad.excess_rate * cell.rps * GRID_SHARE * shortest / floor
        result = cell.sequential[DEFAULTS]
        looks = sorted(o.looks for o in result.aa + result.bad)
        looks_p99 = looks[int(0.99 * (len(looks) - 1))]
        tuned = cell.mean_exposure(tuned_by_cell[cell.label])
        worst_ratio = max(worst_ratio, (mean / floor, cell.label))
        if first_look < 3.0:
            worst_reachable = max(worst_reachable, (mean / floor, cell.label))
        worst_false = max(worst_false, (false, cell.label))
        worst_wrong = max(worst_wrong, (wrong, cell.label))
        most_looks = max(most_looks, (looks_p99, cell.label))
        ratios = [
            f"{cell.mean_exposure(v) / floor:>5.2f}x" if v in cell.sequential else f"{'-':>6}"
            for v in others
        ]
        fast = "defaults, >= 1 s"
        worst_fast = max(worst_fast, (cell.mean_exposure(fast) / floor, cell.label))
        print(
            f"  {cell.label:<19} {floor:>5.1f} {mean:>7.1f} +-{half:<4.1f} {mean / floor:>6.2f}x "
            f"{first_look:>7.2f}x {rate_text(false, runs):<26} {wrong:>8} {looks_p99:>9} "
            f"{' '.join(ratios)} {tuned / floor:>5.2f}x"
        )

    def where(worst: tuple[float, str]) -> str:
        return " ".join(worst[1].split())

    checks += [
        (
            "grid (4): defaults within 3x of the floor in every cell",
            worst_ratio[0] <= 3.0,
            f"worst {worst_ratio[0]:.2f}x at {where(worst_ratio)}",
        ),
        (
            f"grid (4): ... in every cell where a first look of {shortest:g} s leaves room (< 3x)",
            worst_reachable[0] <= 3.0,
            f"worst {worst_reachable[0]:.2f}x at {where(worst_reachable)}",
        ),
        (
            "grid (4): the same judge with looks >= 1 s (scrapes of 0.5 s) in every cell (info)",
            None,  # information, not a target
            f"worst {worst_fast[0]:.2f}x at {where(worst_fast)}",
        ),
        (
            "grid (4): defaults keep false rollbacks <= 5% in every A/A cell",
            worst_false[0] <= ALPHA * runs,
            f"worst {rate_text(worst_false[0], runs)} at {where(worst_false)}",
        ),
        (
            "grid (4): defaults promote the 2x regression in <= 1% of runs in every cell",
            worst_wrong[0] <= WRONG_PROMOTION_LIMIT * runs,
            f"worst {worst_wrong[0]}/{runs} at {where(worst_wrong)}",
        ),
        (
            f"grid (4): defaults decide within the look budget ({LOOK_BUDGET} looks, p99)",
            most_looks[0] <= LOOK_BUDGET,
            f"most {most_looks[0]} at {where(most_looks)}",
        ),
    ]

    print("\n(5) Time to promote a good canary (A/A), defaults against Flagger's fixed schedule.")
    print(f"    Flagger-like promotes after {FLAGGER_ITERATIONS} passing 1-min checks whatever the")
    print("    data: at best 600 s; its false rollbacks are for the best single configuration.")
    configs = list(cells[0].flagger)
    feasible = [
        c for c in configs if all(cell.flagger[c].false_rollback <= ALPHA for cell in cells)
    ]
    best = (
        min(feasible, key=lambda c: statistics.fmean(cell.flagger[c].exposure for cell in cells))
        if feasible
        else None
    )
    print(
        f"  {'cell':<19} {'promoted':>9} {'med s':>7} {'p90 s':>7} {'undec':>5} "
        f"{'flagger s':>9} {'flagger fr':>10} {'speed-up':>8}"
    )
    faster = 0
    schedule = FLAGGER_ITERATIONS * CHECK_SECONDS
    for cell in cells:
        result = cell.sequential[DEFAULTS].aa
        times = sorted(o.seconds for o in result if o.decision == "promote")
        med = median(times)
        p90 = times[int(0.9 * (len(times) - 1))] if times else None
        flagger_fr = f"{max(cell.flagger[best].false_rollback, 0.0):.1%}" if best else "-"
        speed = schedule / med if med else None
        faster += bool(speed and speed > 1)
        print(
            f"  {cell.label:<19} {len(times):>4}/{len(result):<4} {fmt(med):>7} {fmt(p90):>7} "
            f"{sum(o.decision == 'none' for o in result):>5} {schedule:>9} "
            f"{flagger_fr:>10} {fmt(speed, '.2f'):>7}x"
        )
    checks.append(
        (
            "grid (5): defaults promote a good canary faster than Flagger's schedule (info)",
            None,  # information, not a target
            f"faster in {faster} of {len(cells)} cells; slower where errors are rare",
        )
    )
    return checks


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few runs, short grid")
    parser.add_argument("--grid-only", action="store_true", help="run only the exposure grid")
    parser.add_argument(
        "--panel-only", action="store_true", help="run only section 4 (latency, pods, budget)"
    )
    parser.add_argument(
        "--skip-panel", action="store_true", help="sections 1-3 only (section 4 is the slowest)"
    )
    parser.add_argument("--skip-grid", action="store_true", help="leave out section 3")
    parser.add_argument("--runs", type=int, help="Monte Carlo runs per scenario (default 300)")
    parser.add_argument(
        "--shortest-look",
        type=float,
        help="seconds: the defaults' shortest automatic look instead of LookSchedule()'s",
    )
    args = parser.parse_args(argv)
    if args.shortest_look is not None:
        # What a rollout with `minInterval` set does; every section reads these two.
        global DEFAULT_SCHEDULE
        DEFAULT_SCHEDULE = LookSchedule(min_interval=args.shortest_look)
        SEQUENTIAL_VARIANTS[DEFAULTS] = Variant(0, {}, DEFAULT_SCHEDULE)
    runs = args.runs or (30 if args.quick else 300)
    grid_seconds = 6 * 3600 if args.quick else GRID_MAX_SECONDS
    started = time.perf_counter()
    checks: list[Check] = []
    if not (args.grid_only or args.panel_only):
        checks += scenario_sections(runs, started)
    if not (args.panel_only or args.skip_grid):
        checks += grid_section(runs, grid_seconds, started)
    if not (args.grid_only or args.skip_panel):
        # Imported here: it imports this module, and only this section needs it. Run with
        # `python -P`, this folder is not on the path (its operator.py would shadow the
        # standard library's), so it goes at the end.
        sys.path.append(str(Path(__file__).resolve().parent))
        import analysis_panel

        print(
            f"\n== 4. Relative latency, per-pod evidence, several metrics under one budget "
            f"({runs} runs, 10-s looks, 60 min)"
        )
        checks += analysis_panel.section(runs)
        print(f"\n   [section 4 done in {time.perf_counter() - started:.0f} s]")

    print("\n== Acceptance (INFO: a figure printed for reference, not a target)")
    for name, ok, detail in checks:
        verdict = "INFO" if ok is None else "PASS" if ok else "FAIL"
        print(f"  {verdict}  {name}{'  (' + detail + ')' if detail else ''}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


def grid_section(runs: int, grid_seconds: int, started: float) -> list[Check]:
    """Section 3; returns its acceptance checks."""
    checks: list[Check] = []
    print(
        f"\n== 3. Exposure grid ({runs} runs per cell, canary share 10%, 2x regression; "
        f"sequential runs until it decides, up to {grid_seconds / 3600:g} h)"
    )
    cells = exposure_grid(runs, grid_seconds)
    checks += report_grid(cells, runs)
    print(f"\n   [section 3 done in {time.perf_counter() - started:.0f} s]")
    return checks


def scenario_sections(runs: int, started: float) -> list[Check]:
    """Sections 1 and 2; returns their acceptance checks."""
    checks: list[Check] = []
    print(f"== 1. Scenarios ({runs} runs each, 60 min horizon, 100 req/s unless stated)")
    print("   undecided runs count as promoted at 60 min in the exposure column")
    scenarios = main_scenarios()
    results = simulate(scenarios, BASELINES, runs)
    print_scenarios(scenarios, results)
    seq = AUTO
    aa = [s for s in scenarios if s.ratio <= 1.1]
    worst = max(aa, key=lambda s: results[s.name, seq].count("rollback"))
    worst_k = results[worst.name, seq].count("rollback")
    checks.append(
        (
            "sequential defaults: false rollbacks <= alpha in every A/A scenario",
            worst_k <= ALPHA * runs,
            f"worst {worst.name}: {rate_text(worst_k, runs)}",
        )
    )
    doubled = [s for s in scenarios if s.ratio == 2.0]
    worst = max(doubled, key=lambda s: results[s.name, seq].count("promote"))
    worst_k = results[worst.name, seq].count("promote")
    checks.append(
        (
            "sequential defaults: wrong promotions of a 2x regression <= 1%",
            worst_k <= WRONG_PROMOTION_LIMIT * runs,
            f"worst {worst.name}: {rate_text(worst_k, runs)}",
        )
    )
    gross = [results[name, seq] for name in (GROSS_60, GROSS_ALL)]
    slowest = max(median([o.seconds for o in g.outcomes]) or math.inf for g in gross)
    checks.append(
        (
            f"sequential defaults: a canary failing 60% or every request rolled back in "
            f"every run, median within {GROSS_SECONDS} s",
            all(g.count("rollback") == runs for g in gross) and slowest <= GROSS_SECONDS,
            f"rolled back {min(g.count('rollback') for g in gross)}/{runs} at least, "
            f"slowest median {slowest:g} s",
        )
    )
    print(f"\n   [section 1 done in {time.perf_counter() - started:.0f} s]")

    checks += burst_section(runs, started)
    return checks


POOLED = "auto looks, pooled counts"
PER_POD = "auto looks, per-pod counts"
FIXED = "10-s looks, pooled counts"


def kills(summary: Summary) -> int:
    """Rollbacks by the kill switch (one look above maxCanaryErrorRate), not by evidence."""
    return sum(o.decision == "rollback" and o.reason == "kill-switch" for o in summary.outcomes)


def burst_section(runs: int, started: float) -> list[Check]:
    """Section 2: bursts from one pod, without and with per-pod counts."""
    print(
        f"\n== 2. Bursts from one pod ({runs} runs, 60 min; {BURST_PODS[0]} canary and "
        f"{BURST_PODS[1]} stable pods, each burst from one pod; same streams in every column)"
    )
    stress = burst_stress()
    runners: dict[str, JudgeRunner] = {
        POOLED: BASELINES[AUTO],
        PER_POD: lambda s: run_scheduled(
            s, SequentialJudge, HORIZON_SECONDS, DEFAULT_SCHEDULE, pods=True
        ),
        FIXED: BASELINES["sequential (10 s)"],
    }
    results = simulate(stress, runners, runs)
    print("  A/A false rollbacks (95% Wilson interval), of which by the kill switch (k):")
    print(f"  {'scenario':<36}" + "".join(f" {name:<31}" for name in runners))
    aa = [s for s in stress if s.ratio == 1.0]
    for scenario in aa:
        cells = [
            rate_text(results[scenario.name, n].count("rollback"), runs)
            + f" {kills(results[scenario.name, n])}k"
            for n in runners
        ]
        print(f"  {scenario.name:<36}" + "".join(f" {c:<31}" for c in cells))
    print("  2x regressions with the same bursts: rolled back / wrongly promoted of "
          f"{runs}, median seconds to roll back, mean exposure (excess errors):")  # fmt: skip
    print(f"  {'scenario':<36}" + "".join(f" {name:<27}" for name in runners))
    for scenario in (s for s in stress if s.ratio > 1.0):
        cells = []
        for name in runners:
            r = results[scenario.name, name]
            cells.append(
                f"{r.count('rollback')}/{r.count('promote')} "
                f"{fmt(median(r.seconds('rollback')))} s {r.mean_exposure():.0f}"
            )
        print(f"  {scenario.name:<36}" + "".join(f" {c:<27}" for c in cells))
    checks: list[Check] = []
    for name, label in ((PER_POD, "with per-pod counts"), (POOLED, "pooled counts only")):
        worst = max(aa, key=lambda s: results[s.name, name].count("rollback"))
        k = results[worst.name, name].count("rollback")
        checks.append(
            (
                f"sequential defaults, {label}: false rollbacks <= alpha with errors bursting "
                "from one pod (bursts of 1-8, every cell of section 2)",
                k <= ALPHA * runs,
                f"worst {worst.name}: {rate_text(k, runs)}, "
                f"{kills(results[worst.name, name])} by the kill switch",
            )
        )

    def by_evidence(scenario: Scenario, name: str) -> int:
        summary = results[scenario.name, name]
        return summary.count("rollback") - kills(summary)

    for name, label in ((PER_POD, "with per-pod counts"), (POOLED, "pooled counts only")):
        worst = max(aa, key=lambda s: by_evidence(s, name))
        k = by_evidence(worst, name)
        checks.append(
            (
                f"sequential defaults, {label}: false rollbacks by the tests' evidence (the "
                "kill switch left out) <= alpha with errors bursting from one pod",
                k <= ALPHA * runs,
                f"worst {worst.name}: {rate_text(k, runs)}",
            )
        )
    print(f"\n   [section 2 done in {time.perf_counter() - started:.0f} s]")
    return checks


if __name__ == "__main__":
    raise SystemExit(main())

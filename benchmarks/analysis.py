"""Benchmark of canary judges on simulated request streams with known truth.

    python benchmarks/analysis.py            # full run, a few minutes
    python benchmarks/analysis.py --quick    # smoke run

Every stream is seeded from its scenario and run number, and every judge in a
scenario reads the same streams. The sequential judge looks every 10 s; the
baselines check every minute, as Flagger and Argo are usually configured.
See benchmarks/README.md for the model and the definitions.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from canaryctl.core.judges import Batch, SequentialJudge, ThresholdJudge, Verdict
from canaryctl.core.judges.baselines import (
    ArgoLikeJudge,
    MannWhitneyJudge,
    ZTestJudge,
)

LOOK_SECONDS = 10
LOOKS_PER_CHECK = 6  # baselines check once a minute
HORIZON_LOOKS = 360  # 60 min of analysis in the scenario tables
GRID_MAX_LOOKS = 8640  # the exposure grid runs the sequential judge until it decides, up to 24 h
AFTER_PROMOTION_SECONDS = 3600  # a wrong promotion serves everyone for 60 min
FLAGGER_ITERATIONS = 10  # successful checks before Flagger promotes
ALPHA = 0.05
WRONG_PROMOTION_LIMIT = 0.01


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


def error_count(requests: int, rate: float, burst: float, rng: random.Random) -> int:
    """Errors among `requests`: Poisson, or bursts of geometric size with mean `burst`.

    Bursts model a pod failing several requests in a row; the mean rate is kept.
    """
    if burst <= 1:
        return min(requests, poisson(requests * rate, rng))
    log_q = math.log(1.0 - 1.0 / burst)
    total = 0
    for _ in range(poisson(requests * rate / burst, rng)):
        total += 1 + int(math.log(1.0 - rng.random()) / log_q)
    return min(requests, total)


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

    def share_at(self, look: int) -> float:
        share = self.share
        for minute, step_share in self.steps:
            if look * LOOK_SECONDS >= minute * 60:
                share = step_share
        return share

    def rps_at(self, look: int) -> float:
        if not self.diurnal:
            return self.rps
        return self.rps * (1 + self.diurnal * math.sin(2 * math.pi * look * LOOK_SECONDS / 3600))

    @property
    def excess_rate(self) -> float:
        """Extra errors per canary request (0 unless the canary is worse)."""
        return self.stable_rate * max(self.ratio - 1.0, 0.0)


class Stream:
    """One run's looks, generated lazily so every judge reads the same data."""

    def __init__(self, scenario: Scenario, run: int) -> None:
        self.scenario = scenario
        self.rng = random.Random(f"{scenario.name}|{scenario.ratio}|{run}")
        self.looks: list[Batch] = []
        self.canary_cumulative: list[float] = [0.0]

    def look(self, i: int) -> Batch:
        while len(self.looks) <= i:
            self._generate()
        return self.looks[i]

    def _generate(self) -> None:
        s, rng, i = self.scenario, self.rng, len(self.looks)
        rps, share = s.rps_at(i), s.share_at(i)
        nc = poisson(rps * share * LOOK_SECONDS, rng)
        ns = poisson(rps * (1 - share) * LOOK_SECONDS, rng)
        canary_errors = error_count(nc, s.stable_rate * s.ratio, s.burst, rng)
        stable_errors = error_count(ns, s.stable_rate, s.burst, rng)
        self.looks.append(Batch(nc, canary_errors, ns, stable_errors))
        self.canary_cumulative.append(self.canary_cumulative[-1] + nc)

    def canary_requests_until(self, looks: int) -> float:
        self.look(looks - 1)
        return self.canary_cumulative[looks]

    def sub_batches(self, check: int) -> list[Batch]:
        return [self.look(check * LOOKS_PER_CHECK + k) for k in range(LOOKS_PER_CHECK)]

    def check(self, index: int) -> Batch:
        total = Batch(0, 0, 0, 0)
        for b in self.sub_batches(index):
            total = total + b
        return total


# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    decision: str  # "rollback", "promote" or "none" (undecided at the horizon)
    looks: int  # 10-s looks elapsed until the decision (or the horizon)
    canary_requests: float


def exposure(scenario: Scenario, outcome: Outcome) -> float:
    """Excess errors served by the canary until rollback, or 60 min past a promotion.

    An undecided run counts as promoted at the horizon (the harshest reading).
    """
    excess = scenario.excess_rate * outcome.canary_requests
    if outcome.decision != "rollback":
        excess += scenario.excess_rate * scenario.rps * AFTER_PROMOTION_SECONDS
    return excess


def run_sequential(stream: Stream, make: Callable[[], SequentialJudge], max_looks: int) -> Outcome:
    judge = make()
    for i in range(max_looks):
        verdict = judge.observe(stream.look(i))
        if verdict.final:
            return Outcome(verdict.decision, i + 1, stream.canary_requests_until(i + 1))
    return Outcome("none", max_looks, stream.canary_requests_until(max_looks))


class PerCheckJudge(Protocol):
    def observe(self, data: Any, /) -> Verdict: ...


def run_per_check(
    stream: Stream, judge: PerCheckJudge, max_checks: int, *, sub: bool = False
) -> Outcome:
    for k in range(max_checks):
        data = stream.sub_batches(k) if sub else stream.check(k)
        verdict = judge.observe(data)
        if verdict.final:
            looks = (k + 1) * LOOKS_PER_CHECK
            return Outcome(verdict.decision, looks, stream.canary_requests_until(looks))
    looks = max_checks * LOOKS_PER_CHECK
    return Outcome("none", looks, stream.canary_requests_until(looks))


JudgeRunner = Callable[[Stream], Outcome]

FLAGGER_MAX_CHECKS = FLAGGER_ITERATIONS + 10  # enough for any failure threshold up to 10
BASELINES: dict[str, JudgeRunner] = {
    "sequential (10 s)": lambda s: run_sequential(s, SequentialJudge, HORIZON_LOOKS),
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
        return [o.looks * LOOK_SECONDS for o in self.outcomes if o.decision == decision]

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
    ]
    return out


def simulate(scenarios: Iterable[Scenario], runners: dict[str, JudgeRunner], runs: int):
    results: dict[tuple[str, str], Summary] = {}
    for scenario in scenarios:
        for name in runners:
            results[scenario.name, name] = Summary(scenario)
        for run in range(runs):
            stream = Stream(scenario, run)
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


def burst_stress() -> list[Scenario]:
    cells = ((100, 0.01), (100, 0.05), (1000, 0.01))
    return [
        Scenario(f"A/A bursts of {burst:g} at {rps} req/s {rate:.0%}", 1.0, rate, rps, burst=burst)
        for burst in (1.0, 2.0, 3.0, 5.0, 8.0)
        for rps, rate in cells
    ]


# ---------------------------------------------------------------- section 2: exposure grid

GRID_RATES = (0.001, 0.01, 0.05)
GRID_RPS = (10, 100, 1000)
FLAGGER_THRESHOLDS = tuple(
    [0.90 + i / 100 for i in range(10)] + [0.99 + i / 1000 for i in range(1, 10)]
)
FLAGGER_LIMITS = tuple(range(1, 11))
SEQUENTIAL_VARIANTS: dict[str, dict[str, float]] = {
    "defaults": {},
    # Trust the independent-error model fully: no per-look cap, no prior on bursts.
    "no burst guard": {"min_decisive_looks": 1, "dispersion_prior": 1.0},
    # Also test against R0 = 1 exactly (no tolerance).
    "no guard, tol 0": {"min_decisive_looks": 1, "dispersion_prior": 1.0, "tolerance": 0.0},
}


@dataclass
class FlaggerRun:
    """Per-minute canary success rates of one stream, enough to replay any Flagger config."""

    rates: list[float]
    canary_requests: list[float]  # cumulative canary requests after each check


def flagger_replay(run: FlaggerRun, threshold: float, limit: int) -> tuple[str, int]:
    """(decision, checks) of ThresholdJudge(threshold, limit, FLAGGER_ITERATIONS) on this run."""
    successes = failures = 0
    for k, rate in enumerate(run.rates):
        if rate >= threshold:
            successes += 1
            if successes >= FLAGGER_ITERATIONS:
                return "promote", k + 1
        else:
            failures += 1
            if failures >= limit:
                return "rollback", k + 1
    raise AssertionError("FLAGGER_MAX_CHECKS too small")


def flagger_run(stream: Stream) -> FlaggerRun:
    rates, cumulative = [], []
    for k in range(FLAGGER_MAX_CHECKS):
        check = stream.check(k)
        # A minute without canary requests fails the check, as Flagger's "no values found" does.
        n = check.canary_requests
        rates.append(1.0 - check.canary_errors / n if n else 0.0)
        cumulative.append(stream.canary_requests_until((k + 1) * LOOKS_PER_CHECK))
    return FlaggerRun(rates, cumulative)


@dataclass
class Cell:
    rate: float
    rps: int
    aa: Scenario
    bad: Scenario
    seq_fr: dict[str, int] = field(default_factory=dict)
    seq_exposure: dict[str, float] = field(default_factory=dict)
    seq_undecided: dict[str, int] = field(default_factory=dict)
    seq_rollback_s: dict[str, float | None] = field(default_factory=dict)
    seq_promote_s: dict[str, float | None] = field(default_factory=dict)
    flagger_fr: dict[tuple[float, int], int] = field(default_factory=dict)
    flagger_exposure: dict[tuple[float, int], float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.rate:.1%} x {self.rps:>4} req/s"


def exposure_grid(runs: int, max_looks: int) -> list[Cell]:
    cells = []
    for rate in GRID_RATES:
        for rps in GRID_RPS:
            name = f"grid {rate} {rps}"
            cell = Cell(rate, rps, Scenario(name, 1.0, rate, rps), Scenario(name, 2.0, rate, rps))
            aa = [Stream(cell.aa, r) for r in range(runs)]
            bad = [Stream(cell.bad, r) for r in range(runs)]
            for variant, kwargs in SEQUENTIAL_VARIANTS.items():

                def make(kwargs: dict[str, float] = kwargs) -> SequentialJudge:
                    return SequentialJudge(**kwargs)  # type: ignore[arg-type]

                aa_out = [run_sequential(s, make, max_looks) for s in aa]
                bad_out = [run_sequential(s, make, max_looks) for s in bad]
                cell.seq_fr[variant] = sum(o.decision == "rollback" for o in aa_out)
                cell.seq_exposure[variant] = statistics.fmean(
                    exposure(cell.bad, o) for o in bad_out
                )
                cell.seq_undecided[variant] = sum(o.decision == "none" for o in bad_out)
                cell.seq_rollback_s[variant] = median(
                    [o.looks * LOOK_SECONDS for o in bad_out if o.decision == "rollback"]
                )
                cell.seq_promote_s[variant] = median(
                    [o.looks * LOOK_SECONDS for o in aa_out if o.decision == "promote"]
                )
            aa_runs = [flagger_run(s) for s in aa]
            bad_runs = [flagger_run(s) for s in bad]
            _check_replay(aa[:20], aa_runs[:20])
            for threshold in FLAGGER_THRESHOLDS:
                for limit in FLAGGER_LIMITS:
                    cell.flagger_fr[threshold, limit] = sum(
                        flagger_replay(r, threshold, limit)[0] == "rollback" for r in aa_runs
                    )
                    total = 0.0
                    for r in bad_runs:
                        decision, checks = flagger_replay(r, threshold, limit)
                        total += exposure(
                            cell.bad, Outcome(decision, checks, r.canary_requests[checks - 1])
                        )
                    cell.flagger_exposure[threshold, limit] = total / len(bad_runs)
            cells.append(cell)
    return cells


def _check_replay(streams: list[Stream], runs: list[FlaggerRun]) -> None:
    """The fast replay must agree with the product's ThresholdJudge."""
    for stream, run in zip(streams, runs, strict=True):
        for threshold, limit in ((0.99, 5), (0.95, 1), (0.999, 10)):
            judged = run_per_check(
                stream, ThresholdJudge(threshold, limit, FLAGGER_ITERATIONS), FLAGGER_MAX_CHECKS
            )
            decision, checks = flagger_replay(run, threshold, limit)
            assert (judged.decision, judged.looks) == (decision, checks * LOOKS_PER_CHECK)


def report_grid(cells: list[Cell], runs: int) -> list[tuple[str, bool, str]]:
    limit = int(ALPHA * runs)  # false rollbacks allowed per cell (point estimate <= 5%)
    checks: list[tuple[str, bool, str]] = []
    print("\nSequential judge per cell (2x regression exposure; A/A false rollbacks):")
    print(
        f"  {'cell':<22} {'variant':<16} {'false rb [95% Wilson]':<26} {'exposure':>9} "
        f"{'undecided':>9} {'t_rb med s':>10} {'t_promote A/A med s':>19}"
    )
    for cell in cells:
        for variant in SEQUENTIAL_VARIANTS:
            print(
                f"  {cell.label:<22} {variant:<16} {rate_text(cell.seq_fr[variant], runs):<26} "
                f"{cell.seq_exposure[variant]:>9.1f} {cell.seq_undecided[variant]:>9} "
                f"{fmt(cell.seq_rollback_s[variant]):>10} {fmt(cell.seq_promote_s[variant]):>19}"
            )

    # (1) one configuration for the whole grid
    configs = list(cells[0].flagger_fr)
    feasible = [c for c in configs if all(cell.flagger_fr[c] <= limit for cell in cells)]
    seq_mean = statistics.fmean(cell.seq_exposure["defaults"] for cell in cells)
    seq_ok = all(cell.seq_fr["defaults"] <= limit for cell in cells)
    print("\n(1) One configuration for the whole grid (false rollbacks <= 5% in every A/A cell)")
    print(
        f"  SequentialJudge defaults: mean exposure {seq_mean:.2f}; all cells within 5%: {seq_ok}"
    )
    if feasible:
        best = min(
            feasible, key=lambda c: statistics.fmean(cell.flagger_exposure[c] for cell in cells)
        )
        flagger_mean = statistics.fmean(cell.flagger_exposure[best] for cell in cells)
        ratio = flagger_mean / seq_mean
        print(
            f"  best single Flagger-like: success rate >= {best[0]:.1%}, threshold {best[1]}: "
            f"mean exposure {flagger_mean:.1f} ({len(feasible)} of {len(configs)} configs feasible)"
        )
        print(f"  per cell:   {'cell':<22} {'sequential':>10} {'flagger':>10} {'ratio':>8}")
        for cell in cells:
            print(
                f"              {cell.label:<22} {cell.seq_exposure['defaults']:>10.1f} "
                f"{cell.flagger_exposure[best]:>10.1f} "
                f"{cell.flagger_exposure[best] / cell.seq_exposure['defaults']:>8.1f}"
            )
        print(f"  ratio of means: {ratio:.1f}x (target >= 100x)")
        checks.append(
            ("grid (1): defaults keep false rollbacks <= 5% in every A/A cell", seq_ok, "")
        )
        checks.append(
            (
                "grid (1): mean exposure >= 100x lower than best single Flagger",
                ratio >= 100,
                f"{ratio:.1f}x",
            )
        )
    else:
        print("  no single Flagger-like configuration keeps false rollbacks <= 5% in every cell")
        checks.append(
            ("grid (1): defaults keep false rollbacks <= 5% in every A/A cell", seq_ok, "")
        )

    # (2) tuned per cell
    print("\n(2) Tuned per cell (false rollbacks <= 5% in that cell's A/A runs)")
    print(
        f"  {'cell':<22} {'flagger best (sr, T)':<22} {'flagger':>9} {'seq default':>11} "
        f"{'ratio':>7} {'seq tuned':>9} {'variant':<16} {'ratio':>7}"
    )
    all_default = all_tuned = True
    for cell in cells:
        ok = [c for c in configs if cell.flagger_fr[c] <= limit]
        best = min(ok, key=lambda c: cell.flagger_exposure[c])
        flagger = cell.flagger_exposure[best]
        default = cell.seq_exposure["defaults"]
        tuned_variant = min(
            (v for v in SEQUENTIAL_VARIANTS if cell.seq_fr[v] <= limit),
            key=lambda v: cell.seq_exposure[v],
        )
        tuned = cell.seq_exposure[tuned_variant]
        all_default &= flagger >= 3 * default
        all_tuned &= flagger >= 3 * tuned
        config = f"{best[0]:.1%}, {best[1]}"
        print(
            f"  {cell.label:<22} {config:<22} {flagger:>9.1f} {default:>11.1f} "
            f"{flagger / default:>6.1f}x {tuned:>9.1f} {tuned_variant:<16} {flagger / tuned:>6.1f}x"
        )
    checks.append(
        (
            "grid (2): defaults >= 3x lower exposure than tuned Flagger in every cell",
            all_default,
            "",
        )
    )
    checks.append(
        ("grid (2): tuned sequential >= 3x lower than tuned Flagger in every cell", all_tuned, "")
    )
    return checks


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few runs, short grid")
    parser.add_argument("--runs", type=int, help="Monte Carlo runs per scenario (default 300)")
    args = parser.parse_args(argv)
    runs = args.runs or (30 if args.quick else 300)
    grid_runs = args.runs or (30 if args.quick else 300)
    grid_looks = 360 * 6 if args.quick else GRID_MAX_LOOKS
    started = time.perf_counter()
    checks: list[tuple[str, bool, str]] = []

    print(f"== 1. Scenarios ({runs} runs each, 60 min horizon, 100 req/s unless stated)")
    print("   undecided runs count as promoted at 60 min in the exposure column")
    scenarios = main_scenarios()
    results = simulate(scenarios, BASELINES, runs)
    print_scenarios(scenarios, results)
    seq = "sequential (10 s)"
    aa = [s for s in scenarios if s.ratio <= 1.1]
    worst = max(aa, key=lambda s: results[s.name, seq].count("rollback"))
    worst_k = results[worst.name, seq].count("rollback")
    checks.append(
        (
            "sequential: false rollbacks <= alpha in every A/A scenario",
            worst_k <= ALPHA * runs,
            f"worst {worst.name}: {rate_text(worst_k, runs)}",
        )
    )
    doubled = [s for s in scenarios if s.ratio == 2.0]
    worst = max(doubled, key=lambda s: results[s.name, seq].count("promote"))
    worst_k = results[worst.name, seq].count("promote")
    checks.append(
        (
            "sequential: wrong promotions of a 2x regression <= 1%",
            worst_k <= WRONG_PROMOTION_LIMIT * runs,
            f"worst {worst.name}: {rate_text(worst_k, runs)}",
        )
    )
    print(f"\n   [section 1 done in {time.perf_counter() - started:.0f} s]")

    print(f"\n== 2. Burst stress: A/A false rollbacks as errors get burstier ({runs} runs, 60 min)")
    stress = burst_stress()
    stress_results = simulate(stress, {seq: BASELINES[seq]}, runs)
    for scenario in stress:
        summary = stress_results[scenario.name, seq]
        print(f"  {scenario.name:<40} {rate_text(summary.count('rollback'), runs)}")
    print(f"\n   [section 2 done in {time.perf_counter() - started:.0f} s]")

    print(
        f"\n== 3. Exposure grid ({grid_runs} runs per cell, canary share 10%, 2x regression; "
        f"sequential runs until it decides, up to {grid_looks * LOOK_SECONDS / 3600:g} h)"
    )
    cells = exposure_grid(grid_runs, grid_looks)
    checks += report_grid(cells, grid_runs)
    print(f"\n   [section 3 done in {time.perf_counter() - started:.0f} s]")

    print("\n== Acceptance")
    for name, ok, detail in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}{'  (' + detail + ')' if detail else ''}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

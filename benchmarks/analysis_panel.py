"""Section 4 of benchmarks/analysis.py: relative latency, per-pod evidence, one budget.

Simulated looks of 10 s (what the default look schedule gives at 100 req/s and 1%
errors) carry, per version, request and error counts per pod and a histogram of
request durations. Every judge of a scenario reads the same looks.

* Durations: log-normal, median 100 ms, sigma 0.5 (p95 228 ms, p99 320 ms),
  buckets 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750 ms, 1, 2.5 s. A
  canary regression multiplies the quantile function: "p99 x k" by 1 up to p95,
  rising (in log) to k at p99 and beyond (p50 and p95 unchanged, p99 x k);
  "p50 x 1.3" by 1.3 up to the median, falling back to 1 at p75 (the tail
  unchanged).
* Pods: 5 canary pods and 9 stable pods share their version's requests evenly;
  errors are independent, or come in bursts from one pod (geometric size with
  the given mean), or one stable pod fails 20 requests at once in one look.
* The panel (defaults): errors (`SequentialJudge()`), latency above the stable's
  p95 bound and above its p99 bound (`RelativeLatencyJudge(0.95)`, `(0.99)`),
  and canary pods one by one (`PodOutlierJudge()`), alpha 0.05 split evenly. The
  errors judge reads the looks' pods too, as a rollout with `perPod: true` does
  (one pod's excess is not evidence; the stable's pods measure burstiness).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

from analysis import (
    ALPHA,
    WRONG_PROMOTION_LIMIT,
    binomial,
    fmt,
    median,
    poisson,
    rate_text,
)

from canaryctl.core.judges import (
    Batch,
    Histogram,
    Panel,
    PodOutlierJudge,
    RelativeLatencyJudge,
    SequentialJudge,
)

LOOK = 10  # seconds
HORIZON = 3600
BOUNDS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
MEDIAN, SIGMA = 0.1, 0.5
CANARY_PODS, STABLE_PODS = 5, 9
_NORMAL = NormalDist()


def _duration(u: float, shape: str, factor: float) -> float:
    """Quantile function of a version's durations (see the module docstring)."""
    base = MEDIAN * math.exp(SIGMA * _NORMAL.inv_cdf(u))
    if shape == "p99" and u > 0.95:
        return base * math.exp(math.log(factor) * min(1.0, (u - 0.95) / 0.04))
    if shape == "p50" and u < 0.75:
        return base * (factor if u <= 0.5 else 1 + (factor - 1) * (0.75 - u) / 0.25)
    return base


def bucket_shares(shape: str, factor: float) -> list[float]:
    """P(duration <= bound) for each bound, by bisection on the (increasing) quantile."""
    out = []
    for bound in BOUNDS:
        low, high = 1e-9, 1 - 1e-9
        for _ in range(60):
            mid = (low + high) / 2
            if _duration(mid, shape, factor) <= bound:
                low = mid
            else:
                high = mid
        out.append(low)
    return out


@dataclass(frozen=True)
class Case:
    """One scenario of section 4."""

    name: str
    error_ratio: float = 1.0
    latency: tuple[str, float] = ("none", 1.0)
    stable_rate: float = 0.01
    rps: float = 100.0
    share: float = 0.10
    steps: tuple[tuple[int, float], ...] = ()
    diurnal: float = 0.0
    burst: float = 1.0  # mean errors per burst, from one pod
    bad_pod_rate: float | None = None  # one canary pod fails at this rate
    stable_pod_burst: int = 0  # one stable pod fails this many requests in one look
    good: bool = True  # no metric beyond tolerance: any rollback is false

    def share_at(self, seconds: float) -> float:
        share = self.share
        for minute, value in self.steps:
            if seconds >= minute * 60:
                share = value
        return share

    def rps_at(self, seconds: float) -> float:
        return self.rps * (1 + self.diurnal * math.sin(2 * math.pi * seconds / 3600))


@dataclass(frozen=True)
class Look:
    batch: Batch
    canary_hist: Histogram
    stable_hist: Histogram


def _errors(requests: int, rate: float, burst: float, rng: random.Random) -> int:
    if burst <= 1:
        return binomial(requests, rate, rng)
    log_q = math.log(1.0 - 1.0 / burst)
    total = sum(
        1 + int(math.log(1.0 - rng.random()) / log_q)
        for _ in range(poisson(requests * rate / burst, rng))
    )
    return min(requests, total)


def _histogram(requests: int, shares: Sequence[float], rng: random.Random) -> Histogram:
    cumulative, left, below, seen = [], requests, 0.0, 0
    for share in shares:
        # Requests in (previous bound, bound], given those not yet placed.
        p = (share - below) / (1.0 - below) if below < 1 else 0.0
        k = binomial(left, min(max(p, 0.0), 1.0), rng)
        seen += k
        left -= k
        below = share
        cumulative.append(float(seen))
    return Histogram(BOUNDS, tuple(cumulative), float(requests))


def looks(case: Case, run: int) -> Callable[[int], Look]:
    """The run's looks, generated on demand and cached so every judge reads the same."""
    rng = random.Random(f"panel|{case.name}|{run}")
    canary_shape = bucket_shares(*case.latency) if case.latency[0] != "none" else None
    stable_shape = bucket_shares("none", 1.0)
    burst_look = rng.randrange(6, 60) if case.stable_pod_burst else -1
    cache: list[Look] = []

    def pods(prefix: str, count: int, total_mean: float, rate: float, bad: float | None):
        out = []
        for i in range(count):
            n = poisson(total_mean / count, rng)
            pod_rate = bad if (bad is not None and i == 0) else rate
            out.append((f"{prefix}-{i}", float(n), float(_errors(n, pod_rate, case.burst, rng))))
        return out

    def make(index: int) -> Look:
        while len(cache) <= index:
            seconds = len(cache) * LOOK
            rps, share = case.rps_at(seconds), case.share_at(seconds)
            canary = pods("canary", CANARY_PODS, rps * share * LOOK,
                          case.stable_rate * case.error_ratio, case.bad_pod_rate)  # fmt: skip
            stable = pods("stable", STABLE_PODS, rps * (1 - share) * LOOK, case.stable_rate, None)
            if len(cache) == burst_look:
                name, n, e = stable[0]
                stable[0] = (name, n, min(n, e + case.stable_pod_burst))
            nc = sum(n for _, n, _ in canary)
            ns = sum(n for _, n, _ in stable)
            batch = Batch(
                nc, sum(e for *_, e in canary), ns, sum(e for *_, e in stable),
                canary_pods=tuple(canary), stable_pods=tuple(stable),
            )  # fmt: skip
            cache.append(
                Look(
                    batch,
                    _histogram(int(nc), canary_shape or stable_shape, rng),
                    _histogram(int(ns), stable_shape, rng),
                )
            )
        return cache[index]

    return make


# ---------------------------------------------------------------- judges


def panel(alpha: float = ALPHA, split: bool = True) -> Panel:
    """The defaults: four metrics under one budget (split=False: each at alpha, the old way)."""
    factories = {
        "errors": lambda a: SequentialJudge(alpha=a),
        "latency p95": lambda a: RelativeLatencyJudge(0.95, alpha=a),
        "latency p99": lambda a: RelativeLatencyJudge(0.99, alpha=a),
        "pods": lambda a: PodOutlierJudge(a),
    }
    if split:
        return Panel(alpha, factories)
    # Each metric at the full alpha: weights that give everyone alpha are not a split,
    # so build the members directly.
    p = Panel(alpha, factories)
    p.judges = {name: make(alpha) for name, make in factories.items()}
    return p


def _data(name: str, look: Look) -> object:
    if name.startswith("latency"):
        return (look.canary_hist, look.stable_hist)
    return look.batch


@dataclass
class Result:
    decisions: list[str] = field(default_factory=list)
    seconds: list[int] = field(default_factory=list)
    culprits: list[str] = field(default_factory=list)

    def count(self, decision: str) -> int:
        return sum(d == decision for d in self.decisions)

    def times(self, decision: str) -> list[int]:
        return [s for d, s in zip(self.decisions, self.seconds, strict=True) if d == decision]


def run_panel(make: Callable[[int], Look], factory: Callable[[], Panel]) -> tuple[str, int, str]:
    judge = factory()
    for i in range(HORIZON // LOOK):
        look = make(i)
        verdict = judge.observe({name: _data(name, look) for name in judge.judges})
        if verdict.final:
            culprit = verdict.message.split(":")[0] if verdict.decision == "rollback" else ""
            return verdict.decision, (i + 1) * LOOK, culprit
    return "none", HORIZON, ""


def run_errors_only(make: Callable[[int], Look]) -> tuple[str, int, str]:
    judge = SequentialJudge()
    for i in range(HORIZON // LOOK):
        verdict = judge.observe(make(i).batch)
        if verdict.final:
            culprit = "errors" if verdict.decision == "rollback" else ""
            return verdict.decision, (i + 1) * LOOK, culprit
    return "none", HORIZON, ""


def _p99(hist: Histogram) -> float | None:
    """histogram_quantile(0.99): linear interpolation inside the bucket, as Prometheus does."""
    if hist.count <= 0:
        return None
    rank = 0.99 * hist.count
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in zip(hist.bounds, hist.cumulative, strict=True):
        if cumulative >= rank:
            width = cumulative - lower_count
            frac = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (bound - lower_bound) * frac
        lower_bound, lower_count = bound, cumulative
    return hist.bounds[-1]


def run_flagger_latency(make: Callable[[int], Look], max_p99: float) -> tuple[str, int, str]:
    """Flagger-like request-duration check alone: canary p99 <= max each minute, 5 failed
    checks roll back, 10 passing ones promote (its success-rate check left out, so the
    column shows the latency check's own behaviour)."""
    per = 60 // LOOK
    failed = passed = 0
    for k in range(20):
        chunk = [make(k * per + j) for j in range(per)]
        hist = chunk[0].canary_hist
        for look in chunk[1:]:
            hist = hist + look.canary_hist
        p99 = _p99(hist)
        ok = p99 is not None and p99 <= max_p99
        failed, passed = failed + (not ok), passed + ok
        if failed >= 5:
            return "rollback", (k + 1) * 60, "latency"
        if passed >= 10:
            return "promote", (k + 1) * 60, ""
    return "none", 20 * 60, ""


# ---------------------------------------------------------------- the section


def cases() -> list[Case]:
    steps = ((0, 0.10), (5, 0.20), (10, 0.30), (15, 0.40), (20, 0.50))
    return [
        Case("A/A all metrics"),
        Case("A/A diurnal load x0.2-x1.8", diurnal=0.8),
        Case("A/A weight steps 10->50%", steps=steps),
        Case("A/A bursts of 20 errors from one pod", burst=20.0),
        Case("A/A a stable pod fails 20 at once", stable_pod_burst=20),
        Case("p50 x1.3 only (tails as stable)", latency=("p50", 1.3)),
        Case("p99 x1.5", latency=("p99", 1.5), good=False),
        Case("p99 x2", latency=("p99", 2.0), good=False),
        Case("errors 2x", error_ratio=2.0, good=False),
        Case("one canary pod of 5 fails 20%", bad_pod_rate=0.20, good=False),
    ]


def section(runs: int) -> list[tuple[str, bool, str]]:
    """Run and print section 4; return its acceptance checks."""
    max_p99 = 1.25 * MEDIAN * math.exp(SIGMA * _NORMAL.inv_cdf(0.99))
    judges: dict[str, Callable[[Callable[[int], Look]], tuple[str, int, str]]] = {
        "panel (defaults)": lambda m: run_panel(m, panel),
        "each at alpha": lambda m: run_panel(m, lambda: panel(split=False)),
        "errors judge only": run_errors_only,
        f"flagger-like p99<{max_p99 * 1000:.0f}ms": lambda m: run_flagger_latency(m, max_p99),
    }
    print(
        f"  {'judge':<22} {'rollbacks [95% Wilson]':<26} {'promotions':<26} {'undec':>5} "
        f"{'t_rb med s':>10} {'t_rb p95 s':>10} {'t_pr med s':>10}  rolled back by"
    )
    results: dict[tuple[str, str], Result] = {}
    for case in cases():
        print(f"\n{case.name} (100 req/s, 1% errors, 10% share unless stated)")
        for name in judges:
            results[case.name, name] = Result()
        for run in range(runs):
            make = looks(case, run)
            for name, judge in judges.items():
                decision, seconds, culprit = judge(make)
                result = results[case.name, name]
                result.decisions.append(decision)
                result.seconds.append(seconds)
                result.culprits.append(culprit)
        for name in judges:
            r = results[case.name, name]
            rb = sorted(r.times("rollback"))
            p95 = rb[int(0.95 * (len(rb) - 1))] if rb else None
            blame: dict[str, int] = {}
            for c in r.culprits:
                if c:
                    blame[c] = blame.get(c, 0) + 1
            print(
                f"  {name:<22} {rate_text(r.count('rollback'), runs):<26} "
                f"{rate_text(r.count('promote'), runs):<26} {r.count('none'):>5} "
                f"{fmt(median(rb)):>10} {fmt(p95):>10} {fmt(median(r.times('promote'))):>10}  "
                + ", ".join(f"{k} {v}" for k, v in sorted(blame.items()))
            )

    main = "panel (defaults)"
    checks: list[tuple[str, bool, str]] = []
    good = [c for c in cases() if c.good]
    worst = max(good, key=lambda c: results[c.name, main].count("rollback"))
    k = results[worst.name, main].count("rollback")
    checks.append(
        (
            "panel: family-wise false rollbacks <= alpha in every A/A scenario (latency, "
            "pod bursts of 20, all metrics at once)",
            k <= ALPHA * runs,
            f"worst {worst.name}: {rate_text(k, runs)}",
        )
    )
    for name in ("p99 x1.5", "errors 2x"):
        k = results[name, main].count("promote")
        checks.append(
            (
                f"panel: wrong promotions of {name} <= 1%",
                k <= WRONG_PROMOTION_LIMIT * runs,
                rate_text(k, runs),
            )
        )
    pod = results["one canary pod of 5 fails 20%", main]
    within = sum(
        d == "rollback" and s <= 60 for d, s in zip(pod.decisions, pod.seconds, strict=True)
    )
    checks.append(
        (
            "panel: one canary pod of 5 failing 20% rolled back within 60 s in >= 95% of runs",
            within >= 0.95 * runs,
            f"{rate_text(within, runs)}; median {fmt(median(pod.times('rollback')))} s",
        )
    )
    k = results["A/A a stable pod fails 20 at once", main].count("rollback")
    checks.append(
        ("panel: a stable pod bursting 20 errors: false rollbacks <= alpha", k <= ALPHA * runs,
         rate_text(k, runs))
    )  # fmt: skip
    return checks

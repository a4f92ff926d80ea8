"""The pooled test with per-pod counts: one pod's excess is not evidence, validity is kept."""

from __future__ import annotations

import math
import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from canaryctl.core.judges import Batch, Panel, PodOutlierJudge, SequentialJudge
from canaryctl.core.judges._pods import PodSummary, summarize
from core.judges.sampling import PLAIN, poisson

PODS = st.lists(
    st.tuples(st.floats(0, 500), st.floats(0, 1)).map(lambda t: (t[0], math.floor(t[0] * t[1]))),
    min_size=1,
    max_size=10,
)


def batch_of(canary: list[tuple[float, float]], stable: list[tuple[float, float]]) -> Batch:
    """A look whose totals are the sums of its pods."""
    return Batch(
        sum(n for n, _ in canary) or 1.0, sum(e for _, e in canary),
        sum(n for n, _ in stable), sum(e for _, e in stable),
        canary_pods=tuple((f"c{i}", n or 0.0, float(e)) for i, (n, e) in enumerate(canary)),
        stable_pods=tuple((f"s{i}", n, float(e)) for i, (n, e) in enumerate(stable)),
    )  # fmt: skip


def without_pods(batch: Batch) -> Batch:
    return Batch(batch.canary_requests, batch.canary_errors, batch.stable_requests,
                 batch.stable_errors)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(canary=PODS, stable=PODS, dispersion=st.floats(1, 50))
def test_trimming_never_adds_errors(canary, stable, dispersion) -> None:
    batch = batch_of(canary, stable)
    summary = batch.pods(dispersion)
    assert summary is not None and summary.problem() is None
    assert 0 <= summary.canary_errors_whole <= summary.canary_errors <= batch.canary_errors
    assert 0 <= summary.stable_errors <= batch.stable_errors
    assert summary.stable_chi2 >= 0 and summary.stable_df <= max(len(stable) - 1, 0)


@settings(max_examples=200, deadline=None)
@given(canary=PODS, stable=PODS, dispersion=st.floats(1, 50))
def test_each_look_with_pods_weighs_at_most_what_it_weighs_without(
    canary, stable, dispersion
) -> None:
    # Pointwise domination is the whole validity argument: any trimming keeps the
    # e-processes supermartingales wherever the untrimmed ones are.
    batch = batch_of(canary, stable)
    summary = batch.pods(dispersion)
    assert summary is not None
    config = {**PLAIN, "dispersion_prior_looks": math.inf}
    with_pods, plain = SequentialJudge(**config), SequentialJudge(**config)
    a = with_pods.observe(replace(without_pods(batch), pod_summary=summary))
    b = plain.observe(without_pods(batch))
    assert a.rollback_evalue <= b.rollback_evalue * (1 + 1e-12)  # type: ignore[operator]
    assert a.promote_evalue <= b.promote_evalue * (1 + 1e-12)  # type: ignore[operator]


def test_a_uniformly_worse_canary_is_not_trimmed() -> None:
    # Every canary pod at 3x the stable: its siblings explain each pod's errors.
    batch = batch_of([(200.0, 6.0)] * 5, [(1000.0, 10.0)] * 9)
    summary = batch.pods()
    assert summary is not None
    assert summary.canary_errors == batch.canary_errors == summary.canary_errors_whole
    assert summary.stable_errors == batch.stable_errors


def test_one_pods_burst_is_trimmed_on_the_side_it_would_speak_for() -> None:
    quiet = [(200.0, 1.0)] * 4
    canary_burst = batch_of([(200.0, 31.0), *quiet], [(1000.0, 10.0)] * 9)
    summary = canary_burst.pods()
    assert summary is not None
    assert summary.canary_errors < 15 < 30 < canary_burst.canary_errors
    stable_burst = batch_of([(200.0, 2.0)] * 5, [(1000.0, 40.0), *[(1000.0, 10.0)] * 8])
    summary = stable_burst.pods()
    assert summary is not None
    assert summary.stable_errors < stable_burst.stable_errors - 10
    assert summary.stable_chi2 / summary.stable_df > 5  # and the burst shows as dispersion


def test_known_burstiness_is_left_to_the_tempering() -> None:
    # A burst of the size already seen is not trimmed once the dispersion knows it.
    batch = batch_of([(200.0, 21.0), *[(200.0, 1.0)] * 4], [(1000.0, 10.0)] * 9)
    fresh, known = batch.pods(1.0), batch.pods(20.0)
    assert fresh is not None and known is not None
    assert fresh.canary_errors < known.canary_errors == batch.canary_errors
    assert fresh.canary_errors_whole == known.canary_errors_whole < batch.canary_errors


def test_summary_round_trips_through_a_row() -> None:
    summary = summarize((100, 5, 900, 9), [("c0", 100.0, 5.0)], [("s0", 450, 9), ("s1", 450, 0)])
    assert PodSummary(*summary.to_row()) == summary
    assert PodSummary(1, 1, math.nan, 1, 1).problem() is not None


def bursty_look(
    rng: random.Random,
    *,
    seconds: float = 5.0,
    rps: float = 1000.0,
    rate: float = 0.01,
    burst: float = 8.0,
    share: float = 0.1,
) -> Batch:
    """One look: errors in geometric bursts of mean `burst`, each from one pod."""
    q = math.log(1 - 1 / burst)

    def side(pods: int, requests: float) -> list[tuple[float, float]]:
        errors = [0.0] * pods
        for _ in range(poisson(requests * rate / burst, rng)):
            errors[rng.randrange(pods)] += 1 + int(math.log(1 - rng.random()) / q)
        return [(max(requests / pods, e), e) for e in errors]

    return batch_of(side(5, rps * seconds * share), side(9, rps * seconds * (1 - share)))


def _false_rollbacks(pods: bool, runs: int = 80, looks: int = 120) -> int:
    count = 0
    for seed in range(runs):
        rng = random.Random(seed)
        judge = SequentialJudge(promote_ratio=0.5)  # never promotes at R = 1: keeps looking
        for _ in range(looks):
            batch = bursty_look(rng)
            if judge.observe(batch if pods else without_pods(batch)).decision == "rollback":
                count += 1
                break
    return count


def test_bursts_from_one_pod_roll_back_good_canaries_less_with_pod_counts() -> None:
    # 1000 req/s, 1% errors in bursts of 8 from one pod, 5-s looks for 10 minutes: the
    # case where pooled counts alone rolled back 5-7% of good canaries (benchmark section 2).
    with_pods = _false_rollbacks(True)
    assert with_pods <= 0.05 * 80
    assert with_pods < _false_rollbacks(False)


def test_one_canary_pod_failing_twenty_percent_is_rolled_back_within_a_minute() -> None:
    # The case: 5 canary pods, one failing 20% of its requests, stable 1%,
    # 100 req/s with a 10% share, 10-s looks; errors and pods tests share alpha.
    late = 0
    for seed in range(40):
        rng = random.Random(seed)
        panel = Panel(0.05, {"errors": lambda a: SequentialJudge(a), "pods": PodOutlierJudge})
        decision = "continue"
        for _ in range(6):  # 60 s
            canary = [(20.0, float(poisson(20 * (0.2 if i == 0 else 0.01), rng))) for i in range(5)]
            stable = [(100.0, float(poisson(1.0, rng))) for _ in range(9)]
            batch = batch_of(canary, stable)
            decision = panel.observe({"errors": batch, "pods": batch}).decision
            if decision != "continue":
                break
        late += decision != "rollback"
    assert late <= 0.05 * 40


def test_kill_switch_fires_when_the_canary_fails_as_a_whole_not_for_one_pods_burst() -> None:
    stable = [(200.0, 2.0)] * 9
    one_pod = batch_of([(20.0, 20.0), *[(20.0, 0.0)] * 4], stable)  # 20% of 100, all on one pod
    every_pod = batch_of([(20.0, 12.0)] * 5, stable)  # 60% of every pod's requests fail
    assert SequentialJudge(max_canary_error_rate=0.15).observe(one_pod).reason != "kill-switch"
    assert SequentialJudge(max_canary_error_rate=0.15).observe(without_pods(one_pod)).reason == (
        "kill-switch"
    )
    assert SequentialJudge().observe(every_pod).reason == "kill-switch"

"""The engine through Traefik, real pods, the probe sending requests the whole time.

The Traefik router tests step a router by hand; these run a whole `Engine` (what
`canaryctl rollout` runs) for the NGINX-annotation and the Gateway API routers side by
side, each on its own copy of the seed's app: the split measured at a weight step, then a
promotion (the old version narrowed out of the Service, drained and deleted) or an abort
(weight back to the stable, the canary drained and scaled to zero). Not one request may
fail on the way.

The assertions can fail; measured once on this test bed (2 cores under load):
- drainDelay 0 and no preStop sleep: the gateway abort lost 10 of 1599 requests (502s and
  a timeout) as the canary's pods stopped; the other three runs lost none, since the
  engine already waits until no EndpointSlice lists the pods.
- the old stable's pods deleted at once when the engine sets 100% (what a tool without
  the drain gate does; drainDelay 0, no preStop): 13 of 1719 (nginx) and 16 of 1789
  (gateway) lost, 502s and timeouts.
"""

from __future__ import annotations

import pytest

from canaryctl.cli.demo_dataplane import RATE, Bed
from canaryctl.core.models import Phase
from dataplane.engine_harness import (
    CANARY_VERSION,
    STABLE_VERSION,
    Run,
    Scenario,
    assert_split,
    bed,
    namespace_pair,
    rollout,
    side_by_side,
)

__all__ = ["bed", "namespace_pair"]  # fixtures
pytestmark = [pytest.mark.integration, pytest.mark.dataplane, pytest.mark.traefik]

WEIGHT = 20
PAUSE = 5.0  # seconds at WEIGHT: a few hundred requests once the proxy has settled


def both_routers(bed: Bed, namespaces: tuple[str, str], **scenario: object) -> list[Run]:
    """The same scenario for the nginx and the gateway router, at the same time."""
    runs = side_by_side(
        lambda: rollout(bed, namespaces[0], Scenario("nginx", **scenario)),  # type: ignore[arg-type]
        lambda: rollout(bed, namespaces[1], Scenario("gateway", **scenario)),  # type: ignore[arg-type]
    )
    return list(runs)


def test_engine_promotes_through_traefik_without_losing_a_request(
    bed: Bed, namespace_pair: tuple[str, str]
) -> None:
    steps = [{"setWeight": WEIGHT}, {"pause": {"duration": f"{PAUSE}s"}}]
    for run in both_routers(bed, namespace_pair, steps=steps):
        assert run.status.phase is Phase.SUCCEEDED, run.status.message
        assert [s.weight for s in run.steps] == [WEIGHT], run.steps
        assert_split(run.steps[0])
        assert run.failed == 0, run.failures[:10]
        assert set(run.versions) == {STABLE_VERSION, CANARY_VERSION}, run.versions
        assert set(run.after) == {CANARY_VERSION}, run.after


def test_engine_abort_through_traefik_loses_no_request(
    bed: Bed, namespace_pair: tuple[str, str]
) -> None:
    steps = [{"setWeight": WEIGHT}, {"pause": {}}]  # held until the abort
    abort_after = int(PAUSE * RATE * 0.8)
    for run in both_routers(bed, namespace_pair, steps=steps, abort_after=abort_after):
        assert run.status.phase is Phase.ROLLED_BACK, run.status.message
        assert_split(run.steps[0])
        assert run.failed == 0, run.failures[:10]
        assert set(run.after) == {STABLE_VERSION}, run.after

"""The engine through Traefik, real pods, the probe sending requests the whole time.

The Traefik router tests step a router by hand; these run a whole `Engine` (what
`canaryctl rollout` runs) for the NGINX-annotation and the Gateway API routers on the
seed's app: the split measured at a weight step, then a promotion (the old version
narrowed out of the Service, drained and deleted) or an abort (weight back to the stable,
the canary drained and scaled to zero). Not one request may fail on the way.

The scenario is the demo's (`canaryctl demo`), on a smaller scale: two stable pods, one
short pause, a short drain delay.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube import Client

from canaryctl.cli import demo_dataplane as demo
from canaryctl.core.models import CanaryStatus, Phase, parse_spec
from canaryctl.driver.engine import Engine
from canaryctl.kube import manifests
from canaryctl.kube.store import Store
from canaryctl.testenv import ClusterState, LocalCluster, images
from canaryctl.testenv.traefik import state_of
from helpers import EXAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.dataplane, pytest.mark.traefik]

STABLE, CANARY = "pulpocon-app-v1", "pulpocon-app-v2"
CANARY_VERSION = "v2.0.0"
REPLICAS = 2
WEIGHT = 20
#: The pause at WEIGHT: long enough for a few hundred requests after the proxy settles.
PAUSE = 5.0
#: Endpoint changes reach Traefik within about a second here (its providers watch
#: EndpointSlices); the seed's preStop sleep (5 s) covers what the delay does not.
DRAIN_DELAY = "2s"
ROUTES = {"nginx": "ingress/ingress.yaml", "gateway": "gateway/httproute.yaml"}


@pytest.fixture(scope="module")
def bed(dataplane_cluster: ClusterState, dataplane_kube: Client) -> demo.Bed:
    """The demo's bed without Prometheus: the cluster with its real node and Traefik."""
    import canaryctl.routers.gateway  # noqa: F401  (registers HTTPRoute for the loader)

    proxy = state_of(dataplane_cluster)
    assert proxy is not None, "the data plane runs Traefik"
    LocalCluster(dataplane_cluster.name).load_image(images.app_image())
    return demo.Bed(
        dataplane_cluster, dataplane_kube, EXAMPLES / "pulpocon-app", proxy.url, "", "plain"
    )


class Recorder:
    """The engine's sink: every snapshot goes to the probe's timeline."""

    def __init__(self, traffic: demo.Traffic) -> None:
        self.traffic = traffic

    def notice(self, notice: Any) -> None:
        pass

    def snapshot(self, snap: Any) -> None:
        self.traffic.record(snap)


@dataclass
class Run:
    """How one rollout under traffic ended, and what the probe measured."""

    status: CanaryStatus
    requests: int
    failed: int
    failures: list[tuple[float, int | None, str | None]]
    steps: list[demo.StepShare]
    versions: dict[str, int]
    #: versions answering after the engine returned (the end state), with their counts
    after: dict[str, int]
    took: float


def _objects(bed: demo.Bed, kind: str, host: str, graceful: bool) -> list[Any]:
    objs = demo.seed_objects(bed, ROUTES[kind])
    demo._stable_replicas(objs, REPLICAS)
    for obj in objs:
        if obj.kind == "Ingress":
            obj.spec.rules[0].host = host
        elif obj.kind == "HTTPRoute":
            obj.spec["hostnames"] = [host]
        elif obj.kind == "Deployment" and not graceful:
            # The negative control: pods die at SIGTERM, with nothing to cover the drain.
            obj.spec.template.spec.containers[0].lifecycle = None
    return objs


def _spec(kind: str, namespace: str, steps: list[dict[str, Any]], drain_delay: str) -> Any:
    router: dict[str, Any] = {"kind": kind, "header": {"X-Track": "canary"}}
    router["ingress" if kind == "nginx" else "httproute"] = "pulpocon-app"
    return parse_spec(
        {
            "name": "pulpocon-app",
            "namespace": namespace,
            "stable": STABLE,
            "canary": CANARY,
            "service": "pulpocon-app",
            "router": router,
            "steps": steps,
            "drainDelay": drain_delay,
            "health": {"readyDeadline": "90s"},
        }
    )


def rollout(
    bed: demo.Bed,
    namespace: str,
    kind: str,
    *,
    abort: bool,
    drain_delay: str = DRAIN_DELAY,
    graceful: bool = True,
) -> Run:
    """The seed's app behind `kind`'s route; the engine rolls v2 out at WEIGHT % for PAUSE
    seconds, then promotes it (or is aborted during an open pause) while the probe runs."""
    started = time.monotonic()
    host = f"{namespace}.test"
    objs = _objects(bed, kind, host, graceful)
    deployments = {o.metadata.name: o for o in objs if o.kind == "Deployment"}
    others = [o for o in objs if o.kind != "Deployment"]
    manifests.apply(bed.client, [*others, deployments[STABLE]], namespace)
    demo.wait_ready(bed.client, namespace, STABLE, REPLICAS, timeout=120)
    manifests.apply(bed.client, [deployments[CANARY]], namespace)
    url, headers = bed.traefik_url + "/", {"Host": host}
    demo._wait(lambda: demo._answers(url, headers, "v1.0.0"), 60, f"answers from {host}")
    pause: dict[str, Any] = {} if abort else {"duration": f"{PAUSE}s"}
    spec = _spec(kind, namespace, [{"setWeight": WEIGHT}, {"pause": pause}], drain_delay)
    traffic = demo.Traffic(url, headers, CANARY_VERSION, remote=False).start()
    demo._wait(lambda: traffic.meter.requests >= 20, 30, "answers to the probe")
    stop_abort = threading.Event()
    aborter = threading.Thread(
        target=_abort_after_pause, args=(bed.client, namespace, traffic, stop_abort), daemon=True
    )
    if abort:
        aborter.start()
    try:
        status = Engine(bed.client, spec, sink=Recorder(traffic), record_events=False).run(
            0.5, should_stop=lambda: time.monotonic() - started > 150
        )
        ended = traffic.elapsed()
        time.sleep(2.0)  # answers after the last switch and the old pods' termination
    finally:
        stop_abort.set()
        traffic.stop()
    report = traffic.meter.report(traffic.elapsed())
    failures = [(round(o.sent, 1), o.status, o.error) for o in traffic.outcomes if o.failed]
    run = Run(
        status,
        report["requests"],
        report["failed"],
        failures,
        traffic.steps(),
        {v: s["requests"] for v, s in report["versions"].items()},
        dict(Counter(o.version for o in traffic.outcomes if o.sent > ended + 0.5)),
        time.monotonic() - started,
    )
    shares = ", ".join(f"{s.weight}%: {s.canary}/{s.total}" for s in run.steps)
    print(
        f"\n{kind} {'abort' if abort else 'promotion'} (drainDelay {drain_delay}, "
        f"preStop {'5s' if graceful else 'none'}): {status.phase.value} in {run.took:.0f}s; "
        f"{run.failed} of {run.requests} failed {failures[:5]}; canary share {shares}; "
        f"by version {run.versions}; after the end {run.after}"
    )
    return run


def _abort_after_pause(
    client: Client, namespace: str, traffic: demo.Traffic, stop: threading.Event
) -> None:
    """Send `abort` once the weight step has held long enough to measure its split."""
    while not stop.wait(0.25):
        shares = traffic.steps()
        if shares and shares[0].total >= PAUSE * demo.RATE * 0.8:
            Store(client).send_command("pulpocon-app", namespace, "abort")
            return


def assert_split(share: demo.StepShare) -> None:
    """The canary's share is inside the 99.9% binomial interval of the step's weight."""
    p = share.weight / 100
    sd = math.sqrt(share.total * p * (1 - p))
    assert share.total >= 200, share
    assert abs(share.canary - share.total * p) <= 3.3 * sd, share


@pytest.mark.parametrize("kind", ["nginx", "gateway"])
def test_engine_promotes_through_traefik_without_losing_a_request(
    kind: str, bed: demo.Bed, dataplane_namespace: str
) -> None:
    run = rollout(bed, dataplane_namespace, kind, abort=False)
    assert run.status.phase is Phase.SUCCEEDED, run.status.message
    assert [s.weight for s in run.steps] == [WEIGHT], run.steps
    assert_split(run.steps[0])
    assert run.failed == 0, run.failures[:10]
    assert set(run.versions) == {"v1.0.0", CANARY_VERSION}, run.versions
    assert set(run.after) == {CANARY_VERSION}, run.after


@pytest.mark.parametrize("kind", ["nginx", "gateway"])
def test_engine_abort_through_traefik_loses_no_request(
    kind: str, bed: demo.Bed, dataplane_namespace: str
) -> None:
    run = rollout(bed, dataplane_namespace, kind, abort=True)
    assert run.status.phase is Phase.ROLLED_BACK, run.status.message
    assert_split(run.steps[0])
    assert run.failed == 0, run.failures[:10]
    assert set(run.after) == {"v1.0.0"}, run.after

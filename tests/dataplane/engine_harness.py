"""A whole `Engine` (what `canaryctl rollout` runs) through Traefik, on the seed's app on
the real node, while the probe sends requests the whole time.

The scenario is the demo's (`canaryctl demo`, `canaryctl.cli.demo_dataplane`) on a
smaller scale: two stable pods, one weight step, a short drain delay. Test modules pick
the router, the steps, the faults and the analysis, and assert on what comes back.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from canaryctl.cli import demo_dataplane as demo
from canaryctl.core.models import CanaryStatus, parse_spec
from canaryctl.driver.engine import Engine
from canaryctl.kube import manifests
from canaryctl.kube.store import Store
from canaryctl.testenv import ClusterState, LocalCluster, images
from canaryctl.testenv.traefik import state_of
from helpers import EXAMPLES, wait_until

T = TypeVar("T")

STABLE, CANARY = "pulpocon-app-v1", "pulpocon-app-v2"
STABLE_VERSION, CANARY_VERSION = "v1.0.0", "v2.0.0"
REPLICAS = 2
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


@pytest.fixture
def namespace_pair(dataplane_kube: Client) -> Iterator[tuple[str, str]]:
    """Two fresh namespaces, for two rollouts run side by side."""
    names = tuple(f"t-{n}-{time.monotonic_ns() % 10**8:08d}" for n in ("a", "b"))
    for name in names:
        dataplane_kube.create(Namespace(metadata=ObjectMeta(name=name)))
    for name in names:
        wait_until(lambda n=name: list(dataplane_kube.list(ServiceAccount, namespace=n)), 30)
    yield names[0], names[1]
    for name in names:
        dataplane_kube.delete(Namespace, name)


def side_by_side(first: Callable[[], T], second: Callable[[], T]) -> tuple[T, T]:
    """Run two scenarios at once (each in its own namespace); both results, or the error."""
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(first), pool.submit(second)
        return a.result(), b.result()


@dataclass
class Scenario:
    """One rollout: the router, the steps, and what to change on the way."""

    kind: str
    steps: list[dict[str, Any]]
    drain_delay: str = DRAIN_DELAY
    #: False drops the seed's preStop sleep (the negative control)
    graceful: bool = True
    #: send `abort` once the first weight step has this many measured requests
    abort_after: int | None = None
    #: ERROR_RATE of the stable and of the canary
    error_rates: tuple[str, str] = ("0", "0")
    analysis: dict[str, Any] | None = None
    budget: float = 150.0
    #: called once (in a thread) when the engine first sets the full weight: a negative
    #: control can do there what a tool without a drain gate would do
    at_full_weight: Callable[[], None] | None = None


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
    lines: list[str] = field(default_factory=list)


class Recorder:
    """The engine's sink: every snapshot goes to the probe's timeline."""

    def __init__(
        self, traffic: demo.Traffic, at_full_weight: Callable[[], None] | None = None
    ) -> None:
        self.traffic = traffic
        self.at_full_weight = at_full_weight

    def notice(self, notice: Any) -> None:
        pass

    def snapshot(self, snap: Any) -> None:
        self.traffic.record(snap)
        if self.at_full_weight is not None and snap.desired_weight == 100:
            threading.Thread(target=self.at_full_weight, daemon=True).start()
            self.at_full_weight = None


def _objects(bed: demo.Bed, sc: Scenario, host: str) -> list[Any]:
    objs = demo.seed_objects(bed, ROUTES[sc.kind])
    demo._stable_replicas(objs, REPLICAS)
    rates = dict(zip((STABLE, CANARY), sc.error_rates, strict=True))
    for obj in objs:
        if obj.kind == "Ingress":
            obj.spec.rules[0].host = host
        elif obj.kind == "HTTPRoute":
            obj.spec["hostnames"] = [host]
        elif obj.kind == "Deployment":
            demo.set_env(obj, ERROR_RATE=rates[obj.metadata.name])
            if not sc.graceful:
                # The negative control: pods stop at SIGTERM, nothing covers the drain.
                obj.spec.template.spec.containers[0].lifecycle = None
    return objs


def _spec(sc: Scenario, namespace: str) -> Any:
    router: dict[str, Any] = {"kind": sc.kind, "header": {"X-Track": "canary"}}
    router["ingress" if sc.kind == "nginx" else "httproute"] = "pulpocon-app"
    data: dict[str, Any] = {
        "name": "pulpocon-app",
        "namespace": namespace,
        "stable": STABLE,
        "canary": CANARY,
        "service": "pulpocon-app",
        "router": router,
        "steps": sc.steps,
        "drainDelay": sc.drain_delay,
        "health": {"readyDeadline": "90s"},
    }
    if sc.analysis is not None:
        data["analysis"] = sc.analysis
    return parse_spec(data)


def rollout(bed: demo.Bed, namespace: str, sc: Scenario) -> Run:
    """The seed's app behind the scenario's route; the engine runs the rollout to its end
    while the probe sends requests through Traefik, from the stable's first answers to two
    seconds after the engine returned."""
    started = time.monotonic()
    host = f"{namespace}.test"
    objs = _objects(bed, sc, host)
    deployments = {o.metadata.name: o for o in objs if o.kind == "Deployment"}
    others = [o for o in objs if o.kind != "Deployment"]
    manifests.apply(bed.client, [*others, deployments[STABLE]], namespace)
    demo.wait_ready(bed.client, namespace, STABLE, REPLICAS, timeout=120)
    manifests.apply(bed.client, [deployments[CANARY]], namespace)
    url, headers = bed.traefik_url + "/", {"Host": host}
    demo._wait(lambda: _answered(url, headers), 60, f"answers from {host}")
    traffic = demo.Traffic(url, headers, CANARY_VERSION, remote=False).start()
    demo._wait(lambda: traffic.meter.requests >= 20, 30, "answers to the probe")
    stop = threading.Event()
    if sc.abort_after is not None:
        args = (bed.client, namespace, traffic, sc.abort_after, stop)
        threading.Thread(target=_abort_after, args=args, daemon=True).start()
    try:
        sink = Recorder(traffic, sc.at_full_weight)
        engine = Engine(bed.client, _spec(sc, namespace), sink=sink, record_events=False)
        status = engine.run(0.5, should_stop=lambda: time.monotonic() - started > sc.budget)
        ended = traffic.elapsed()
        time.sleep(2.0)  # answers after the last switch and the old pods' termination
    finally:
        stop.set()
        traffic.stop()
    report = traffic.meter.report(traffic.elapsed())
    run = Run(
        status,
        report["requests"],
        report["failed"],
        [(round(o.sent, 1), o.status, o.error) for o in traffic.outcomes if o.failed],
        traffic.steps(),
        {v: s["requests"] for v, s in report["versions"].items()},
        dict(Counter(o.version for o in traffic.outcomes if o.sent > ended + 0.5)),
        time.monotonic() - started,
    )
    shares = ", ".join(f"{s.weight}%: {s.canary}/{s.total}" for s in run.steps)
    print(
        f"\n{namespace} {sc.kind} (drainDelay {sc.drain_delay}, preStop "
        f"{'5s' if sc.graceful else 'none'}, errors {sc.error_rates}): "
        f"{status.phase.value} ({status.reason}) in {run.took:.0f}s; {run.failed} of "
        f"{run.requests} failed {run.failures[:5]}; canary share {shares}; "
        f"by version {run.versions}; after the end {run.after}"
    )
    return run


def _answered(url: str, headers: dict[str, str]) -> bool:
    """The route serves the stable (Traefik has picked it up)."""
    return demo._answers(url, headers, STABLE_VERSION)


def _abort_after(
    client: Client, namespace: str, traffic: demo.Traffic, requests: int, stop: threading.Event
) -> None:
    """Send `abort` once the first weight step has held for `requests` measured requests."""
    while not stop.wait(0.25):
        shares = traffic.steps()
        if shares and shares[0].total >= requests:
            Store(client).send_command("pulpocon-app", namespace, "abort")
            return


def assert_split(share: demo.StepShare, minimum: int = 150) -> None:
    """The canary's share is inside the 99.9% binomial interval of the step's weight."""
    p = share.weight / 100
    sd = math.sqrt(share.total * p * (1 - p))
    assert share.total >= minimum, share
    assert abs(share.canary - share.total * p) <= 3.3 * sd, share

"""`canaryctl demo` on a real data plane: real pods, real requests, real metrics.

Three scenarios on one local cluster with a real node (containerd, kubelet, kube-proxy),
Traefik as the L7 proxy and a Prometheus that finds the pods by their annotations:

1. the seed's rollout with the replica router: 10 x v1, then v2 at 10 -> 50 -> 100 %, while
   the probe sends requests through the Service (kube-proxy) and shows who answers;
2. the same split through the NGINX canary annotations, served by Traefik;
3. a canary failing twice as often as the stable, rolled back by the sequential judge from
   what Prometheus scraped off the pods.

Each scenario ends with the split measured at every pause and the failed requests.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from canaryctl.core.traffic import Outcome, Schedule, SplitMeter

if TYPE_CHECKING:
    from lightkube import Client
    from rich.console import RenderableType

    from canaryctl.core.models import CanarySpec
    from canaryctl.driver.report import Notice, Snapshot
    from canaryctl.testenv import ClusterState

HOST = "pulpocon-app.local"
SEED = ("service.yaml", "app-v1.yaml", "app-v2.yaml")
RATE = 100.0  # requests per second while a rollout runs
MAX_SCENARIO_SECONDS = 600.0  # the probe's bound: a scenario never sends for longer


def say(msg: str) -> None:
    """Progress for the person watching (stderr)."""
    print(msg, file=sys.stderr, flush=True)


class SharedMeter(SplitMeter):
    """A SplitMeter the probe thread fills while the view thread reads it."""

    def __init__(self, window: float = 3.0) -> None:
        super().__init__(window)
        self._lock = threading.Lock()

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            super().add(outcome)

    def report(self, now: float) -> dict[str, Any]:
        with self._lock:
            return super().report(now)


@dataclass
class StepShare:
    """What the probe measured while one weight held (a pause)."""

    weight: int
    expected: float  # percent: the router's effective weight during the pause
    canary: int = 0
    total: int = 0
    failed: int = 0

    @property
    def measured(self) -> float:
        return 100.0 * self.canary / self.total if self.total else 0.0


@dataclass
class Result:
    """How one scenario ended, with the traffic it measured."""

    scenario: str
    phase: str
    reason: str
    took: float
    requests: int = 0
    failed: int = 0
    steps: list[StepShare] = field(default_factory=list)


class Traffic:
    """The probe in a background thread for the length of one rollout, and a timeline of
    the rollout's weights, so each request is attributed to the weight it was sent under."""

    def __init__(self, url: str, headers: dict[str, str], canary: str, *, remote: bool) -> None:
        from canaryctl.driver.probe import ProbeSettings

        self.canary = canary
        self.meter = SharedMeter()
        self.outcomes: list[Outcome] = []
        # (seconds since the probe started, desired weight, effective weight, holding)
        self.timeline: list[tuple[float, int, float | None, bool]] = []
        self.settings = ProbeSettings(
            url,
            Schedule(RATE, MAX_SCENARIO_SECONDS),
            headers=tuple(headers.items()),
            timeout=2.0,
            allow_remote=remote,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0.0
        self.error: BaseException | None = None

    def start(self) -> Traffic:
        from canaryctl.driver.probe import check_target

        check_target(self.settings.url, self.settings.allow_remote)
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from canaryctl.driver.probe import run_probe

        try:
            run_probe(self.settings, self.meter, on_outcome=self.outcomes.append, stop=self._stop)
        except BaseException as exc:  # reported by stop(); the demo goes on without traffic
            self.error = exc

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def record(self, snap: Snapshot) -> None:
        """Remember the weight now in effect (called with every rollout snapshot)."""
        # A pause: the step's changes are done (no sub-stage) and the weight is observed.
        holding = (
            snap.phase in ("Progressing", "Paused")
            and snap.stage is None
            and snap.effective_weight is not None
        )
        self.timeline.append((self.elapsed(), snap.desired_weight, snap.effective_weight, holding))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.error is not None:
            say(f"the probe stopped early: {self.error}")

    def steps(self, settle: float = 1.0) -> list[StepShare]:
        """Canary share of the requests sent while each weight held, in order of weight.

        The first `settle` seconds of each pause are left out: the weight is stored in the
        cluster, but kube-proxy and Traefik apply it a moment later."""
        shares: dict[int, StepShare] = {}
        marks = self.timeline
        held_since: list[float] = []  # per mark: when its unbroken run of holding began
        for i, (at, weight, _, _) in enumerate(marks):
            same = i and marks[i - 1][3] and marks[i - 1][1] == weight
            held_since.append(held_since[i - 1] if same else at)
        index = 0
        for outcome in sorted(self.outcomes, key=lambda o: o.sent):
            while index + 1 < len(marks) and marks[index + 1][0] <= outcome.sent:
                index += 1
            if not marks or marks[index][0] > outcome.sent:
                continue
            _, weight, effective, holding = marks[index]
            if not holding or weight in (0, 100) or outcome.sent < held_since[index] + settle:
                continue
            share = shares.setdefault(weight, StepShare(weight, effective or float(weight)))
            share.total += 1
            share.canary += outcome.version == self.canary
            share.failed += outcome.failed
        return [shares[w] for w in sorted(shares)]


def probe_table(meter: SplitMeter, elapsed: float) -> RenderableType:
    """The probe's split by version, as the live view shows it."""
    from canaryctl.cli.probe import _table

    report = meter.report(elapsed)
    title = f"traffic: {report['requests']} requests, {report['failed']} failed"
    return _table(report, title, with_window=True)


class DemoView:
    """The rollout view with the probe's table under it (live), or both as lines (plain)."""

    def __init__(self, output: str, traffic: Traffic) -> None:
        from canaryctl.cli.views import LiveView, PlainView

        self.traffic = traffic
        self.live = output == "live" and sys.stderr.isatty()
        self.inner = LiveView() if self.live else PlainView()
        self._last_line = 0.0

    def notice(self, notice: Notice) -> None:
        self.inner.notice(notice)

    def snapshot(self, snap: Snapshot) -> None:
        from rich.console import Group

        from canaryctl.cli.views import LiveView, render

        self.traffic.record(snap)
        if isinstance(self.inner, LiveView):
            table = probe_table(self.traffic.meter, self.traffic.elapsed())
            self.inner.live.update(Group(render(snap, self.inner.notices), table))
            return
        self.inner.snapshot(snap)
        now = time.monotonic()
        if now - self._last_line >= 5:
            self._last_line = now
            report = self.traffic.meter.report(self.traffic.elapsed())
            split = ", ".join(
                f"{v} {100 * s['windowShare']:.0f}%" for v, s in report["versions"].items()
            )
            say(f"         traffic (last 3 s): {split}; {report['failed']} failed so far")

    def close(self) -> None:
        self.inner.close()


# --- the cluster --------------------------------------------------------------------------


def place_on_real_node(objs: Iterable[Any]) -> None:
    """Add the real node's nodeSelector and toleration to every Deployment's pods."""
    from canaryctl.testenv.dataplane import REAL_POD_PLACEMENT

    for obj in objs:
        if getattr(obj, "kind", None) != "Deployment":
            continue
        pod = obj.spec.template.spec
        pod.nodeSelector = dict(REAL_POD_PLACEMENT["nodeSelector"])
        from lightkube.models.core_v1 import Toleration

        pod.tolerations = [Toleration(**t) for t in REAL_POD_PLACEMENT["tolerations"]]


def set_env(deployment: Any, **values: str) -> None:
    """Set environment variables of the app container (e.g. ERROR_RATE)."""
    from lightkube.models.core_v1 import EnvVar

    container = deployment.spec.template.spec.containers[0]
    env = [e for e in container.env or [] if e.name not in values]
    container.env = env + [EnvVar(name=k, value=v) for k, v in values.items()]


def as_version(deployment: Any, name: str, version: str, replicas: int) -> Any:
    """A copy of a seed Deployment as another version (labels, VERSION, name)."""
    copy_ = copy.deepcopy(deployment)
    copy_.metadata.name = name
    copy_.spec.replicas = replicas
    for labels in (copy_.spec.selector.matchLabels, copy_.spec.template.metadata.labels):
        labels["version"] = version
    set_env(copy_, VERSION=version)
    return copy_


def recreate_namespace(client: Client, namespace: str) -> None:
    """Delete the namespace if a previous run left it, wait until it is gone, create it."""
    from lightkube.core.exceptions import ApiError
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace

    try:
        client.delete(Namespace, namespace)
        say(f"removing the previous namespace {namespace}")
        while True:
            client.get(Namespace, namespace)
            time.sleep(0.5)
    except ApiError:
        pass
    client.create(Namespace(metadata=ObjectMeta(name=namespace)))


def fresh_namespace(client: Client, namespace: str) -> None:
    """A new, empty namespace whose default service account exists (pods can be created)."""
    from lightkube.resources.core_v1 import ServiceAccount

    recreate_namespace(client, namespace)
    _wait(lambda: list(client.list(ServiceAccount, namespace=namespace)), 30, "service account")


def drop_namespace(client: Client, namespace: str) -> None:
    """Delete a scenario's namespace (its pods drain in the background)."""
    from lightkube.core.exceptions import ApiError
    from lightkube.resources.core_v1 import Namespace

    with contextlib.suppress(ApiError):
        client.delete(Namespace, namespace)


def _wait(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    from canaryctl.errors import ClusterError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise ClusterError(f"demo: {what} not there within {timeout:.0f}s")


def wait_ready(client: Client, namespace: str, name: str, want: int, timeout: float = 180) -> None:
    """Wait for `want` ready replicas of a Deployment."""
    from canaryctl.kube import workloads

    def ready() -> bool:
        return workloads.read_deployment(client, name, namespace).ready_replicas >= want

    _wait(ready, timeout, f"deployment/{name} with {want} ready replicas")


def run_rollout(client: Client, spec: CanarySpec, view: DemoView) -> tuple[str, str]:
    """Drive the rollout to its end; (phase, reason or message)."""
    from canaryctl.driver.engine import Engine

    try:
        status = Engine(client, spec, sink=view).run(interval=0.5)
    finally:
        view.close()
    return status.phase.value, status.reason or status.message


# --- the scenarios ------------------------------------------------------------------------


@dataclass
class Bed:
    """What every scenario uses: the cluster, its proxy and its Prometheus."""

    state: ClusterState
    client: Client
    examples: Path
    traefik_url: str
    prometheus_url: str
    output: str


def seed_objects(bed: Bed, *extra: str) -> list[Any]:
    from canaryctl.kube import manifests

    objs = manifests.load(bed.examples / f for f in (*SEED, *extra))
    place_on_real_node(objs)
    return objs


def scenario(
    bed: Bed,
    title: str,
    namespace: str,
    objs: list[Any],
    spec: CanarySpec,
    url: Callable[[], str],
    headers: dict[str, str],
    *,
    stable_replicas: int,
    remote: bool,
) -> Result:
    """Apply the objects, wait for the stable, run the rollout under traffic; `url` is
    asked once the objects exist (a ClusterIP is known only then)."""
    from canaryctl.kube import manifests

    started = time.monotonic()
    fresh_namespace(bed.client, namespace)
    deployments = {o.metadata.name: o for o in objs if o.kind == "Deployment"}
    others = [o for o in objs if o.kind != "Deployment"]
    manifests.apply(bed.client, [*others, deployments[spec.stable]], namespace)
    wait_ready(bed.client, namespace, spec.stable, stable_replicas)
    canary = deployments[spec.canary]
    manifests.apply(bed.client, [canary], namespace)
    canary_version = canary.spec.template.metadata.labels["version"]
    target = url()
    stable_version = deployments[spec.stable].spec.template.metadata.labels["version"]
    # The proxy needs a moment to pick up a new route: send the traffic once it answers.
    _wait(lambda: _answers(target, headers, stable_version), 60, f"answers from {target}")
    traffic = Traffic(target, headers, canary_version, remote=remote).start()
    _wait(lambda: traffic.meter.requests >= 20, 60, "answers to the probe")
    say(f"   traffic: {RATE:.0f} requests/s to {target}")
    try:
        phase, reason = run_rollout(bed.client, spec, DemoView(bed.output, traffic))
        time.sleep(2)  # the last answers, after the final switch
    finally:
        traffic.stop()
    report = traffic.meter.report(traffic.elapsed())
    result = Result(
        title,
        phase,
        reason,
        time.monotonic() - started,
        report["requests"],
        report["failed"],
        traffic.steps(),
    )
    drop_namespace(bed.client, namespace)
    return result


def _answers(url: str, headers: dict[str, str], version: str) -> bool:
    """True when one request to `url` is answered by `version`."""
    import httpx

    from canaryctl.core.traffic import version_of

    try:
        answer = httpx.get(url, headers=headers, timeout=2, trust_env=False)
    except httpx.HTTPError:
        return False
    return version_of(answer.headers, answer.content) == version


def replicas_scenario(bed: Bed) -> Result:
    """The seed's rollout: replica ratio behind one Service, traffic through kube-proxy."""
    from lightkube.resources.core_v1 import Service

    from canaryctl.core.models import quick_spec

    ns = "demo-replicas"
    say("1. the seed's rollout (replica router): 10 x v1, v2 at 10 -> 50 -> 100 %, "
        "requests through the Service (kube-proxy)")  # fmt: skip
    objs = seed_objects(bed)
    spec = quick_spec("pulpocon-app", ns, "pulpocon-app-v1", "pulpocon-app-v2", "pulpocon-app",
                      steps="10,50,100", pause="15s")  # fmt: skip

    def url() -> str:
        ip = bed.client.get(Service, "pulpocon-app", namespace=ns).spec.clusterIP
        return f"http://{ip}/"

    return scenario(bed, "replicas (kube-proxy)", ns, objs, spec, url, {}, stable_replicas=10,
                    remote=True)  # fmt: skip


def nginx_scenario(bed: Bed) -> Result:
    """The same steps through the NGINX canary annotations, Traefik in front."""
    from canaryctl.core.models import quick_spec

    ns = "demo-nginx"
    say("2. the same through NGINX canary annotations, served by Traefik")
    objs = seed_objects(bed, "ingress/ingress.yaml")
    _stable_replicas(objs, 4)
    host = f"{ns}.{HOST}"
    _ingress_host(objs, host)
    router = {"kind": "nginx", "ingress": "pulpocon-app", "header": {"X-Track": "canary"}}
    spec = quick_spec("pulpocon-app", ns, "pulpocon-app-v1", "pulpocon-app-v2", "pulpocon-app",
                      steps="10,50,100", pause="15s", router=router)  # fmt: skip
    headers = {"Host": host}
    return scenario(bed, "nginx (Traefik)", ns, objs, spec, lambda: bed.traefik_url + "/",
                    headers, stable_replicas=4, remote=False)  # fmt: skip


def analysis_scenario(bed: Bed) -> Result:
    """A canary with twice the stable's error rate, judged from Prometheus."""
    from canaryctl.core.models import quick_spec

    ns = "demo-analysis"
    say("3. a canary failing twice as often (20% vs 10% of requests), judged by the "
        "sequential test from Prometheus")  # fmt: skip
    objs = seed_objects(bed, "ingress/ingress.yaml")
    _stable_replicas(objs, 4)
    host = f"{ns}.{HOST}"
    _ingress_host(objs, host)
    deployments = {o.metadata.name: o for o in objs if o.kind == "Deployment"}
    set_env(deployments["pulpocon-app-v1"], ERROR_RATE="0.10")
    v3 = as_version(deployments["pulpocon-app-v2"], "pulpocon-app-v3", "v3.0.0", 0)
    set_env(v3, ERROR_RATE="0.20")
    objs = [o for o in objs if o.metadata.name != "pulpocon-app-v2"] + [v3]
    router = {"kind": "nginx", "ingress": "pulpocon-app"}
    # Looks of 5 s: with 1 s scrapes, each increase() spans several samples.
    analysis = {"prometheus": {"url": bed.prometheus_url}, "judge": "sequential",
                "interval": "5s"}  # fmt: skip
    spec = quick_spec("pulpocon-app", ns, "pulpocon-app-v1", "pulpocon-app-v3", "pulpocon-app",
                      steps="10,50,100", pause="60s", router=router,
                      analysis=analysis)  # fmt: skip
    return scenario(bed, "2x errors (sequential judge)", ns, objs, spec,
                    lambda: bed.traefik_url + "/", {"Host": host}, stable_replicas=4,
                    remote=False)  # fmt: skip


def _stable_replicas(objs: list[Any], replicas: int) -> None:
    """The stable's size; the canary starts at 0 (a weight router's engine scales it, and
    a canary pod behind the user's Service would take traffic before the rollout starts)."""
    for obj in objs:
        if obj.kind == "Deployment":
            obj.spec.replicas = replicas if obj.metadata.name.endswith("-v1") else 0


def _ingress_host(objs: list[Any], host: str) -> None:
    for obj in objs:
        if obj.kind == "Ingress":
            for rule in obj.spec.rules:
                rule.host = host


# --- the whole demo -----------------------------------------------------------------------


def missing() -> list[str]:
    """Why a real node cannot run here (empty when it can)."""
    from canaryctl.testenv import dataplane

    return dataplane.missing_requirements()


def run(name: str, examples: Path, output: str, keep: bool) -> int:
    """Cluster with a real node, the app's image, Prometheus; the three scenarios; the
    summary. Returns the exit code: 0 when each scenario ended as it should."""
    from canaryctl.kube.client import make_client
    from canaryctl.testenv import LocalCluster, images
    from canaryctl.testenv.dataplane import NODE_NAME
    from canaryctl.testenv.prometheus import PodDiscovery, PrometheusServer
    from canaryctl.testenv.traefik import state_of

    started = time.monotonic()
    cluster = LocalCluster(name, dataplane=True, progress=say)
    state = cluster.up(timeout=300)
    say("building the app image from images/pulpocon-app and loading it into the node")
    cluster.load_image(images.app_image())  # the examples' canaryctl.local/pulpocon-app:1.0
    proxy = state_of(state)
    if proxy is None:
        from canaryctl.errors import TestenvError

        raise TestenvError("the data plane runs without Traefik: `canaryctl testenv down "
                           f"--name {name}` and try again")  # fmt: skip
    discovery = PodDiscovery.for_cluster(state, node=NODE_NAME)
    results: list[Result] = []
    with PrometheusServer(pods=discovery) as prometheus:
        say(f"Prometheus {prometheus.url} scrapes the pods of {NODE_NAME} by their annotations")
        bed = Bed(state, make_client(state.kubeconfig), examples, proxy.url, prometheus.url,
                  output)  # fmt: skip
        for run_one in (replicas_scenario, nginx_scenario, analysis_scenario):
            results.append(run_one(bed))
    print_summary(results, time.monotonic() - started)
    print(f"kubectl --kubeconfig {state.kubeconfig} get pods -A")
    if not keep:
        cluster.down()
    expected = ("Succeeded", "Succeeded", "RolledBack")
    return 0 if tuple(r.phase for r in results) == expected else 1


def print_summary(results: list[Result], took: float) -> None:
    """One row per scenario: the end, the measured split per step, the failed requests."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"canaryctl demo on a real data plane: {took:.0f}s in all")
    for col in ("scenario", "result", "canary share at each pause", "failed", "why", "took"):
        table.add_column(col)
    for r in results:
        steps = "\n".join(
            f"{s.weight}%: {s.measured:.1f}% of {s.total}"
            + (f" (ready pods {s.expected:.1f}%)" if abs(s.expected - s.weight) >= 0.5 else "")
            for s in r.steps
        )
        table.add_row(r.scenario, r.phase, steps or "-", f"{r.failed} of {r.requests}",
                      r.reason[:40], f"{r.took:.0f}s")  # fmt: skip
    Console(stderr=True, width=max(100, Console(stderr=True).width)).print(table)

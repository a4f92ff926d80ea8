"""canaryctl's operator against Flagger on the real data plane, through Traefik.

Failed requests and the measured split while each promotes a good canary and rolls back a
bad one.

One local cluster with a real node (containerd, kubelet, kube-proxy) and Traefik serving
Ingresses of class nginx (ingress-nginx's canary annotations) and HTTPRoutes of its Gateway.
For each router (`nginx`, `gateway`) and each tool, a namespace of its own with the seed's
app (`examples/pulpocon-app`: 2 replicas, readiness probe, preStop sleep 5 s) as Deployment
`app` (`app: app, track: main`) behind Service `app`, and the tool's Canary in managed mode
(targetRef `app`; each tool keeps `app-primary` serving):

* canaryctl: `canaryctl operator` out of cluster, router `nginx` (Ingress `app`) or `gateway`
  (HTTPRoute `app`), steps setWeight 25, pause 10s, setWeight 50, pause 10s; analysis:
  webhooks only, a `rollout` hook each 5 s look, `failureLimit: 2`; defaults otherwise
  (drainDelay 10s).
* flagger: Flagger out of cluster, `-mesh-provider=nginx` (Ingress `app`, Flagger writes
  `app-canary`) or `gatewayapi:v1` (Flagger writes HTTPRoute `app` on the Gateway);
  `analysis: {interval: 10s, threshold: 2, stepWeight: 25, maxWeight: 50}` with the same
  `rollout` hook, no metrics (its nginx metrics need ingress-nginx's Prometheus series).

The same failure for both: the `rollout` webhook (a server in this process) answers 200 for
the good canary; for the bad one it answers 500 once the canary version has answered 30 of
the loops' requests (the canary failed its acceptance check after taking traffic). Both
tools' docs: a failing rollout hook is a failed check; `failureLimit`/`threshold` failed
checks roll back.

Measured per run (a bump of `app`'s VERSION: v1 -> v2 promoted, then v2 -> v3 rolled back):
two request loops through Traefik the whole time (a new connection per request, and
kept-alive connections like a real client), every answer's version or failure (no answer,
timeout, any non-2xx); the canary weight the route objects hold (polled every 0.2 s) and the
tool's phase; the canary's measured share while each weight held against that weight.

Run (root; one real node per host):
  make bench-traffic
  .venv/bin/python benchmarks/peers/traffic.py --routers nginx --tools canaryctl --keep
  .venv/bin/python benchmarks/peers/traffic.py --table benchmarks/results/traffic-x.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gzip
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import Ingress
from lightkube.types import PatchType

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))
import compare
import traffic_report as tr

from canaryctl.core.traffic import Outcome, Schedule, SplitMeter
from canaryctl.driver.probe import ProbeSettings, run_probe
from canaryctl.kube import manifests
from canaryctl.kube.canary import Canary
from canaryctl.kube.client import make_client
from canaryctl.routers._patch import HTTPRoute
from canaryctl.testenv import ClusterState, LocalCluster, binaries, images
from canaryctl.testenv.dataplane import on_real_node
from canaryctl.testenv.traefik import GATEWAY, NAMESPACE, state_of, user_route

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "pulpocon-app" / "app-v1.yaml"
REPLICAS = 2
VERSIONS = ("v1.0.0", "v2.0.0", "v3.0.0")
#: The bad canary fails its acceptance check once it has answered this many requests.
FAIL_AFTER = 30
CANARYCTL_STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "10s"}},
    {"setWeight": 50},
    {"pause": {"duration": "10s"}},
]
FLAGGER_ANALYSIS = {"interval": "10s", "threshold": 2, "stepWeight": 25, "maxWeight": 50}
#: Flagger's kubernetes provider is blue/green: iterations on the canary, no weights.
FLAGGER_BLUE_GREEN = {"interval": "10s", "threshold": 2, "iterations": 3}
TOOLS = ("canaryctl", "flagger")
ROUTERS = ("nginx", "gateway")
#: `kubernetes`: canaryctl's replicas router against Flagger's kubernetes provider, both
#: behind a plain Ingress to Service `app` (optional: `--routers nginx,gateway,kubernetes`).
FLAGGER_MESH = {"nginx": "nginx", "gateway": "gatewayapi:v1", "kubernetes": "kubernetes"}
CANARYCTL_ROUTER = {"nginx": "nginx", "gateway": "gateway", "kubernetes": "replicas"}
#: Phases after which the tool does nothing more for this revision.
DONE = {
    ("canaryctl", "promotion"): {"Succeeded"},
    ("canaryctl", "rollback"): {"RolledBack"},
    ("flagger", "promotion"): {"Succeeded"},
    ("flagger", "rollback"): {"Failed"},
}
RESTING = {"", "Succeeded", "RolledBack", "Failed", "Initialized", "Initializing"}

say = compare.say


# --- the acceptance check both tools call -------------------------------------------------


@dataclass
class Check:
    """What the hook answers for one namespace: pass, or fail once `version` answered
    `after` requests of the loops."""

    fail: bool = False
    version: str = ""
    after: int = FAIL_AFTER
    served: Callable[[str], int] = lambda _v: 0
    calls: list[tuple[float, int, str]] = field(default_factory=list)  # (time, status, phase)

    def verdict(self) -> tuple[int, str]:
        if not self.fail:
            return 200, "acceptance passed"
        served = self.served(self.version)
        if served >= self.after:
            return 500, f"{self.version} answered {served} requests: rejected (bad canary)"
        return 200, f"{self.version} answered {served} requests so far"


class Hooks:
    """An HTTP server on a loopback port answering `POST /check/<namespace>` (the tools run
    out of cluster, on this host)."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    phase = str(json.loads(body or b"{}").get("phase", ""))
                except ValueError:
                    phase = ""
                check = hooks.checks.get(self.path.rsplit("/", 1)[-1])
                status, text = check.verdict() if check else (404, "no such check")
                if check is not None:
                    check.calls.append((time.time(), status, phase))
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, namespace: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/check/{namespace}"

    def __enter__(self) -> Hooks:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the request loops and the poller -----------------------------------------------------


class Loop:
    """One steady request loop through Traefik in a thread (`canaryctl probe`'s engine)."""

    def __init__(self, name: str, url: str, host: str, rate: float, keep_alive: bool) -> None:
        self.name = name
        self.answers: list[tr.Answer] = []
        self.served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.settings = ProbeSettings(
            url, Schedule(rate, 1800.0), headers=(("Host", host),), timeout=5.0,
            keep_alive=keep_alive,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._run, name=f"loop-{name}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        start = time.time()

        def record(o: Outcome) -> None:
            answer = tr.Answer(start + o.sent, self.name, o.status, o.version, o.latency, o.error)
            with self._lock:
                self.answers.append(answer)
                if not answer.failed and answer.version:
                    self.served[answer.version] = self.served.get(answer.version, 0) + 1

        try:
            run_probe(self.settings, SplitMeter(), on_outcome=record, stop=self._stop)
        except BaseException as exc:  # reported by the run; the other loop goes on
            self.error = exc

    def start(self) -> Loop:
        self._thread.start()
        return self

    def stop(self) -> list[tr.Answer]:
        self._stop.set()
        self._thread.join(timeout=15)
        if self.error is not None:
            raise RuntimeError(f"request loop {self.name} stopped: {self.error!r}")
        with self._lock:
            return list(self.answers)


class Poller:
    """Every 0.2 s: the canary weight the route objects hold and the tool's phase."""

    def __init__(self, client: Client, run: Pair) -> None:
        self.client, self.run = client, run
        self.marks: list[tr.Mark] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="poller", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            with contextlib.suppress(Exception):  # an API hiccup: the next poll
                phase, tool_weight = self.run.tool_status(self.client)
                weight = self.run.route_weight(self.client)
                self.marks.append(tr.Mark(time.time(), weight, phase, tool_weight))

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> list[tr.Mark]:
        self._stop.set()
        self._thread.join(timeout=5)
        return list(self.marks)

    def phase(self) -> str:
        return self.marks[-1].phase if self.marks else ""


# --- one tool with one router -------------------------------------------------------------


@dataclass
class Pair:
    """One tool and one router in a namespace of their own."""

    tool: str
    router: str
    bed: Bed

    @property
    def namespace(self) -> str:
        return f"traffic-{self.tool}-{self.router}"

    @property
    def host(self) -> str:
        return f"{self.namespace}.test"

    # -- objects --

    def app(self, version: str) -> dict[str, Any]:
        doc = yaml.safe_load(APP.read_text())
        labels = {"app": "app", "track": "main"}
        doc["metadata"] = {"name": "app", "labels": {"app": "app"}}
        doc["spec"]["replicas"] = REPLICAS
        doc["spec"]["selector"] = {"matchLabels": labels}
        template = doc["spec"]["template"]
        template["metadata"]["labels"] = dict(labels)
        template["metadata"].pop("annotations", None)  # no Prometheus here
        container = template["spec"]["containers"][0]
        for env in container["env"]:
            if env["name"] == "VERSION":
                env["value"] = version
        return on_real_node(doc)

    def objects(self) -> list[dict[str, Any]]:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "app", "labels": {"app": "app"}},
            "spec": {
                "selector": {"app": "app"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        }
        docs = [service]
        if self.router in ("nginx", "kubernetes"):
            backend = {"service": {"name": "app", "port": {"name": "http"}}}
            docs.append({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "app"},
                "spec": {
                    "ingressClassName": "nginx",
                    "rules": [{"host": self.host, "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": backend}]}}],
                },
            })  # fmt: skip
        elif self.tool == "canaryctl":  # Flagger writes its HTTPRoute itself
            docs.append(user_route("app", self.host))
        return docs

    def canary(self, hook_url: str) -> Any:
        hook = {"name": "acceptance", "type": "rollout", "url": hook_url, "timeout": "5s"}
        meta = {"name": "app", "namespace": self.namespace}
        if self.tool == "canaryctl":
            router: dict[str, Any] = {"kind": CANARYCTL_ROUTER[self.router]}
            if self.router != "kubernetes":
                router["ingress" if self.router == "nginx" else "httproute"] = "app"
            spec = {
                "targetRef": {"kind": "Deployment", "name": "app"},
                "service": "app",
                "router": router,
                "steps": CANARYCTL_STEPS,
                "analysis": {"interval": "5s", "failureLimit": 2, "webhooks": [hook]},
            }
            return Canary(metadata=ObjectMeta(**meta), spec=spec)
        service: dict[str, Any] = {"port": 80, "targetPort": "http"}
        spec = {
            "provider": FLAGGER_MESH[self.router],
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
            "progressDeadlineSeconds": 60,
            "service": service,
            "analysis": {**FLAGGER_ANALYSIS, "webhooks": [hook]},
        }
        if self.router == "kubernetes":
            spec["analysis"] = {**FLAGGER_BLUE_GREEN, "webhooks": [hook]}
        elif self.router == "nginx":
            spec["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                  "name": "app"}  # fmt: skip
        else:
            service["gatewayRefs"] = [{"name": GATEWAY, "namespace": NAMESPACE}]
            service["hosts"] = [self.host]
        return compare.FlaggerCanary(metadata=ObjectMeta(**meta), spec=spec)

    def command(self, port: int) -> list[str]:
        kubeconfig = Path(self.bed.state.kubeconfig)
        if self.tool == "canaryctl":
            return compare._canaryctl_command(kubeconfig, port, self.namespace)
        make = compare._flagger_command(None, FLAGGER_MESH[self.router], self.namespace)
        return make(kubeconfig, port)

    # -- what the cluster says --

    def tool_status(self, client: Client) -> tuple[str, int | None]:
        kind = Canary if self.tool == "canaryctl" else compare.FlaggerCanary
        status = client.get(kind, "app", namespace=self.namespace).status or {}
        weight = status.get("weight" if self.tool == "canaryctl" else "canaryWeight")
        return str(status.get("phase") or ""), weight

    def route_weight(self, client: Client) -> int | None:
        try:
            if self.router == "kubernetes":
                return tr.endpoint_weight(self.ready_endpoints(client))
            if self.router == "nginx":
                ing = client.get(Ingress, "app-canary", namespace=self.namespace)
                return tr.nginx_weight(ing.to_dict())
            route = client.get(HTTPRoute, "app", namespace=self.namespace)
            return tr.gateway_weight(route.to_dict(), "app-canary")
        except ApiError as exc:
            if exc.status.code == 404:
                return 0
            raise

    def ready_endpoints(self, client: Client) -> dict[str, int]:
        """Ready endpoints of Service `app` by side: the target's pods (`canary`) or not."""
        labels = {"app": "app", "track": "main"}
        target = {p.metadata.name for p in client.list(Pod, namespace=self.namespace,
                                                       labels=labels)}  # fmt: skip
        slices = client.list(EndpointSlice, namespace=self.namespace,
                             labels={"kubernetes.io/service-name": "app"})  # fmt: skip
        ready = {"canary": 0, "stable": 0}
        for piece in slices:
            for ep in piece.endpoints or []:
                if ep.conditions is not None and ep.conditions.ready is False:
                    continue
                name = ep.targetRef.name if ep.targetRef else ""
                ready["canary" if name in target else "stable"] += 1
        return ready

    def settled(self, client: Client, version: str) -> bool:
        """The primary runs `version` with every replica ready and updated, and no pod of
        the target is left (both tools keep `app` at 0 between rollouts)."""
        primary = client.get(Deployment, "app-primary", namespace=self.namespace)
        env = primary.spec.template.spec.containers[0].env or []
        if not any(e.name == "VERSION" and e.value == version for e in env):
            return False
        st = primary.status
        want = primary.spec.replicas
        if not st or (st.observedGeneration or 0) < (primary.metadata.generation or 0):
            return False
        if not (st.readyReplicas == st.updatedReplicas == st.replicas == want):
            return False
        target = client.get(Deployment, "app", namespace=self.namespace)
        pods = client.list(Pod, namespace=self.namespace, labels={"app": "app", "track": "main"})
        return target.spec.replicas == 0 and not list(pods)


@dataclass
class Bed:
    state: ClusterState
    client: Client
    url: str
    hooks: Hooks
    rate: float
    keepalive_rate: float
    timeout: float


def wait(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ApiError, httpx.HTTPError):
            value = probe()
            if value:
                return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def answers_with(url: str, host: str, version: str, times: int = 10) -> bool:
    """`times` requests in a row answered by `version` through Traefik."""
    from canaryctl.core.traffic import version_of

    with httpx.Client(timeout=2, trust_env=False) as http:
        for _ in range(times):
            r = http.get(url, headers={"Host": host, "Connection": "close"})
            if r.status_code != 200 or version_of(r.headers, r.content) != version:
                return False
    return True


@contextlib.contextmanager
def tool_running(pair: Pair) -> Iterator[Path]:
    """The tool's process for the length of the block (SIGTERM, SIGKILL after 30 s); its
    log is kept after, with compare.py's."""
    log = Path(pair.bed.state.folder) / f"{pair.namespace}.log"
    with open(log, "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            pair.command(compare.free_port()), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield log
    finally:
        compare.stop_tool(proc)
        compare.keep_log(log, f"traffic-{pair.namespace}")
        if proc.returncode not in (0, -signal.SIGTERM, 143):
            say(f"{pair.namespace}: the tool exited {proc.returncode}; see its log")


def run_pair(pair: Pair) -> list[dict[str, Any]]:
    """Set up, initialise, then a promotion (v1 -> v2) and a rollback (v2 -> v3)."""
    client, ns, bed = pair.bed.client, pair.namespace, pair.bed
    from canaryctl.cli.demo_dataplane import drop_namespace, fresh_namespace

    fresh_namespace(client, ns)
    manifests.apply(client, [codecs.from_dict(d) for d in pair.objects()], ns)
    manifests.apply(client, [codecs.from_dict(pair.app(VERSIONS[0]))], ns)
    wait(f"{ns}: app ready", lambda: (client.get(Deployment, "app", namespace=ns).status
                                      .readyReplicas or 0) >= REPLICAS, 180)  # fmt: skip
    # Flagger's blue/green sends the canary no traffic through `app`: there the bad
    # canary's hook fails from its first call.
    check = bed.hooks.checks.setdefault(
        ns, Check(after=0 if pair.router == "kubernetes" else FAIL_AFTER)
    )
    client.create(pair.canary(bed.hooks.url(ns)), namespace=ns)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with tool_running(pair) as log:
        wait(
            f"{ns}: initialised",
            lambda: (
                pair.settled(client, VERSIONS[0])
                and (pair.tool != "flagger" or pair.tool_status(client)[0] == "Initialized")
            ),
            240,
        )
        wait(f"{ns}: route answers {VERSIONS[0]}",
             lambda: answers_with(bed.url, pair.host, VERSIONS[0]), 60)  # fmt: skip
        say(f"{ns}: initialised in {time.monotonic() - started:.0f} s")
        try:
            for scenario, old, new in (("promotion", *VERSIONS[:2]), ("rollback", *VERSIONS[1:])):
                runs.append(one_run(pair, check, scenario, old, new))
        finally:
            # While the tool runs: canaryctl's Canary has a finalizer only its operator lifts.
            remove_canary(pair)
    for run in runs:
        run["log"] = str(log)
    drop_namespace(client, ns)
    return runs


def remove_canary(pair: Pair) -> None:
    """Delete the tool's Canary and wait until it is gone; a finalizer still there after
    60 s is removed (the namespace goes next and must not hang)."""
    client, ns = pair.bed.client, pair.namespace
    kind = Canary if pair.tool == "canaryctl" else compare.FlaggerCanary

    def gone() -> bool:
        try:
            client.get(kind, "app", namespace=ns)
        except ApiError as exc:
            return exc.status.code == 404
        return False

    with contextlib.suppress(ApiError):
        client.delete(kind, "app", namespace=ns)
    try:
        wait(f"{ns}: Canary deleted", gone, 60)
    except TimeoutError:
        say(f"{ns}: the Canary kept its finalizer for 60 s; removing it")
        patch = {"metadata": {"finalizers": None}}
        with contextlib.suppress(ApiError):
            client.patch(kind, "app", patch, namespace=ns, patch_type=PatchType.MERGE)


def one_run(pair: Pair, check: Check, scenario: str, old: str, new: str) -> dict[str, Any]:
    """Loops on, bump `app` to `new`, wait until the tool is done and the cluster settled
    (the primary on `new` after a promotion, still on `old` after a rollback), 5 s more."""
    client, ns, bed = pair.bed.client, pair.namespace, pair.bed
    loops = [Loop("new-conn", bed.url, pair.host, bed.rate, keep_alive=False)]
    if bed.keepalive_rate > 0:
        loops.append(Loop("keep-alive", bed.url, pair.host, bed.keepalive_rate, keep_alive=True))
    check.fail, check.version = scenario == "rollback", new
    check.served = lambda v: sum(loop.served.get(v, 0) for loop in loops)
    check.calls.clear()
    poller = Poller(make_client(bed.state.kubeconfig), pair).start()
    for loop in loops:
        loop.start()
    time.sleep(3.0)  # a baseline: every answer from `old`
    bumped = time.time()
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "pulpocon-app", "env": [{"name": "VERSION", "value": new}]}]}}}}  # fmt: skip
    client.patch(Deployment, "app", patch, namespace=ns, patch_type=PatchType.STRATEGIC)
    say(f"{ns}: {scenario}: app bumped to {new}")
    done_phases = DONE[(pair.tool, scenario)]
    left_rest = threading.Event()

    def finished() -> bool:
        phase = poller.phase()
        if phase not in RESTING:
            left_rest.set()
        final = new if scenario == "promotion" else old
        return left_rest.is_set() and phase in done_phases and pair.settled(client, final)

    ended = "timeout"
    try:
        wait(f"{ns}: {scenario} done", finished, bed.timeout, every=0.25)
        ended = poller.phase()
    except TimeoutError as exc:
        say(str(exc))
    done_at = time.time()
    time.sleep(5.0)  # the end state: every answer from the primary
    answers = [a for loop in loops for a in loop.stop()]
    marks = poller.stop()
    canary, stable = new, old
    summary = tr.summarize(answers, marks, canary, stable, bumped)
    after = [a for a in answers if a.at >= done_at + 1.0]
    # The end state (from 1 s after the tool was done): who answers, and failures.
    end_state = Counter(a.code if a.failed else a.version for a in after)
    summary["after_end"] = dict(sorted(end_state.items()))
    first_fail = next((t for t, status, _ in check.calls if status != 200), None)
    # A rollback's reaction: from the first failed check to the routes at weight 0.
    back = None
    if first_fail is not None:
        back = next((m.at for m in marks if m.at >= first_fail and m.weight == 0), None)
    run = {
        "tool": pair.tool,
        "router": pair.router,
        "scenario": scenario,
        "from": old,
        "to": new,
        "ended": ended,
        "took_s": round(done_at - bumped, 1),
        "summary": summary,
        "timeline": tr.phase_changes(marks, bumped),
        "hook_calls": len(check.calls),
        "hook_first_failure_s": None if first_fail is None else round(first_fail - bumped, 1),
        "failed_check_to_weight_0_s": None if back is None else round(back - first_fail, 1),
        "raw": str(keep_raw(f"{ns}-{scenario}", answers, marks)),
    }
    shares = [(s["weight"], s["share_pct"]) for s in summary["steps"]]
    say(
        f"{ns}: {scenario} ended {ended} after {run['took_s']} s: {summary['failed']} of "
        f"{summary['requests']} failed; canary share per weight {shares}"
    )
    return run


def keep_raw(name: str, answers: list[tr.Answer], marks: list[tr.Mark]) -> Path:
    """Every answer and mark of a run, gzipped beside the tools' logs (for re-analysis)."""
    folder = binaries.cache_root() / "bench-peers-logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"traffic-{name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json.gz"
    data = {"answers": [dataclasses.astuple(a) for a in answers],
            "marks": [dataclasses.astuple(m) for m in marks]}  # fmt: skip
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    return path


# --- the whole run ------------------------------------------------------------------------


def config_text() -> dict[str, str]:
    return {
        "canaryctl": "canaryctl operator out of cluster (managed mode, targetRef app), router "
        f"nginx or gateway, steps {json.dumps(CANARYCTL_STEPS)}, analysis webhooks only "
        "(a rollout hook, looks every 5s, failureLimit 2), defaults otherwise (drainDelay 10s)",
        "flagger": f"Flagger {compare.FLAGGER_VERSION} out of cluster, -mesh-provider=nginx or "
        f"gatewayapi:v1, -log-level=info, defaults otherwise; analysis "
        f"{json.dumps(FLAGGER_ANALYSIS)} with the same rollout hook, no metrics",
        "workload": f"examples/pulpocon-app as Deployment app ({REPLICAS} replicas, readiness "
        "probe every 2 s, preStop sleep 5 s, grace 30 s) behind Service app, on the real node",
        "failure": f"the rollout hook answers 500 once the canary version has answered "
        f"{FAIL_AFTER} of the loops' requests (rollback run only; the kubernetes row: from "
        "its first call, as Flagger's blue/green sends the canary no traffic through app)",
        "kubernetes": "canaryctl router replicas (the same steps) against Flagger "
        f"-mesh-provider=kubernetes, analysis {json.dumps(FLAGGER_BLUE_GREEN)} (blue/green), "
        "both behind a plain Ingress to Service app",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument(
        "--rate", type=float, default=50.0, help="requests/s of the new-connection loop, per router"
    )
    parser.add_argument(
        "--keepalive-rate",
        type=float,
        default=25.0,
        help="requests/s of the keep-alive loop, per router (0: none)",
    )
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per scenario")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every tool and router")
    parser.add_argument("--name", default="bench-traffic", help="the local cluster's name")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, help="only print the table of a saved JSON file")
    args = parser.parse_args()  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.table:
        print(tr.table(json.loads(args.table.read_text())["runs"]))
        return
    # Written once at the end: an existing --out file is replaced, not added to.
    out, record = compare.results(args.out, "traffic", resume=False, config=config_text())
    cluster = LocalCluster(args.name, dataplane=True, progress=say)
    loads: list[float] = []
    try:
        state = cluster.up(timeout=300)
        proxy = state_of(state)
        if proxy is None:
            raise SystemExit("the data plane runs no Traefik")
        cluster.load_image(images.app_image())
        client = make_client(state.kubeconfig)
        compare.install_flagger_crd(client)
        with Hooks() as hooks:
            bed = Bed(state, client, proxy.url + "/", hooks, args.rate, args.keepalive_rate,
                      args.timeout)  # fmt: skip
            rounds = [(r, t) for r in range(args.repeat) for t in args.tools.split(",")]
            for repeat, tool in rounds:
                pairs = [Pair(tool, router, bed) for router in args.routers.split(",")]
                loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
                # The routers side by side (a namespace and a tool process each).
                with ThreadPoolExecutor(len(pairs)) as pool:
                    futures = [(pair, pool.submit(run_pair, pair)) for pair in pairs]
                    for pair, future in futures:
                        try:
                            runs = future.result()
                            for run in runs:
                                run["round"] = repeat + 1
                            record["runs"].extend(runs)
                        except Exception as exc:  # kept in the record; the others go on
                            say(f"{pair.namespace}: failed: {exc!r}")
                            record.setdefault("errors", []).append(
                                {"tool": pair.tool, "router": pair.router, "error": repr(exc)}
                            )
                loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
                record["load_1min"] = loads
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    finally:
        if not args.keep:
            cluster.down()
    print(tr.table(record["runs"]))
    print(f"saved {out}")


if __name__ == "__main__":
    main()

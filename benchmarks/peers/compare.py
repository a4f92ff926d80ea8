"""canaryctl's operator against Flagger on identical workloads, each on a fresh local cluster.

For each N and each tool: a new KWOK-only cluster whose API server writes an audit log of
the tool's own client identity (a client certificate of its own, cluster-admin), the same
N Services and 1-replica Deployments, one Canary each, then the tool's process:

* canaryctl: `canaryctl operator`, managed mode (`targetRef`), steps
  `[{setWeight: 50}, {pause: {duration: 30s}}]`;
* flagger: Flagger built from its Go module (benchmarks/peers/build.sh), out of cluster,
  `-mesh-provider=kubernetes -log-level=info` (its Helm chart's level), Canaries with
  `analysis: {interval: 10s, threshold: 2, iterations: 3}` (blue/green, no metrics);
* flagger-qps: the same with `-kubeconfig-qps`/`-kubeconfig-burst` raised 20x, so its client
  rate limit does not cap it.

Measured: time until every canary is initialised (primary serving, target at 0); then 60 s
idle: CPU from /proc, RSS, API requests per minute from the audit log (split by verb and
resource); then an image bump of 10% of the targets: the first write of the tool to an
object of each bumped canary after its bump (the API server's receive time), the time until
its Canary reports Succeeded, and the Events the tool recorded (sum of `count`) against the
events it logged. The 1-minute load average is sampled throughout (the machine may be
shared: the figures are the same run's, not a quiet machine's).

Run: make bench-peers, or
  .venv/bin/python benchmarks/peers/compare.py --sizes 100,300 --out benchmarks/results/x.json
  .venv/bin/python benchmarks/peers/compare.py --table benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec, ServicePort, ServiceSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event, Namespace, Service, ServiceAccount
from lightkube.types import PatchType

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The shared samplers one level up, appended: that folder holds a file named like the
# standard library's `operator`, which must not shadow it.
sys.path.append(str(Path(__file__).resolve().parents[1]))
import report
from sampling import Sampler

from canaryctl.kube.canary import Canary
from canaryctl.kube.client import make_client
from canaryctl.testenv import ClusterState, LocalCluster, binaries
from canaryctl.testenv.versions import KUBERNETES_VERSION, KWOK_VERSION

NS = "bench"
CLI = str(Path(sys.executable).with_name("canaryctl"))
PODS_PER_NODE = 250  # the testenv's KWOK nodes
FLAGGER_VERSION = os.environ.get("FLAGGER_VERSION", "v1.44.0")
FlaggerCanary = create_namespaced_resource("flagger.app", "v1beta1", "Canary", "canaries")
TERMINAL = {None, "", "Initializing", "Initialized", "Succeeded", "RolledBack", "Failed"}


def flagger_home() -> Path:
    return binaries.cache_root() / f"flagger-{FLAGGER_VERSION}"


@dataclass(frozen=True)
class Tool:
    """One operator under test: who it is to the API server and how it is run."""

    name: str
    user: str  # the CN of its client certificate
    canary_kind: Any
    version: str
    #: Canary resource body for target `name`.
    canary: Callable[[str], Any]
    #: Command line, given its kubeconfig and a free port.
    command: Callable[[Path, int], list[str]]
    #: Event source component, and a regex over its log lines that names each event it sent.
    event_api_version: str
    event_log: re.Pattern[str]
    config: str


def _canaryctl_canary(name: str) -> Any:
    spec = {
        "targetRef": {"kind": "Deployment", "name": name},
        "service": name,
        "steps": [{"setWeight": 50}, {"pause": {"duration": "30s"}}],
        "health": {"readyDeadline": "60s"},
    }
    return Canary(metadata=ObjectMeta(name=name, namespace=NS), spec=spec)


def _flagger_canary(name: str) -> Any:
    spec = {
        "provider": "kubernetes",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "progressDeadlineSeconds": 60,
        "service": {"port": 80},
        "analysis": {"interval": "10s", "threshold": 2, "iterations": 3},
    }
    return FlaggerCanary(metadata=ObjectMeta(name=name, namespace=NS), spec=spec)


def _flagger_command(
    qps: int | None, mesh: str = "kubernetes", namespace: str = NS
) -> Callable[[Path, int], list[str]]:
    """Flagger out of cluster, watching `namespace`, with mesh provider `mesh` (`kubernetes`,
    `nginx`, `gatewayapi:v1`, ...); `qps` raises its client's rate limit."""

    def command(kubeconfig: Path, port: int) -> list[str]:
        args = [
            str(flagger_home() / "bin" / "flagger"),
            f"-kubeconfig={kubeconfig}",
            f"-mesh-provider={mesh}",
            f"-namespace={namespace}",
            "-log-level=info",
            f"-port={port}",
            "-metrics-server=http://127.0.0.1:1",  # no metrics in these canaries
        ]
        if qps:
            args += [f"-kubeconfig-qps={qps}", f"-kubeconfig-burst={int(qps * 2.5)}"]
        return args

    return command


def _canaryctl_command(kubeconfig: Path, port: int, namespace: str = NS) -> list[str]:
    """`canaryctl operator` out of cluster, watching (and leasing in) `namespace`."""
    return [
        CLI, "operator", "--kubeconfig", str(kubeconfig), "--namespace", namespace,
        "--lease-namespace", namespace, "--metrics-port", str(port), "--health-port", "0",
    ]  # fmt: skip


def _canaryctl_version() -> str:
    from importlib.metadata import version

    return version("canaryctl")


# Flagger logs each event it records with a "canary" field (name.namespace) and the message.
FLAGGER_EVENT_LOG = re.compile(r'"canary":"(?P<name>[^".]+)\.' + NS + '"')
CANARYCTL_EVENT_LOG = re.compile(r"canaryctl\.operator\.events: " + NS + r"/(?P<name>\S+) \w+ ")

TOOLS: dict[str, Tool] = {
    "canaryctl": Tool(
        "canaryctl", "canaryctl-operator", Canary, "", _canaryctl_canary, _canaryctl_command,
        "canaryctl.dev/", CANARYCTL_EVENT_LOG,
        "canaryctl operator, managed mode (targetRef), replicas router, steps "
        "[setWeight 50, pause 30s], health gates only (no metrics)",
    ),
    "flagger": Tool(
        "flagger", "flagger", FlaggerCanary, FLAGGER_VERSION, _flagger_canary,
        _flagger_command(None), "flagger.app/", FLAGGER_EVENT_LOG,
        "Flagger -mesh-provider=kubernetes -log-level=info, defaults otherwise (client QPS 100, "
        "burst 250, threadiness 2, control loop 10 s); analysis interval 10s, 3 iterations, "
        "threshold 2, no metrics",
    ),
    "flagger-qps": Tool(
        "flagger-qps", "flagger", FlaggerCanary, FLAGGER_VERSION, _flagger_canary,
        _flagger_command(2000), "flagger.app/", FLAGGER_EVENT_LOG,
        "as flagger, with -kubeconfig-qps=2000 -kubeconfig-burst=5000",
    ),
}  # fmt: skip


# --- the run -----------------------------------------------------------------------------


def parallel(fn: Callable[[Any], Any], items: list[Any], workers: int = 8) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


def workload(name: str, replicas: int = 1, image: str = "app:1") -> tuple[Service, Deployment]:
    """Service `name` and its target Deployment `name` in NS, the same for every tool.

    Shared by every benchmark that manages canaries (this one, failures.py and
    ../operator.py), so all of them measure the same objects."""
    # The Service selects on `app` only; the pods carry one more label, so canaryctl can
    # tell a primary's pods from the target's (Flagger renames `app` on its primary).
    labels = {"app": name, "track": "main"}
    svc = Service(
        metadata=ObjectMeta(name=name, namespace=NS),
        spec=ServiceSpec(selector={"app": name}, ports=[ServicePort(port=80)]),
    )
    dep = Deployment(
        metadata=ObjectMeta(name=name, namespace=NS),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="app", image=image)]),
            ),
        ),
    )
    return svc, dep


def initialised(client: Client, n: int) -> int:
    """Canaries whose primary serves and whose target is scaled to 0 (either tool)."""
    deps = {d.metadata.name: d for d in client.list(Deployment, namespace=NS)}
    done = 0
    for i in range(n):
        name = f"app-{i:04d}"
        primary, target = deps.get(f"{name}-primary"), deps.get(name)
        if primary is None or target is None or not primary.status:
            continue
        done += (primary.status.readyReplicas or 0) >= 1 and target.spec.replicas == 0
    return done


def phases(client: Client, kind: Any) -> dict[str, str]:
    return {
        c.metadata.name: ((c.status or {}).get("phase") or "")
        for c in client.list(kind, namespace=NS)
    }


def watch_phases(
    client: Client, kind: Any, names: set[str], moved: dict[str, float], done: dict[str, float]
) -> None:
    """Daemon thread: when each bumped canary left its resting phase and reached Succeeded."""
    while True:
        try:
            for _, obj in client.watch(kind, namespace=NS):
                name = obj.metadata.name
                phase = (obj.status or {}).get("phase")
                if name not in names:
                    continue
                now = time.time()
                if phase not in TERMINAL:
                    moved.setdefault(name, now)
                elif phase == "Succeeded" and name in moved:
                    done.setdefault(name, now)
        except Exception:  # a watch the server closed (any HTTP library error): watch again
            time.sleep(0.5)


def install_flagger_crd(client: Client) -> None:
    """Flagger's CRDs (Canary, MetricTemplate, AlertProvider) from its module source; one
    already there (a kept cluster) is left as it is."""
    crd_file = flagger_home() / "crds" / "canary.yaml"
    if not crd_file.exists():
        raise SystemExit(f"no Flagger CRD at {crd_file}: run benchmarks/peers/build.sh first")
    for doc in yaml.safe_load_all(crd_file.read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            try:
                client.create(CustomResourceDefinition.from_dict(doc))
            except ApiError as exc:
                if exc.status.code != 409:
                    raise
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        crd = client.get(CustomResourceDefinition, "canaries.flagger.app")
        conds = (crd.status.conditions if crd.status else None) or []
        if any(c.type == "Established" and c.status == "True" for c in conds):
            return
        time.sleep(0.5)
    raise RuntimeError("the Flagger CRD was not established within 60 s")


def log_events(path: Path, pattern: re.Pattern[str], names: set[str], since: float) -> int:
    """Events the tool logged for `names` at or after `since` (its own log's time stamps)."""
    count = 0
    for line in path.read_text(errors="replace").splitlines():
        m = pattern.search(line)
        if not m or m.group("name") not in names:
            continue
        stamp = _log_time(line)
        if stamp is not None and stamp >= since - 0.5:
            count += 1
    return count


def _log_time(line: str) -> float | None:
    m = re.search(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)[.,](\d+)", line)
    if not m:
        return None
    stamp = dt.datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}.{m.group(3)[:6]}")
    return stamp.replace(tzinfo=dt.UTC).timestamp()


def api_events(client: Client, api_version: str, names: set[str], since: float) -> int:
    """Events about the tool's Canaries `names` last seen at or after `since` (sum of count)."""
    total = 0
    for ev in client.list(Event, namespace=NS):
        ref = ev.involvedObject
        if not (ref.apiVersion or "").startswith(api_version) or ref.name not in names:
            continue
        last = ev.lastTimestamp or ev.eventTime or ev.metadata.creationTimestamp
        if last is not None and last.timestamp() >= since - 1:
            total += ev.count or 1
    return total


def queue_waits(port: int) -> dict[str, dict[str, float]]:
    """canaryctl's own histogram of the time due reconciles waited for a worker, per lane:
    {lane: {"count", "sum", "le_0.1", ...}} (cumulative bucket counts, as exported)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "canaryctl_reconcile_queue_seconds":
            continue
        for sample in family.samples:
            lane = out.setdefault(sample.labels.get("lane", ""), {})
            if sample.name.endswith("_count"):
                lane["count"] = sample.value
            elif sample.name.endswith("_sum"):
                lane["sum"] = sample.value
            elif sample.name.endswith("_bucket"):
                lane[f"le_{sample.labels['le']}"] = sample.value
    return out


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def keep_log(path: Path, name: str) -> Path:
    """A copy of the tool's log outside the cluster's folder (removed by `down`)."""
    folder = binaries.cache_root() / "bench-peers-logs"
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / f"{name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log"
    if path.exists():
        kept.write_bytes(path.read_bytes())
    return kept


def fresh_cluster(name: str, tool: Tool, nodes: int = 2) -> tuple[LocalCluster, ClusterState]:
    """A new KWOK-only cluster whose API server audits `tool`'s client identity (whatever a
    run of the same name left behind is removed first)."""
    cluster = LocalCluster(name, nodes=nodes, audit_users=(tool.user,), progress=lambda _m: None)
    cluster.down()
    return cluster, cluster.up(timeout=180)


def prepare_namespace(client: Client, tool: Tool) -> None:
    """The tool's CRD (Flagger's; canaryctl's comes with the test bed) and the namespace,
    once its default ServiceAccount exists (pods cannot be created before)."""
    if tool.canary_kind is FlaggerCanary:
        install_flagger_crd(client)
    client.create(Namespace(metadata=ObjectMeta(name=NS)))
    while not list(client.list(ServiceAccount, namespace=NS)):
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_tool(
    tool: Tool, state: ClusterState, log_path: Path, port: int, append: bool = False
) -> subprocess.Popen[bytes]:
    """The tool's process under its own client identity, stdout and stderr to `log_path`
    (appended to with `append`: a restarted process)."""
    with open(log_path, "ab" if append else "wb") as log:  # the child keeps its own copy
        return subprocess.Popen(
            tool.command(state.user_kubeconfig(tool.user), port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_tool(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 30 s (nothing to do for a process already gone)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_one(tool: Tool, n: int, idle: float, wave_timeout: float) -> dict[str, Any]:
    """One tool at one N on a fresh cluster; the cluster and the tool are stopped after."""
    say(f"{tool.name} N={n}: cluster up")
    probe = Sampler()  # the load average from now on; the tool's process once started
    nodes = max(2, math.ceil((n * 2.2 + 50) / PODS_PER_NODE))
    cluster, state = fresh_cluster(f"bench-peers-{tool.name}-{n}", tool, nodes)
    proc: subprocess.Popen[bytes] | None = None
    log_path = Path(state.folder) / f"{tool.name}.log"
    try:
        client = make_client(state.kubeconfig)
        prepare_namespace(client, tool)
        names = [f"app-{i:04d}" for i in range(n)]
        built = [workload(name) for name in names]
        parallel(lambda o: client.create(o[0], namespace=NS), built)
        parallel(lambda o: client.create(o[1], namespace=NS), built)
        parallel(lambda name: client.create(tool.canary(name), namespace=NS), names)
        port = free_port()
        started = time.monotonic()
        proc = start_tool(tool, state, log_path, port)
        probe.attach(proc.pid)
        say(f"{tool.name} N={n}: started, waiting for {n} canaries to initialise")
        while True:
            time.sleep(2)
            if proc.poll() is not None:
                raise RuntimeError(f"{tool.name} exited ({proc.returncode}); see {log_path}")
            try:
                # Flagger also reports it: Initialized once primary and services are made.
                if initialised(client, n) >= n and (
                    tool.canary_kind is not FlaggerCanary
                    or all(p == "Initialized" for p in phases(client, FlaggerCanary).values())
                ):
                    break
            except Exception:  # the API server busy: look again
                pass
            if time.monotonic() - started > 1200 or (
                tool.canary_kind is Canary and "InvalidSpec" in log_path.read_text(errors="replace")
            ):
                raise RuntimeError(f"{tool.name}: not all {n} canaries initialised; see {log_path}")
        init_s = time.monotonic() - started
        say(f"{tool.name} N={n}: initialised in {init_s:.0f} s; idle {idle:.0f} s")
        time.sleep(5)  # the last status writes of the initialisation settle

        idle_start = probe.mark()
        time.sleep(idle)
        idle_end = probe.mark()
        idle_rss = probe.rss_mib()

        bumped = names[::10]
        moved: dict[str, float] = {}
        done: dict[str, float] = {}
        threading.Thread(
            target=watch_phases,
            args=(make_client(state.kubeconfig), tool.canary_kind, set(bumped), moved, done),
            daemon=True,
        ).start()
        time.sleep(2)
        bumped_at: dict[str, float] = {}
        patch = {
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}
        }

        def bump(name: str) -> None:
            bumped_at[name] = time.time()
            client.patch(Deployment, name, patch, namespace=NS, patch_type=PatchType.STRATEGIC)

        say(f"{tool.name} N={n}: bumping {len(bumped)} targets")
        wave_start = probe.mark()
        parallel(bump, bumped)
        deadline = time.monotonic() + wave_timeout
        while time.monotonic() < deadline and len(done) < len(bumped):
            time.sleep(1)
        wave_end = probe.mark()
        time.sleep(3)  # the last events of the wave
        peak_rss = probe.peak_rss_mib()
        queued = queue_waits(port) if tool.canary_kind is Canary else {}
        delivered = api_events(client, tool.event_api_version, set(bumped), wave_start.at)
        logged = log_events(log_path, tool.event_log, set(bumped), wave_start.at)
    finally:
        stop_tool(proc)
        loads = probe.stop()
        audit = report.parse_audit(state.audit_log.read_text(errors="replace").splitlines())
        kept = keep_log(log_path, f"{tool.name}-{n}")
        keep_log(state.audit_log, f"{tool.name}-{n}-audit")
        cluster.down()

    idle_t0, idle_t1, wave_t0, wave_t1 = idle_start.at, idle_end.at, wave_start.at, wave_end.at
    idle_req, idle_split = report.per_minute(audit, tool.user, idle_t0, idle_t1)
    wave_req, wave_split = report.per_minute(audit, tool.user, wave_t0, wave_t1)
    react = report.first_writes(audit, tool.user, bumped_at)
    react50, react99 = report.percentiles(react.values())
    # Where a reaction's time goes: until the tool first asks about the canary's objects
    # (watch delivery and its queue), then until it writes (its own requests before that).
    looked = report.first_requests(audit, tool.user, bumped_at)
    look50, look99 = report.percentiles(looked.values())
    look_to_write = [react[k] - looked[k] for k in react if k in looked]
    done50, done99 = report.percentiles(done[k] - bumped_at[k] for k in done)
    return {
        "tool": tool.name,
        "version": tool.version or _canaryctl_version(),
        "config": tool.config,
        "n": n,
        "load": loads,
        "load_range": f"{loads['min']:.1f}-{loads['max']:.1f}",
        "figures": {
            "init_s": init_s,
            "idle_cpu_s_per_min": Sampler.rates(idle_start, idle_end)[0],
            "idle_rss_mib": idle_rss,
            "peak_rss_mib": peak_rss,
            "idle_requests_per_min": idle_req,
            "wave_requests_per_min": wave_req,
            "wave_cpu_s_per_min": Sampler.rates(wave_start, wave_end)[0],
            "react_p50_s": react50,
            "react_p99_s": react99,
            "done_p50_s": done50,
            "done_p99_s": done99,
            "events_delivered_pct": 100.0 * delivered / logged if logged else math.nan,
        },
        "log": str(kept),
        "bumped": len(bumped),
        "reacted": len(react),
        "succeeded": len(done),
        "wave_s": wave_t1 - wave_t0,
        "events": {"delivered": delivered, "logged": logged},
        "reaction": {
            "first_request_p50_s": look50,
            "first_request_p99_s": look99,
            "request_to_write_p50_s": report.percentiles(look_to_write)[0],
            "request_to_write_p99_s": report.percentiles(look_to_write)[1],
            "queue_wait": queued,
        },
        "idle_split_per_min": dict(list(idle_split.items())[:12]),
        "wave_split_per_min": dict(list(wave_split.items())[:12]),
    }


def machine() -> dict[str, Any]:
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return {
        "host_cpus": os.cpu_count(),
        "mem_gib": round(int(mem) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kubernetes": KUBERNETES_VERSION,
        "kwok": KWOK_VERSION,
        "note": "shared development machine: other work ran during the runs (see load)",
    }


def results(
    out: Path | None, prefix: str, stamp: str = "%Y-%m-%dT%H%M", resume: bool = True, **fields: Any
) -> tuple[Path, dict[str, Any]]:
    """A benchmark's results file and the record to save in it (shared by the benchmarks
    here): `out`, or benchmarks/results/<prefix>-<now as stamp>.json. The record is the
    file's own when it exists and `resume` is set (runs are added to it), else a new one:
    date, machine, command line, then `fields`, and no runs yet."""
    now = dt.datetime.now(dt.UTC)
    out = out or Path(__file__).resolve().parent.parent / "results" / f"{prefix}-{now:{stamp}}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if resume and out.exists():
        return out, json.loads(out.read_text())
    record = {
        "date": now.isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(sys.argv),
        **fields,
        "runs": [],
    }
    return out, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300")
    parser.add_argument("--tools", default="canaryctl,flagger,flagger-qps")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    parser.add_argument("--wave-timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, help="JSON file of the results (appended per run)")
    parser.add_argument("--table", type=Path, help="only print the table of a saved JSON file")
    parser.add_argument(
        "--label",
        help="suffix of the tool's name in the saved rows, e.g. `before` for canaryctl run "
        "from another checkout with that checkout's Python (a before/after column)",
    )
    args = parser.parse_args()
    # SIGTERM (e.g. a time-out) ends like Ctrl-C: the tool and its cluster are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.table:
        print(report.table(json.loads(args.table.read_text())["runs"]))
        return
    out, record = results(args.out, "peers")  # an existing file: runs are added to it
    for n in (int(s) for s in args.sizes.split(",")):
        for name in args.tools.split(","):
            row = run_one(TOOLS[name], n, args.idle, args.wave_timeout)
            if args.label:
                row["tool"] = f"{name}-{args.label}"
            record["runs"].append(row)
            out.write_text(json.dumps(record, indent=2, default=str) + "\n")
            print(json.dumps(row, default=str), file=sys.stderr, flush=True)
    print(report.table(record["runs"]))
    print(f"saved {out}")


if __name__ == "__main__":
    main()

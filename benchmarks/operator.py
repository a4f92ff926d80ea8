"""Operator cost on the local control plane: N managed Canary resources (KWOK pods, 1+1
replicas each), one `canaryctl operator` process.

For each N it prints: CPU seconds per minute and API requests per minute of the operator
while idle and during a wave of image bumps to 10% of the canaries, its peak RSS, and the
latency from an image bump to the first weight step (p50/p99), plus the time to
initialise all N (create every primary). API requests are counted by the operator's own
client (`canaryctl_api_requests_total`; the long-lived watches are not requests per
minute and are listed apart). The Flagger figures to compare with are in
benchmarks/README.md.

Run: make bench-operator, or nice -n 10 .venv/bin/python -P benchmarks/operator.py [--sizes 100]
(-P: this file is named like the standard library module `operator`)
"""

from __future__ import annotations

import argparse
import math
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Service, ServiceAccount
from lightkube.types import PatchType
from prometheus_client.parser import text_string_to_metric_families

from canaryctl.kube.canary import Canary
from canaryctl.kube.client import make_client
from canaryctl.testenv import LocalCluster

# `python -P` (this file is named like the standard library's `operator`): the helpers
# beside it are found at the end of the path, after the standard library. The workload
# and the cluster reads are the side-by-side benchmark's (peers/compare.py), so both
# measure the same objects.
sys.path.append(str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent / "peers"))
from compare import CLI, NS, PODS_PER_NODE, initialised, parallel, workload
from sampling import Sampler


def objects(i: int) -> tuple[Service, Deployment, Any]:
    """Service, target Deployment (1 replica) and managed Canary of canary number i."""
    name = f"app-{i:04d}"
    svc, dep = workload(name)
    spec = {
        "targetRef": {"kind": "Deployment", "name": name},
        "service": name,
        "steps": [{"setWeight": 50}, {"pause": {"duration": "10s"}}],
        "health": {"readyDeadline": "60s"},
    }
    return svc, dep, Canary(metadata=ObjectMeta(name=name, namespace=NS), spec=spec)


def metric_total(port: int, name: str) -> float:
    """The sum of a metric's samples on the operator's /metrics (e.g. its request counter)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def watch_rollouts(client: Client, names: set[str], started: dict[str, float],
                   weighted: dict[str, float]) -> None:  # fmt: skip
    """Watch the Canaries (a daemon thread): when each started a rollout (the operator's
    first reaction: decision stored, canary being scaled) and reached its first weight."""
    while True:
        try:
            for _, obj in client.watch(Canary, namespace=NS):
                name, status = obj.metadata.name, obj.status or {}
                if name not in names:
                    continue
                now = time.time()
                if status.get("phase") not in (None, "Succeeded", "RolledBack"):
                    started.setdefault(name, now)
                if (status.get("weight") or 0) > 0:
                    weighted.setdefault(name, now)
        except Exception:  # a watch dropped by the server (any HTTP library error): re-watch
            continue


def percentiles(values: list[float]) -> tuple[float, float]:
    """(p50, p99) of the values (nan when empty)."""
    if not values:
        return float("nan"), float("nan")
    ordered = sorted(values)
    return statistics.median(ordered), ordered[
        min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)
    ]


def run_size(n: int, idle: float, wave_window: float) -> dict[str, Any]:
    # every target has a pod until its primary serves: room for 2 pods per canary and the wave
    nodes = max(2, math.ceil((n * 2.2 + 50) / PODS_PER_NODE))
    cluster = LocalCluster(f"bench-operator-{n}", nodes=nodes, progress=lambda _m: None)
    state = cluster.up(timeout=180)
    op = None
    try:
        client = make_client(state.kubeconfig)
        client.create(Namespace(metadata=ObjectMeta(name=NS)))
        while not list(client.list(ServiceAccount, namespace=NS)):
            time.sleep(0.1)
        built = [objects(i) for i in range(n)]
        parallel(lambda o: client.create(o[0], namespace=NS), built)
        parallel(lambda o: client.create(o[1], namespace=NS), built)
        while sum(1 for _ in client.list(Deployment, namespace=NS)) < n:
            time.sleep(0.5)
        parallel(lambda o: client.create(o[2], namespace=NS), built)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = open(Path(state.folder) / "operator.log", "w")  # noqa: SIM115 (kept open)
        op = subprocess.Popen(
            [CLI, "operator", "--kubeconfig", str(state.kubeconfig), "--namespace", NS,
             "--lease-namespace", NS, "--metrics-port", str(port), "--health-port", "0"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        probe = Sampler(op.pid, requests=lambda: metric_total(port, "canaryctl_api_requests_total"))
        started = time.monotonic()
        while True:
            time.sleep(2)
            try:
                if initialised(client, n) >= n:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 900:
                raise RuntimeError(f"not all {n} canaries initialised within 900 s")
        init_s = time.monotonic() - started
        time.sleep(5)  # let the last status writes settle
        idle_cpu, idle_req = probe.window(idle)

        bumped = [f"app-{i:04d}" for i in range(0, n, 10)]
        started: dict[str, float] = {}
        weighted: dict[str, float] = {}
        threading.Thread(
            target=watch_rollouts,
            args=(make_client(state.kubeconfig), set(bumped), started, weighted),
            daemon=True,
        ).start()
        time.sleep(1)
        bumped_at: dict[str, float] = {}
        wave_start = probe.mark()
        patch = {
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}
        }

        def bump(name: str) -> None:
            bumped_at[name] = time.time()
            client.patch(Deployment, name, patch, namespace=NS, patch_type=PatchType.STRATEGIC)

        parallel(bump, bumped)
        deadline = time.monotonic() + wave_window
        while time.monotonic() < deadline:
            time.sleep(1)
        wave_cpu, wave_req = probe.rates(wave_start, probe.mark())
        react50, react99 = percentiles([started[k] - bumped_at[k] for k in started])
        step50, step99 = percentiles([weighted[k] - bumped_at[k] for k in weighted])
        return {
            "n": n,
            "init_s": init_s,
            "idle_cpu": idle_cpu,
            "idle_req": idle_req,
            "wave_cpu": wave_cpu,
            "wave_req": wave_req,
            "rss": probe.peak_rss_mib(),
            "load": probe.stop(),
            "reached": f"{len(weighted)}/{len(bumped)}",
            "react": (react50, react99),
            "step": (step50, step99),
        }
    finally:
        if op is not None and op.poll() is None:
            op.terminate()
            op.wait(timeout=60)
        cluster.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    parser.add_argument("--wave", type=float, default=60.0, help="seconds after the bumps")
    args = parser.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        row = run_size(n, args.idle, args.wave)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    print(
        "| N | init all | idle CPU-s/min | idle API req/min | wave CPU-s/min | wave API req/min "
        "| peak RSS MiB | bump -> rollout started p50 / p99 | bump -> first weight step p50 / p99 "
        "| reached |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n']} | {r['init_s']:.0f} s | {r['idle_cpu']:.2f} | {r['idle_req']:.0f} "
            f"| {r['wave_cpu']:.2f} | {r['wave_req']:.0f} | {r['rss']:.0f} "
            f"| {r['react'][0]:.2f} s / {r['react'][1]:.2f} s "
            f"| {r['step'][0]:.2f} s / {r['step'][1]:.2f} s | {r['reached']} |"
        )


if __name__ == "__main__":
    main()

"""Rollout cost on the local control plane: wall time and API requests of a 3-step canary,
against a baseline in the same run (the seed's steps scripted by hand, same poll interval),
and `canaryctl --help` start-up against a bare Python start-up.

Run: .venv/bin/python benchmarks/rollout.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from canaryctl.core.models import quick_spec
from canaryctl.driver.engine import Engine
from canaryctl.kube import manifests, workloads
from canaryctl.kube.client import make_client
from canaryctl.testenv import LocalCluster

SEED = Path(__file__).resolve().parent.parent / "examples" / "pulpocon-app"
POLL = 0.5


def counting(client: Client) -> Callable[[], int]:
    """Count HTTP requests the client sends (lightkube's underlying HTTP client hooks)."""
    seen = [0]

    def hook(_request: object) -> None:
        seen[0] += 1

    client._client._client.event_hooks["request"].append(hook)  # private, benchmark only
    return lambda: seen[0]


def fresh(client: Client, ns: str) -> None:
    """A namespace with the seed's starting point: v1 x10 ready, v2 x1 applied."""
    client.create(Namespace(metadata=ObjectMeta(name=ns)))
    while not list(client.list(ServiceAccount, namespace=ns)):  # pods need it
        time.sleep(0.1)
    files = [SEED / "service.yaml", SEED / "app-v1.yaml", SEED / "app-v2.yaml"]
    manifests.apply(client, manifests.load(files), ns)
    while workloads.read_deployment(client, "pulpocon-app-v1", ns).ready_replicas < 10:
        time.sleep(0.2)


def by_hand(client: Client, ns: str) -> None:
    """The seed's steps as a script would do them: scale, poll until ready, scale..."""

    def wait(name: str, want: int) -> None:
        while workloads.read_deployment(client, name, ns).ready_replicas < want:
            time.sleep(POLL)

    for canary, stable in ((1, 9), (5, 5), (10, 0)):
        workloads.scale(client, "pulpocon-app-v2", ns, canary)
        wait("pulpocon-app-v2", canary)
        workloads.scale(client, "pulpocon-app-v1", ns, stable)
    workloads.delete_deployment(client, "pulpocon-app-v1", ns)


def with_canaryctl(client: Client, ns: str) -> int:
    spec = quick_spec("bench", ns, "pulpocon-app-v1", "pulpocon-app-v2", "pulpocon-app",
                      steps="10,50,100", pause=None)  # fmt: skip
    engine = Engine(client, spec, record_events=True)
    ticks = [0]
    original = engine.tick

    def tick():
        ticks[0] += 1
        return original()

    engine.tick = tick  # type: ignore[method-assign]
    status = engine.run(POLL)
    assert status.phase.value == "Succeeded", status.message
    return ticks[0]


def startup(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    state = LocalCluster("bench").up()
    client = make_client(state.kubeconfig)
    count = counting(client)
    rows = []
    for i in range(args.runs):
        for label, fn in (("by hand (baseline)", by_hand), ("canaryctl rollout", with_canaryctl)):
            ns = f"bench-{int(time.time())}-{i}-{label.split()[0]}"
            fresh(client, ns)
            before, t0 = count(), time.perf_counter()
            ticks = fn(client, ns)
            rows.append((label, time.perf_counter() - t0, count() - before, ticks))
            client.delete(Namespace, ns)
    print(f"3-step canary (10/50/100, no pauses, poll {POLL}s), {args.runs} runs, median:")
    base = None
    for label in ("by hand (baseline)", "canaryctl rollout"):
        sel = [r for r in rows if r[0] == label]
        wall = statistics.median(r[1] for r in sel)
        reqs = statistics.median(r[2] for r in sel)
        ticks = [r[3] for r in sel if r[3]]
        base = base or wall
        extra = (
            f", {statistics.median(ticks):.0f} ticks, {reqs / 3:.0f} requests/step" if ticks else ""
        )
        extra += f", {reqs / statistics.median(ticks):.1f} requests/tick" if ticks else ""
        print(f"  {label:20s} {wall:6.1f}s  ({wall / base:.2f}x)  {reqs:5.0f} API requests{extra}")
    venv = Path(sys.executable).parent
    py = startup([sys.executable, "-c", "pass"], 10)
    cli = startup([str(venv / "canaryctl"), "--help"], 10)
    print(f"start-up, median of 10: python -c pass {py * 1000:.0f} ms; "
          f"canaryctl --help {cli * 1000:.0f} ms ({cli / py:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()

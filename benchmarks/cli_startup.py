"""CLI start-up and `canaryctl get` (list) on the local control plane, against baselines
run in the same process: a bare Python start, `kubectl get configmaps -A`, and a bare
lightkube list (import lightkube, read the kubeconfig, list ConfigMaps).

Targets: `canaryctl --help` and `canaryctl get` within 150 ms of `python -c pass`;
`canaryctl get -A` under 300 ms wall on the local cluster.

Run: .venv/bin/python benchmarks/cli_startup.py [--runs 15] [--records 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lightkube.resources.core_v1 import Namespace

from canaryctl.kube.client import make_client
from canaryctl.kube.store import ConfigMapStore, Record
from canaryctl.testenv import LocalCluster, binaries

BARE_LIST = (
    "from lightkube import Client, KubeConfig\n"
    "from lightkube.resources.core_v1 import ConfigMap\n"
    "import os\n"
    "c = Client(KubeConfig.from_file(os.environ['KUBECONFIG']))\n"
    "print(len(list(c.list(ConfigMap, namespace='*'))))\n"
)


def run(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    """Median wall and CPU (user+sys of the child) seconds of a command."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def seed_records(kubeconfig: Path, count: int) -> str:
    """`count` stored rollouts (ConfigMap records) in a fresh namespace, as `get` sees them."""
    client = make_client(kubeconfig)
    ns = f"bench-get-{int(time.time())}"
    client.create(Namespace(metadata={"name": ns}))
    store = ConfigMapStore(client)
    for i in range(count):
        app = f"app{i}"
        spec = {"name": app, "namespace": ns, "stable": f"{app}-v1", "canary": f"{app}-v2",
                "service": app, "steps": [{"setWeight": 10}]}  # fmt: skip
        status = {"phase": "Progressing", "stepIndex": 0, "weight": 10}
        store.create(Record(name=f"app{i}", namespace=ns, spec=spec, status=status))
    return ns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--cluster", default="bench", help="testenv name (reused if running)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()
    cluster = LocalCluster(args.cluster)
    state = cluster.up()
    ns = seed_records(state.kubeconfig, args.records)
    env = {**os.environ, "KUBECONFIG": str(state.kubeconfig)}
    venv = Path(sys.executable).parent
    kubectl = str(binaries.ensure()["kubectl"])
    cases = [
        ("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
        ("bare lightkube list (baseline)", [sys.executable, "-c", BARE_LIST]),
        ("kubectl get configmaps -A (baseline)", [kubectl, "get", "configmaps", "-A"]),
        ("canaryctl --help", [str(venv / "canaryctl"), "--help"]),
        ("canaryctl get --help", [str(venv / "canaryctl"), "get", "--help"]),
        ("canaryctl get -A", [str(venv / "canaryctl"), "get", "-A"]),
    ]
    results = {}
    # Interleave the cases run by run, so a change of machine load hits all of them alike.
    for _ in range(args.runs):
        for label, cmd in cases:
            results.setdefault(label, []).append(run(cmd, 1, env))
    medians = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
               for k, v in results.items()}  # fmt: skip
    py_wall = medians["python -c pass (baseline)"][0]
    print(f"median of {args.runs} runs each, {args.records} stored rollouts listed:")
    for label, (wall, cpu) in medians.items():
        print(f"  {label:38s} wall {wall * 1000:6.0f} ms ({wall / py_wall:4.1f}x python, "
              f"+{(wall - py_wall) * 1000:4.0f} ms)  cpu {cpu * 1000:5.0f} ms")  # fmt: skip
    bare = medians["bare lightkube list (baseline)"][0]
    get_wall = medians["canaryctl get -A"][0]
    print(f"canaryctl get -A / bare lightkube list: {get_wall / bare:.2f}x")
    print("Acceptance:")
    for label in ("canaryctl --help", "canaryctl get -A"):
        over = (medians[label][0] - py_wall) * 1000
        print(f"  {label} within 150 ms of python: {'PASS' if over <= 150 else 'FAIL'} "
              f"(+{over:.0f} ms)")  # fmt: skip
    print(f"  canaryctl get -A under 300 ms: {'PASS' if get_wall < 0.3 else 'FAIL'} "
          f"({get_wall * 1000:.0f} ms)")  # fmt: skip
    make_client(state.kubeconfig).delete(Namespace, ns)
    if not args.keep:
        cluster.down()


if __name__ == "__main__":
    main()

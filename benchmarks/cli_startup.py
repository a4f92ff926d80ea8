"""CLI start-up and `canaryctl get` (list) on the local control plane, against baselines
run in the same process: a bare Python start, `kubectl get configmaps -A`, and a bare
lightkube list (import lightkube, read the kubeconfig, list ConfigMaps).

Targets: `canaryctl --help` and `canaryctl get` within 150 ms of `python -c pass`;
`canaryctl get -A` under 300 ms wall on the local cluster.

A breakdown of the bare lightkube list into its phases, timed inside one fresh process per
run (import of the HTTP library, the rest of lightkube, kubeconfig, client, first and
second list), shows the floor that any lightkube-based `get` sits on.

With --instructions (needs valgrind), each case also runs once under valgrind's
cachegrind and the instructions it executed are printed: a figure that does not move with
the load of a shared machine, to compare two versions when wall times cannot.

Run: .venv/bin/python -P benchmarks/cli_startup.py [--runs 15] [--records 20] [--instructions]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lightkube.resources.core_v1 import Namespace

import canaryctl
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

#: The bare list again, in phases timed inside the process (wall, ms, printed as JSON).
#: The HTTP library's own import is split out: lightkube 1.x uses httpx2 (0.x httpx), and
#: its connection layer (httpcore2 with h11, h2 and anyio) is imported when the first client
#: is built, so it gets a row of its own before the client.
BREAKDOWN = """
import json, os, time
marks = [time.perf_counter()]
try:
    import httpx2 as http
except ImportError:
    import httpx as http
marks.append(time.perf_counter())
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import ConfigMap
marks.append(time.perf_counter())
config = KubeConfig.from_file(os.environ["KUBECONFIG"])
marks.append(time.perf_counter())
__import__(http.__name__.replace("httpx", "httpcore"))
marks.append(time.perf_counter())
client = Client(config)
marks.append(time.perf_counter())
list(client.list(ConfigMap, namespace="*"))
marks.append(time.perf_counter())
list(client.list(ConfigMap, namespace="*"))
marks.append(time.perf_counter())
print(json.dumps([(b - a) * 1000 for a, b in zip(marks, marks[1:])]))
"""
PHASES = (
    "import httpx2 (lightkube's HTTP library)",
    "import rest of lightkube (yaml, asyncio, models)",
    "read kubeconfig (lightkube, pure-Python YAML)",
    "import httpcore2 (+h11, h2, anyio; at 1st client)",
    "build client (SSL context, client certificate)",
    "first list (connect, TLS, request, decode)",
    "second list (same connection)",
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


def instructions(cmd: list[str], env: dict[str, str]) -> int:
    """Instructions executed by a command (valgrind cachegrind's "I refs"), children excluded."""
    done = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                           "--cachegrind-out-file=/dev/null", *cmd],
                          capture_output=True, text=True, env=env, check=True)  # fmt: skip
    match = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-300:]}")
    return int(match.group(1).replace(",", ""))


def breakdown(env: dict[str, str]) -> list[float]:
    """The phases of BREAKDOWN (ms) in one fresh process."""
    out = subprocess.run([sys.executable, "-c", BREAKDOWN], check=True, capture_output=True,
                         text=True, env=env).stdout  # fmt: skip
    return json.loads(out)


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
    parser.add_argument("--instructions", action="store_true",
                        help="also count each case's instructions once (valgrind)")  # fmt: skip
    args = parser.parse_args()
    # Installed from a wheel, canaryctl's modules are byte-compiled (pip does it at install
    # time); an editable checkout writes its bytecode on the first run, unless
    # PYTHONDONTWRITEBYTECODE is set, when every run compiles them again. Compile them
    # here, so each case measures a start-up as a user has it, not a compiler.
    compileall.compile_dir(Path(canaryctl.__file__).parent, quiet=1)
    load_before = os.getloadavg()
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
    results, samples = {}, []
    # Interleave the cases run by run, so a change of machine load hits all of them alike.
    for _ in range(args.runs):
        for label, cmd in cases:
            results.setdefault(label, []).append(run(cmd, 1, env))
        samples.append(breakdown(env))
    medians = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
               for k, v in results.items()}  # fmt: skip
    phases = [statistics.median(column) for column in zip(*samples, strict=True)]
    load_after = os.getloadavg()
    py_wall = medians["python -c pass (baseline)"][0]
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after")  # fmt: skip
    print(f"median of {args.runs} runs each, {args.records} stored rollouts listed:")
    for label, (wall, cpu) in medians.items():
        print(f"  {label:38s} wall {wall * 1000:6.0f} ms ({wall / py_wall:4.1f}x python, "
              f"+{(wall - py_wall) * 1000:4.0f} ms)  cpu {cpu * 1000:5.0f} ms")  # fmt: skip
    bare = medians["bare lightkube list (baseline)"][0]
    get_wall = medians["canaryctl get -A"][0]
    if args.instructions and not shutil.which("valgrind"):
        print("--instructions: valgrind is not installed (apt-get install valgrind)")
    elif args.instructions:
        print("instructions executed (valgrind, one run each; load-independent):")
        counts = {label: instructions(cmd, env) for label, cmd in cases if cmd[0] != kubectl}
        py = counts["python -c pass (baseline)"]
        for label, count in counts.items():
            print(f"  {label:38s} {count / 1e6:7.0f} M ({count / py:5.1f}x python)")
    print(f"canaryctl get -A / bare lightkube list: {get_wall / bare:.2f}x "
          f"(+{(get_wall - bare) * 1000:.0f} ms)")  # fmt: skip
    print(f"bare lightkube list in phases (median ms of {args.runs} fresh processes):")
    print(f"  {'python start (python -c pass, above)':52s} {py_wall * 1000:6.1f}")
    for label, ms in zip(PHASES, phases, strict=True):
        print(f"  {label:52s} {ms:6.1f}")
    floor = sum(phases[:-1])  # everything one list needs, over a bare Python start
    print(f"  {'sum over python, one list':52s} {floor:6.1f}  (target for get: 150)")
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

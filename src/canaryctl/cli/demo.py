"""`canaryctl demo`: the seed's scenario on the local cluster.

By default on a real data plane (a real node, Traefik, Prometheus scraping the pods; see
`demo_dataplane`): the seed's rollout with real requests, the same through NGINX canary
annotations, and a canary with twice the errors rolled back from real metrics. Where a real
node cannot run (no root, missing packages) or with `--quick`, the KWOK-only demo: a healthy
v2 promoted through 10/50/100, then a crash-looping v3 rolled back on its own, with
simulated pods and no traffic.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from canaryctl.cli import exits

SEED = ("service.yaml", "app-v1.yaml", "app-v2.yaml")


def _examples_dir() -> Path:
    """The seed manifests ship in the repository's examples/ folder."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "examples" / "pulpocon-app"
        if candidate.is_dir():
            return candidate
    raise typer.BadParameter("examples/pulpocon-app not found next to this checkout")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def demo(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="KWOK only: simulated pods, no traffic, no root needed (~20 s)."
        ),
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="Local cluster name.")] = None,
    namespace: Annotated[
        str, typer.Option("-n", "--namespace", help="Namespace of the quick demo.")
    ] = "canaryctl-demo",
    output: Annotated[str, typer.Option("-o", "--output", help="live or plain")] = "live",
    keep: Annotated[bool, typer.Option(help="Leave the cluster running afterwards.")] = True,
) -> None:
    """The seed's canary on a local cluster: on real pods with real traffic when this host
    can run a node (root), else (or with --quick) on simulated pods."""
    if not quick:
        from canaryctl.cli import demo_dataplane

        why = demo_dataplane.missing()
        if not why:
            with exits.errors_to_exit_codes():
                code = demo_dataplane.run(name or "demo-dataplane", _examples_dir(), output, keep)
            raise typer.Exit(code)
        _say("no real node on this host (" + "; ".join(why) + "): running the quick demo")
    _quick(name or "demo", namespace, output, keep)


def _quick(name: str, namespace: str, output: str, keep: bool) -> None:
    """Local cluster, seed app v1 x10, a good canary promoted and a faulty one rolled back."""
    from rich.console import Console
    from rich.table import Table

    from canaryctl.cli import demo_dataplane
    from canaryctl.cli.views import make_view
    from canaryctl.core.models import quick_spec
    from canaryctl.driver.engine import Engine
    from canaryctl.kube import manifests
    from canaryctl.kube.client import make_client
    from canaryctl.testenv import LocalCluster

    started = time.monotonic()
    cluster = LocalCluster(name, progress=_say)
    with exits.errors_to_exit_codes():
        state = cluster.up()
        client = make_client(state.kubeconfig)
        demo_dataplane.recreate_namespace(client, namespace)
        service, v1, v2 = manifests.load(_examples_dir() / f for f in SEED)
        manifests.apply(client, [service, v1], namespace)
        _say("1. pulpocon-app-v1: 10 replicas behind Service pulpocon-app")
        _wait_ready(client, namespace, "pulpocon-app-v1", 10)

        results = []
        _say("2. canary pulpocon-app-v2 (healthy): 10% -> 50% -> 100%, health-gated")
        manifests.apply(client, [v2], namespace)
        spec = quick_spec("demo-good", namespace, "pulpocon-app-v1", "pulpocon-app-v2",
                          "pulpocon-app", steps="10,50,100", pause="3s")  # fmt: skip
        results.append(_run(client, spec, make_view(output), Engine))

        _say("3. canary pulpocon-app-v3 (crash-loops): must be rolled back automatically")
        v3 = _faulty(v2)
        manifests.apply(client, [v3], namespace)
        spec = quick_spec("demo-faulty", namespace, "pulpocon-app-v2", "pulpocon-app-v3",
                          "pulpocon-app", steps="10,50,100", pause="3s")  # fmt: skip
        results.append(_run(client, spec, make_view(output), Engine))

    table = Table(title=f"canaryctl demo: {time.monotonic() - started:.0f}s in all")
    for col in ("canary", "result", "why", "took"):
        table.add_column(col)
    for row in results:
        table.add_row(*row)
    Console(stderr=True).print(table)
    _reports(state, namespace, ("demo-good", "demo-faulty"))
    print(f"kubectl --kubeconfig {state.kubeconfig} -n {namespace} get deploy,pods,events")
    if not keep:
        cluster.down()
    ok = results[0][1] == "Succeeded" and results[1][1] == "RolledBack"
    raise typer.Exit(0 if ok else 1)


def _wait_ready(client, namespace: str, name: str, want: int, timeout: float = 90) -> None:
    from canaryctl.errors import ClusterError
    from canaryctl.kube import workloads

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if workloads.read_deployment(client, name, namespace).ready_replicas >= want:
            return
        time.sleep(0.5)
    raise ClusterError(f"deployment/{name} did not reach {want} ready replicas in {timeout}s")


def _faulty(v2):
    """v3: a copy of v2 whose pods crash-loop (KWOK simulates the fault)."""
    import copy

    v3 = copy.deepcopy(v2)
    v3.metadata.name = "pulpocon-app-v3"
    v3.spec.replicas = 1
    for labels in (v3.spec.selector.matchLabels, v3.spec.template.metadata.labels):
        labels["version"] = "v3.0.0"
    v3.spec.template.metadata.labels["canaryctl.dev/simulate"] = "crashloop"
    return v3


def _reports(state, namespace: str, names: tuple[str, ...]) -> None:
    """A picture of each rollout (`canaryctl report`), kept after the cluster goes (--no-keep)."""
    from canaryctl.cli import rollout_report
    from canaryctl.testenv.binaries import cache_root

    folder = cache_root() / "reports" / state.name
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        data = rollout_report.load(name, namespace, state.kubeconfig)
        (path,) = rollout_report.write(data, folder / f"{name}.html", None)
        print(f"report of {name}: {path}")


def _run(client, spec, view, Engine) -> tuple[str, str, str, str]:
    t0 = time.monotonic()
    try:
        status = Engine(client, spec, sink=view).run(interval=0.5)
    finally:
        view.close()
    took = f"{time.monotonic() - t0:.0f}s"
    return spec.canary, status.phase.value, status.message or status.reason, took

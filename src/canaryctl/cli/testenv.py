"""`canaryctl testenv up|down|status|kubeconfig`: the local control plane."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from canaryctl.cli.exits import errors_to_exit_codes

app = typer.Typer(
    help="A real local Kubernetes control plane (etcd, apiserver, KWOK nodes).",
    rich_markup_mode=None,  # plain help, as the main app (start-up time)
)

NameOpt = Annotated[str, typer.Option("--name", help="Cluster name (one folder of state each).")]


def _cluster(name: str, nodes: int = 2):
    from canaryctl.testenv import LocalCluster

    # Progress goes to stderr so `$(canaryctl testenv kubeconfig)`-style capture stays clean.
    return LocalCluster(name, nodes=nodes, progress=lambda m: print(m, file=sys.stderr))


@app.command()
def build() -> None:
    """Find or build (from pinned Go modules, into the user cache) every binary needed."""
    from canaryctl.testenv import binaries

    with errors_to_exit_codes():
        found = binaries.ensure(progress=lambda m: print(m, file=sys.stderr))
    for name, path in found.items():
        print(f"{name}: {path}")


@app.command()
def up(
    name: NameOpt = "default",
    nodes: Annotated[int, typer.Option(help="Number of KWOK nodes.")] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Ready nodes.")] = 90.0,
) -> None:
    """Start the cluster (idempotent: a running one is reused); builds binaries on first use."""
    with errors_to_exit_codes():
        state = _cluster(name, nodes).up(timeout=timeout)
    print(f"kubeconfig: {state.kubeconfig}", file=sys.stderr)
    print(f"try: kubectl --kubeconfig {state.kubeconfig} get nodes", file=sys.stderr)


@app.command()
def down(name: NameOpt = "default") -> None:
    """Stop every process of the cluster and remove its files."""
    _cluster(name).down()
    print(f"testenv {name}: down", file=sys.stderr)


@app.command()
def status(
    name: NameOpt = "default",
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
) -> None:
    """Show components, pids, memory and API health; exit 1 when not running."""
    info = _cluster(name).status()
    if output == "json":
        print(json.dumps(info, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"testenv {name}: {'running' if info['running'] else 'down'}")
        for col in ("component", "pid", "alive", "RSS MiB"):
            table.add_column(col)
        for comp, c in info["components"].items():
            table.add_row(comp, str(c["pid"]), "yes" if c["alive"] else "no", str(c["rss_mib"]))
        Console().print(table)
        if info["running"]:
            print(f"server {info['server']}  memory {info['memory_mib']} MiB")
            print(f"kubeconfig {info['kubeconfig']}")
    raise typer.Exit(0 if info["running"] else 1)


@app.command()
def kubeconfig(name: NameOpt = "default") -> None:
    """Print the path of the admin kubeconfig (exit 1 when the cluster is down)."""
    cluster = _cluster(name)
    if cluster.state() is None:
        print(f"testenv {name} is not running: run `canaryctl testenv up`", file=sys.stderr)
        raise typer.Exit(1)
    print(cluster.kubeconfig)

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


def _cluster(name: str, nodes: int = 2, dataplane: bool = False, proxy_mode: str = "iptables"):
    from canaryctl.testenv import LocalCluster

    # Progress goes to stderr so `$(canaryctl testenv kubeconfig)`-style capture stays clean.
    return LocalCluster(
        name,
        nodes=nodes,
        dataplane=dataplane,
        proxy_mode=proxy_mode,
        progress=lambda m: print(m, file=sys.stderr),
    )


DataplaneOpt = Annotated[
    bool,
    typer.Option(
        "--dataplane",
        help=(
            "Also a real node: containerd, kubelet and kube-proxy on this host (needs root), "
            "and Traefik serving Ingresses of class nginx and Gateway API routes."
        ),
    ),
]


@app.command()
def build(
    dataplane: DataplaneOpt = False,
    traefik: Annotated[
        bool, typer.Option("--traefik", help="Also Traefik (without the real node's binaries).")
    ] = False,
    istioctl: Annotated[
        bool, typer.Option("--istioctl", help="Also istioctl (for `istioctl analyze`).")
    ] = False,
    helm: Annotated[
        bool, typer.Option("--helm", help="Also helm (installs the operator's chart).")
    ] = False,
    operator_image: Annotated[
        bool,
        typer.Option(
            "--operator-image",
            help="Also the operator's OCI image tar (Debian with python3 and canaryctl).",
        ),
    ] = False,
) -> None:
    """Find or build (from pinned Go modules, into the user cache) every binary needed."""
    from canaryctl.testenv import binaries, versions

    names = list(versions.ALL_BINARIES)
    if dataplane:
        names += versions.NODE_COMMANDS
    progress = lambda m: print(m, file=sys.stderr)  # noqa: E731
    with errors_to_exit_codes():
        found = binaries.ensure(progress=progress, names=names)
        if dataplane or traefik:
            from canaryctl.testenv import traefik_build

            found = {**found, "traefik": traefik_build.ensure(progress)}
        if istioctl:
            from canaryctl.testenv import istioctl_build

            found = {**found, "istioctl": istioctl_build.ensure(progress)}
        if helm:
            from canaryctl.testenv import helm_build

            found = {**found, "helm": helm_build.ensure(progress)}
        if operator_image:
            from canaryctl.testenv import operator_image as image

            built = image.build(progress)
            found = {**found, "operator-image": built.tar}
            print(f"operator-image-ref: {built.ref}")
    for name, path in found.items():
        print(f"{name}: {path}")


@app.command()
def up(
    name: NameOpt = "default",
    nodes: Annotated[int, typer.Option(help="Number of KWOK nodes.")] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Ready nodes.")] = 90.0,
    dataplane: DataplaneOpt = False,
    proxy_mode: Annotated[
        str, typer.Option(help="kube-proxy mode on the real node: iptables or nftables.")
    ] = "iptables",
) -> None:
    """Start the cluster (idempotent: a running one is reused); builds binaries on first use.

    With --dataplane, one real node (label canaryctl.dev/node=real, taint
    canaryctl.dev/real=true:NoSchedule) runs pods that select and tolerate it; `down`
    puts back every host setting it changed.
    """
    with errors_to_exit_codes():
        state = _cluster(name, nodes, dataplane, proxy_mode).up(timeout=timeout)
    print(f"kubeconfig: {state.kubeconfig}", file=sys.stderr)
    print(f"try: kubectl --kubeconfig {state.kubeconfig} get nodes", file=sys.stderr)


@app.command()
def down(name: NameOpt = "default") -> None:
    """Stop every process of the cluster, put the host back, and remove its files."""
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
        node = info.get("node")
        if node:
            _print_node(node)
        proxy = info.get("traefik")
        if proxy:
            print(f"traefik {proxy['url']} (Ingress class nginx, Gateway canaryctl-system/traefik)")
    raise typer.Exit(0 if info["running"] else 1)


@app.command()
def kubeconfig(name: NameOpt = "default") -> None:
    """Print the path of the admin kubeconfig (exit 1 when the cluster is down)."""
    cluster = _cluster(name)
    if cluster.state() is None:
        print(f"testenv {name} is not running: run `canaryctl testenv up`", file=sys.stderr)
        raise typer.Exit(1)
    print(cluster.kubeconfig)


def _print_node(node: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    if not node.get("registered"):
        print(f"real node {node['name']}: not registered {node.get('error', '')}")
        return
    ready = "Ready" if node["ready"] else "NotReady"
    addresses = " ".join(f"{k}={v}" for k, v in node["addresses"].items())
    print(f"real node {node['name']}: {ready}  {addresses}  kube-proxy {node['proxy_mode']}")
    table = Table(title=f"pods on {node['name']}")
    for col in ("pod", "phase", "ready", "IP"):
        table.add_column(col)
    for pod in node["pods"]:
        table.add_row(
            pod["pod"], str(pod["phase"]), "yes" if pod["ready"] else "no", pod["ip"] or ""
        )
    Console().print(table)

"""`canaryctl demo`: the seed's scenario on the local cluster."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

SEED_FILES = ("service.yaml", "app-v1.yaml")


def _examples_dir() -> Path:
    """The seed manifests ship in the repository's examples/ folder."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / "pulpocon-app"
        if candidate.is_dir():
            return candidate
    raise typer.BadParameter("examples/pulpocon-app not found next to this checkout")


def demo(
    name: Annotated[str, typer.Option("--name", help="Local cluster name.")] = "demo",
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
) -> None:
    """Start the local cluster and deploy the seed app v1 with 10 ready replicas."""
    from lightkube.resources.apps_v1 import Deployment

    from canaryctl.kube import manifests
    from canaryctl.kube.client import make_client
    from canaryctl.testenv import LocalCluster

    def say(msg: str) -> None:
        print(msg, file=sys.stderr)

    state = LocalCluster(name, progress=say).up()
    client = make_client(state.kubeconfig)
    folder = _examples_dir()
    manifests.apply(client, manifests.load(folder / f for f in SEED_FILES), namespace)
    say("deployed Service pulpocon-app and Deployment pulpocon-app-v1 (10 replicas)")
    deadline = time.monotonic() + 90
    ready = 0
    while time.monotonic() < deadline:
        ready = client.get(Deployment, "pulpocon-app-v1", namespace=namespace).status.readyReplicas
        if (ready or 0) >= 10:
            break
        time.sleep(0.5)
    say(f"pulpocon-app-v1: {ready or 0}/10 ready")
    print(f"kubectl --kubeconfig {state.kubeconfig} get deploy,pods,endpointslices -n {namespace}")
    if (ready or 0) < 10:
        raise typer.Exit(1)

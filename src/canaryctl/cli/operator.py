"""`canaryctl operator`: reconcile Canary resources in the cluster (GitOps mode)."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from canaryctl.cli import exits
from canaryctl.cli.rollout import ContextOpt, KubeconfigOpt


def operator(
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option("-n", "--namespace", help="Watch only this namespace (repeatable)."),
    ] = None,
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", help="Port of /metrics (0: off).")
    ] = 8080,
    health_port: Annotated[
        int, typer.Option("--health-port", help="Port of /healthz and /readyz (0: off).")
    ] = 8081,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            help="Most seconds between looks at an active rollout (watch events wake it sooner).",
        ),
    ] = 5.0,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", help="Canaries reconciled at once (threads waiting on the API server)."
        ),
    ] = 32,
    lease_name: Annotated[
        str,
        typer.Option("--lease-name", help="Name of the leader-election Lease (one per install)."),
    ] = "canaryctl-operator",
    lease_namespace: Annotated[
        str | None,
        typer.Option("--lease-namespace", help="Namespace of the leader-election Lease."),
    ] = None,
    lease_seconds: Annotated[
        float, typer.Option("--lease-seconds", help="Lease duration for leader election.")
    ] = 15.0,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Run the operator: every Canary resource is driven by the same engine as `rollout`.

    Run two for high availability; a coordination.k8s.io Lease makes exactly one act.
    """
    from canaryctl.kube.client import make_client
    from canaryctl.operator.controller import Options, run

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpx2", "kopf"):  # a line per request or watch event otherwise
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    with exits.errors_to_exit_codes():
        client = make_client(kubeconfig, context)
        options = Options(
            kubeconfig=str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG"),
            namespaces=tuple(namespace or ()),
            metrics_port=metrics_port or None,
            health_port=health_port or None,
            interval=interval,
            workers=max(workers, 1),
            lease_name=lease_name,
            lease_namespace=lease_namespace or os.environ.get("POD_NAMESPACE", "default"),
            lease_seconds=lease_seconds,
            renew_deadline=lease_seconds * 2 / 3,
            retry_seconds=max(min(lease_seconds / 6, 2.0), 0.2),
        )
        run(client, options)

"""`canaryctl get|promote|abort|pause|resume`: steer rollouts from any terminal.

Commands are written into the rollout's record in the cluster; whichever process drives
the rollout (a `canaryctl rollout` elsewhere, or the operator) acts on them.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from canaryctl.cli import exits
from canaryctl.cli.rollout import ContextOpt, KubeconfigOpt

NameArg = Annotated[str, typer.Argument(help="Rollout name.")]
NsOpt = Annotated[str, typer.Option("-n", "--namespace")]


def _store(kubeconfig, context):
    from canaryctl.kube.client import make_client
    from canaryctl.kube.store import Store

    return Store(make_client(kubeconfig, context))


def _send(action: str, name: str, namespace: str, kubeconfig, context, full: bool = False) -> None:
    with exits.errors_to_exit_codes():
        _store(kubeconfig, context).send_command(name, namespace, action, full)
    print(f"{action}{' (full)' if full else ''} sent to {namespace}/{name}", file=sys.stderr)


def promote(
    name: NameArg,
    namespace: NsOpt = "default",
    full: Annotated[bool, typer.Option("--full", help="Skip all remaining steps.")] = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Approve the current pause step, or with --full skip straight to promotion."""
    _send("promote", name, namespace, kubeconfig, context, full)


def abort(
    name: NameArg,
    namespace: NsOpt = "default",
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Roll back now: stable restored to full capacity first, then the canary removed."""
    _send("abort", name, namespace, kubeconfig, context)


def pause(
    name: NameArg,
    namespace: NsOpt = "default",
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Freeze the rollout at its current weight (health gates keep running)."""
    _send("pause", name, namespace, kubeconfig, context)


def resume(
    name: NameArg,
    namespace: NsOpt = "default",
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Continue a rollout paused by `pause` (a pause step needs `promote`)."""
    _send("resume", name, namespace, kubeconfig, context)


def get(
    name: Annotated[str | None, typer.Argument(help="Rollout name (all when omitted).")] = None,
    namespace: NsOpt = "default",
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces")] = False,
    watch: Annotated[bool, typer.Option("-w", "--watch", help="Keep refreshing.")] = False,
    output: Annotated[str, typer.Option("-o", "--output", help="table or json")] = "table",
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Show rollouts, or one rollout with every check that explains its verdict."""
    from rich.console import Console
    from rich.live import Live

    with exits.errors_to_exit_codes():
        store = _store(kubeconfig, context)
        if output == "json":
            print(json.dumps(_describe_json(store, name, namespace, all_namespaces), indent=2))
            return
        console = Console()
        render = lambda: _render(store, name, namespace, all_namespaces)  # noqa: E731
        if not watch:
            console.print(render())
            return
        with Live(render(), console=console, refresh_per_second=2) as live:
            try:
                while True:
                    time.sleep(1)
                    live.update(render())
            except KeyboardInterrupt:
                return


def _records(store, name, namespace, all_namespaces):
    from canaryctl.errors import ClusterError

    if name is None:
        return store.list(None if all_namespaces else namespace)
    record = store.get(name, namespace)
    if record is None:
        raise ClusterError(f"no rollout named {name} in namespace {namespace}")
    return [record]


def _describe_json(store, name, namespace, all_namespaces):
    return [
        {
            "name": r.name,
            "namespace": r.namespace,
            "spec": r.spec,
            "status": r.status,
            "holder": r.holder,
        }
        for r in _records(store, name, namespace, all_namespaces)
    ]


def _render(store, name, namespace, all_namespaces):
    from rich.console import Group
    from rich.table import Table

    from canaryctl.cli.views import render
    from canaryctl.core.models import CanaryStatus, parse_spec
    from canaryctl.driver.engine import snapshot_of
    from canaryctl.kube import workloads

    records = _records(store, name, namespace, all_namespaces)
    if name is None:
        table = Table(title="canaries")
        for col in ("namespace", "name", "phase", "step", "weight", "reason", "driver"):
            table.add_column(col)
        for r in records:
            st = r.status or {}
            table.add_row(
                r.namespace,
                r.name,
                st.get("phase", "Pending"),
                str(st.get("stepIndex", 0) + 1),
                f"{st.get('weight', 0)}%",
                st.get("reason", ""),
                r.holder or "-",
            )
        return table
    r = records[0]
    spec = parse_spec(r.spec)
    status = CanaryStatus.from_dict(r.status) if r.status else CanaryStatus()
    client = store.client
    stable = workloads.read_deployment(client, spec.stable, spec.namespace)
    canary = workloads.read_deployment(client, spec.canary, spec.canary_namespace or spec.namespace)
    started = status.started_at or time.time()
    snap = snapshot_of(spec, status, stable, canary, None, time.time() - started)
    history = Table(title="checks (newest last)", box=None)
    for col in ("time", "check", "result", "value", "threshold", "detail"):
        history.add_column(col)
    for c in status.history[-20:]:
        history.add_row(
            time.strftime("%H:%M:%S", time.localtime(c.time)),
            c.name,
            "pass" if c.passed else "FAIL",
            "" if c.value is None else f"{c.value:.4g}",
            "" if c.threshold is None else f"{c.threshold:.4g}",
            c.message[:80],
        )
    return Group(render(snap, []), history)

"""`canaryctl get|promote|abort|pause|resume`: steer rollouts from any terminal.

Commands are written into the rollout's record in the cluster; whichever process drives
the rollout (a `canaryctl rollout` elsewhere, or the operator) acts on them. A rollout's
record is a ConfigMap (`canaryctl rollout`) or a Canary resource (the operator); a Canary
of the name wins, as `canaryctl rollout` refuses to drive what a Canary owns.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from canaryctl.cli import exits
from canaryctl.cli.rollout import ContextOpt, KubeconfigOpt

NameArg = Annotated[str, typer.Argument(help="Rollout name.")]
NsOpt = Annotated[str, typer.Option("-n", "--namespace")]


def _stores(kubeconfig, context):
    """Both backends, the Canary resource first."""
    from canaryctl.kube.canary_store import CanaryStore
    from canaryctl.kube.client import make_client
    from canaryctl.kube.store import ConfigMapStore

    client = make_client(kubeconfig, context)
    return [CanaryStore(client), ConfigMapStore(client)]


def _send(action: str, name: str, namespace: str, kubeconfig, context, full: bool = False) -> None:
    from canaryctl.errors import RolloutNotFound

    with exits.errors_to_exit_codes():
        for store in _stores(kubeconfig, context):
            try:
                store.send_command(name, namespace, action, full)
            except RolloutNotFound:
                continue
            where = store.describe(name)
            break
        else:
            raise RolloutNotFound(
                f"no rollout named {name} in namespace {namespace} "
                "(neither a Canary resource nor a `canaryctl rollout` record)"
            )
    what = f"{action}{' (full)' if full else ''}"
    print(f"{what} sent to {namespace}/{name} ({where})", file=sys.stderr)


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
    history: Annotated[
        bool, typer.Option("--history", help="With NAME: every stored check record too.")
    ] = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Show rollouts, or one rollout: the current state of each check and how to steer it."""
    if watch:
        import gc

        gc.enable()  # off for a one-shot `get` (cli.app.main); a watch runs for long
    with exits.errors_to_exit_codes():
        if name is None and output != "json":
            _list(namespace, all_namespaces, watch, kubeconfig, context)
            return
        from rich.console import Console
        from rich.live import Live

        store = _stores(kubeconfig, context)
        if output == "json":
            print(json.dumps(_describe_json(store, name, namespace, all_namespaces), indent=2))
            return
        console = Console()
        render = lambda: _render(store, name, namespace, history)  # noqa: E731
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


def report(
    name: NameArg,
    namespace: NsOpt = "default",
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML page (default).")
    ] = None,
    png: Annotated[
        Path | None, typer.Option("--png", help="Write a PNG (needs matplotlib).")
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Draw one rollout: weight over time, traffic and errors by version, evidence, verdict."""
    from canaryctl.cli import rollout_report

    with exits.errors_to_exit_codes():
        data = rollout_report.load(name, namespace, kubeconfig, context)
        for path in rollout_report.write(data, html, png):
            print(f"report written to {path}", file=sys.stderr)


def _list(namespace, all_namespaces, watch, kubeconfig, context) -> None:
    """The list of rollouts: plain aligned text, no rich unless watching (start-up time)."""
    from canaryctl.cli import listing
    from canaryctl.kube.client import make_client

    client = make_client(kubeconfig, context)
    ns = None if all_namespaces else namespace

    def table() -> str:
        rows = listing.summaries(client, ns)
        if not rows:
            where = "any namespace" if all_namespaces else f"namespace {namespace}"
            return f"No rollouts found in {where}."
        return listing.format_table(rows, all_namespaces)

    if not watch:
        print(table())
        return
    from rich.live import Live
    from rich.text import Text

    with Live(Text(table()), refresh_per_second=2) as live:
        try:
            while True:
                time.sleep(1)
                live.update(Text(table()))
        except KeyboardInterrupt:
            return


def _records(stores, name, namespace, all_namespaces):
    from canaryctl.errors import RolloutNotFound

    if name is None:
        found = [r for s in stores for r in s.list(None if all_namespaces else namespace)]
        return sorted(found, key=lambda r: (r.namespace, r.name, r.source))
    for store in stores:
        record = store.get(name, namespace)
        if record is not None:
            return [record]
    raise RolloutNotFound(f"no rollout named {name} in namespace {namespace}")


def _describe_json(store, name, namespace, all_namespaces):
    return [
        {
            "name": r.name,
            "namespace": r.namespace,
            "spec": r.spec,
            "status": r.status,
            "source": r.source,
            "conditions": r.status_extra.get("conditions", []),
            "holder": r.holder,
        }
        for r in _records(store, name, namespace, all_namespaces)
    ]


def _render(store, name, namespace, history=False):
    """One rollout: conditions (Canary), the live view's panel, and its history on request."""
    from rich.console import Group

    from canaryctl.cli import checks
    from canaryctl.cli.views import render
    from canaryctl.core.models import CanaryStatus, parse_spec, parse_status
    from canaryctl.driver.engine import snapshot_of
    from canaryctl.errors import SpecError
    from canaryctl.kube import workloads

    (r,) = _records(store, name, namespace, False)
    try:
        spec = parse_spec(r.spec)
    except SpecError as exc:
        if r.source != "canary":
            raise
        # The operator refuses such a Canary (Ready=False); show why rather than fail.
        return Group(_conditions_table(r), f"invalid spec: {exc.field}: {exc.reason}")
    where = f"{r.source}/{r.name}" if r.source == "canary" else f"configmap/canaryctl-{r.name}"
    status = parse_status(r.status, where) or CanaryStatus()
    client = store[0].client
    stable_name, canary_name = spec.pair
    stable = workloads.read_deployment(client, stable_name, spec.namespace)
    canary = workloads.read_deployment(client, canary_name, spec.canary_namespace or spec.namespace)
    started = status.started_at or time.time()
    effective = _effective_weight(client, spec, status, stable, canary)
    snap = snapshot_of(spec, status, stable, canary, effective, time.time() - started)
    parts = [render(snap, [])]
    if history:
        parts.append(checks.history_table(snap.checks, phase=snap.phase, reason=snap.reason))
    elif snap.checks:
        ns = "" if r.namespace == "default" else f" -n {r.namespace}"
        parts.append(f"{len(snap.checks)} stored records: canaryctl get {r.name}{ns} --history")
    if r.source == "canary":
        parts.insert(0, _conditions_table(r))
    return Group(*parts)


def _effective_weight(client, spec, status, stable, canary) -> float | None:
    """The share the router serves the canary now (None when it cannot tell)."""
    from canaryctl.errors import CanaryError
    from canaryctl.routers import make_router

    if status.phase.terminal or not (stable.exists or canary.exists):
        return None
    try:
        return make_router(client, spec, status.baseline_replicas).get_weight()
    except CanaryError:
        return None  # shown as "desired" only; `get` must not fail on a router read


def _conditions_table(record):
    from rich.table import Table

    extra = record.status_extra
    table = Table(
        title=f"canary/{record.name} (generation {record.generation}, observed "
        f"{extra.get('observedGeneration', '-')})",
        box=None,
    )
    for col in ("condition", "status", "reason", "since", "message"):
        table.add_column(col)
    for c in extra.get("conditions", []):
        table.add_row(
            c.get("type", ""),
            c.get("status", ""),
            c.get("reason", ""),
            c.get("lastTransitionTime", ""),
            c.get("message", "")[:80],
        )
    return table

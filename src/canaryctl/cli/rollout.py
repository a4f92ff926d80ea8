"""`canaryctl rollout` and `canaryctl plan`: drive a canary in the foreground."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from canaryctl.cli import exits

KubeconfigOpt = Annotated[
    Path | None, typer.Option("--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG).")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]


def load_spec_file(path: Path, namespace: str | None) -> dict[str, Any]:
    """Read a spec file: a Canary manifest (metadata + spec) or a flat mapping."""
    import yaml

    from canaryctl.errors import SpecError

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(str(path), f"cannot read spec file: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(str(path), "must hold a mapping (a Canary manifest or its spec)")
    if "spec" in data:
        meta = data.get("metadata") or {}
        flat = {**data["spec"], "name": meta.get("name", data["spec"].get("name"))}
        if meta.get("namespace"):
            flat["namespace"] = meta["namespace"]
        data = flat
    if namespace:
        data.setdefault("namespace", namespace)
    return data


def build_spec(
    file: Path | None,
    name: str | None,
    namespace: str | None,
    stable: str | None,
    canary: str | None,
    service: str | None,
    steps: str,
    pause: str | None,
    ready_deadline: str | None,
    max_restarts: int | None,
    on_promotion: str,
    analysis: dict[str, Any] | None = None,
    replica_mode: str | None = None,
):
    """The spec from -f or from the quick-mode flags; SpecError names the bad field."""
    from canaryctl.core.models import parse_spec, quick_spec
    from canaryctl.errors import SpecError

    if file is not None:
        return parse_spec(load_spec_file(file, namespace))
    for flag, value in (("--stable", stable), ("--canary", canary), ("--service", service)):
        if not value:
            raise SpecError(flag, "is required (or give a full spec with -f canary.yaml)")
    health: dict[str, Any] = {}
    if ready_deadline:
        health["readyDeadline"] = ready_deadline
    if max_restarts is not None:
        health["maxRestarts"] = max_restarts
    assert service is not None and stable is not None and canary is not None
    return quick_spec(
        name or service.split("/")[-1],
        namespace or "default",
        stable,
        canary,
        service,
        steps=steps,
        pause=pause,
        on_promotion=on_promotion,  # type: ignore[arg-type]
        health=health or None,
        analysis=analysis,
        replica_mode=replica_mode,  # type: ignore[arg-type]
    )


def analysis_options(
    prometheus: str | None,
    judge: str,
    interval: str,
    tolerance: float | None,
    latency_threshold: float | None,
) -> dict[str, Any] | None:
    """The quick-mode --prometheus/--judge/... flags as a spec `analysis` block."""
    if prometheus is None:
        return None
    block: dict[str, Any] = {
        "prometheus": {"url": prometheus},
        "judge": judge,
        "interval": interval,
    }
    if tolerance is not None:
        block["tolerance"] = tolerance
    if latency_threshold is not None:
        block["latencyThreshold"] = latency_threshold
    return block


def rollout(
    file: Annotated[Path | None, typer.Option("-f", "--file", help="Canary spec (YAML).")] = None,
    stable: Annotated[
        str | None, typer.Option(help="Stable Deployment, e.g. deploy/app-v1.")
    ] = None,
    canary: Annotated[
        str | None, typer.Option(help="Canary Deployment, e.g. deploy/app-v2.")
    ] = None,
    service: Annotated[str | None, typer.Option(help="Service in front of both versions.")] = None,
    steps: Annotated[str, typer.Option(help="Canary weights; a final 100 promotes.")] = "10,50,100",
    pause: Annotated[str | None, typer.Option(help="Pause after each weight, e.g. 30s.")] = None,
    name: Annotated[str | None, typer.Option(help="Rollout name (default: the Service).")] = None,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace")] = None,
    ready_deadline: Annotated[
        str | None, typer.Option(help="Canary pods must be Ready within this, e.g. 2m.")
    ] = None,
    max_restarts: Annotated[int | None, typer.Option(help="Canary restarts tolerated.")] = None,
    on_promotion: Annotated[
        str, typer.Option(help="What happens to the old stable: delete or scale-to-zero.")
    ] = "delete",
    replica_mode: Annotated[
        str | None,
        typer.Option(help="seed (stable shrinks as canary grows) or full (stable keeps N)."),
    ] = None,
    prometheus: Annotated[
        str | None, typer.Option(help="Prometheus URL: enables metric analysis.")
    ] = None,
    judge: Annotated[str, typer.Option(help="sequential (default) or threshold.")] = "sequential",
    analysis_interval: Annotated[str, typer.Option(help="Seconds between looks.")] = "10s",
    tolerance: Annotated[
        float | None, typer.Option(help="Canary may err up to (1+tolerance)x stable's rate.")
    ] = None,
    latency_threshold: Annotated[
        float | None, typer.Option(help="Also judge requests slower than this (seconds).")
    ] = None,
    output: Annotated[str, typer.Option("-o", "--output", help="live, plain or json.")] = "live",
    interval: Annotated[float, typer.Option(help="Seconds between observations.")] = 1.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Run a canary to its end: exit 0 promoted, 3 rolled back, 4 aborted, 2 invalid input."""
    from canaryctl.cli.views import make_view
    from canaryctl.driver.engine import Engine, LeaseHeld
    from canaryctl.kube.client import make_client

    with exits.errors_to_exit_codes():
        spec = build_spec(
            file,
            name,
            namespace,
            stable,
            canary,
            service,
            steps,
            pause,
            ready_deadline,
            max_restarts,
            on_promotion,
        )
        client = make_client(kubeconfig, context)
        if dry_run:
            _print_plan(client, spec)
            return
        view = make_view(output)
        engine = Engine(client, spec, sink=view)
        waiting: list[str] = []

        def lease_wait(held: LeaseHeld) -> None:
            if held.holder not in waiting:
                waiting.append(held.holder)
                print(f"waiting: {held}", file=sys.stderr)

        try:
            status = engine.run(interval, on_lease_wait=lease_wait)
        except KeyboardInterrupt:
            view.close()
            engine.release()
            print(
                f"\ninterrupted; the rollout's state is kept in the cluster. Rerun the same "
                f"command to resume, or `canaryctl abort {spec.name} -n {spec.namespace}`.",
                file=sys.stderr,
            )
            raise typer.Exit(exits.INTERRUPTED) from None
        view.close()
    print(f"{spec.name}: {status.phase.value} ({status.reason}) {status.message}", file=sys.stderr)
    if status.phase.value == "Succeeded":
        raise typer.Exit(exits.PROMOTED)
    raise typer.Exit(exits.ABORTED if status.reason == "Aborted" else exits.ROLLED_BACK)


def _print_plan(client, spec) -> None:
    from canaryctl.driver.engine import Engine
    from canaryctl.driver.plan import plan
    from canaryctl.kube import workloads

    Engine(client, spec, record_events=False).validate()
    stable = workloads.read_deployment(client, spec.stable, spec.namespace)
    canary = workloads.read_deployment(client, spec.canary, spec.canary_namespace or spec.namespace)
    for line in plan(spec, stable.desired_replicas, canary.desired_replicas):
        print(line)


def plan_command(
    file: Annotated[Path | None, typer.Option("-f", "--file", help="Canary spec (YAML).")] = None,
    stable: Annotated[str | None, typer.Option(help="Stable Deployment.")] = None,
    canary: Annotated[str | None, typer.Option(help="Canary Deployment.")] = None,
    service: Annotated[str | None, typer.Option(help="Service in front of both.")] = None,
    steps: Annotated[str, typer.Option(help="Canary weights; a final 100 promotes.")] = "10,50,100",
    pause: Annotated[str | None, typer.Option(help="Pause after each weight.")] = None,
    name: Annotated[str | None, typer.Option(help="Rollout name.")] = None,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace")] = None,
    on_promotion: Annotated[str, typer.Option(help="delete or scale-to-zero.")] = "delete",
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Print every step and object change a rollout would make; changes nothing."""
    from canaryctl.kube.client import make_client

    with exits.errors_to_exit_codes():
        spec = build_spec(
            file, name, namespace, stable, canary, service, steps, pause, None, None, on_promotion
        )
        _print_plan(make_client(kubeconfig, context), spec)

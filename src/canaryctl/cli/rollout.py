"""`canaryctl rollout` and `canaryctl plan`: drive a canary in the foreground."""

from __future__ import annotations

import inspect
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
    if data.get("kind") not in (None, "Canary"):
        raise SpecError("kind", f"{str(data['kind'])[:80]!r} is not a Canary (kind: Canary)")
    if "spec" in data:
        meta = data.get("metadata") or {}
        # A manifest's parts must be mappings: anything else is refused naming the part
        # (found by fuzzing: `spec:` left empty crashed with a TypeError).
        for part, value in (("spec", data["spec"]), ("metadata", meta)):
            if not isinstance(value, dict):
                raise SpecError(part, f"must be a mapping, got {type(value).__name__}")
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
    router: dict[str, Any] | None = None,
    canary_namespace: str | None = None,
    scale_down_delay: str | None = None,
    drain_delay: str | None = None,
):
    """The spec from -f or from the quick-mode flags; SpecError names the bad field.

    Managed mode (`targetRef`) is refused: only the operator drives it.
    """
    from canaryctl.core.models import parse_spec, quick_spec
    from canaryctl.errors import SpecError

    if file is not None:
        spec = parse_spec(load_spec_file(file, namespace))
        if spec.managed:
            raise SpecError(
                "targetRef",
                "managed mode is for the canaryctl operator: apply the Canary with "
                "`kubectl apply -f` and the operator runs it; `canaryctl rollout` and "
                "`canaryctl plan` need stable and canary Deployments",
            )
        return spec
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
        router=router,
        canary_namespace=canary_namespace,
        scale_down_delay=scale_down_delay,
        drain_delay=drain_delay,
    )


def router_options(
    kind: str,
    ingress: str | None,
    virtual_service: str | None,
    destination_rule: str | None,
    httproute: str | None,
    header: list[str] | None,
    cookie: str | None,
    mirror: float | None = None,
) -> dict[str, Any] | None:
    """The quick-mode --router/--ingress/... flags as a spec `router` block."""
    from canaryctl.errors import SpecError

    block: dict[str, Any] = {"kind": kind}
    for key, value in (
        ("ingress", ingress),
        ("virtualService", virtual_service),
        ("destinationRule", destination_rule),
        ("httproute", httproute),
        ("cookie", cookie),
        ("mirror", mirror),
    ):
        if value is not None:
            block[key] = value
    if header:
        headers = {}
        for item in header:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SpecError("--header", f"{item!r} is not NAME=VALUE (e.g. X-Track=canary)")
            headers[key] = value
        block["header"] = headers
    return block


def analysis_options(
    prometheus: str | None,
    judge: str,
    interval: str | None,
    tolerance: float | None,
    latency_threshold: float | None,
) -> dict[str, Any] | None:
    """The quick-mode --prometheus/--judge/... flags as a spec `analysis` block."""
    if prometheus is None:
        return None
    block: dict[str, Any] = {
        "prometheus": {"url": prometheus},
        "judge": judge,
    }
    if interval is not None:
        block["interval"] = interval
    if tolerance is not None:
        block["tolerance"] = tolerance
    if latency_threshold is not None:
        block["latencyThreshold"] = latency_threshold
    return block


def _router_kinds() -> list[str]:
    """Shell completion of --router: the kinds the spec model accepts."""
    from typing import get_args

    from canaryctl.core.models import RouterKind

    return list(get_args(RouterKind))


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
    scale_down_delay: Annotated[
        str | None,
        typer.Option(help="Keep the old version this long after the switch (blue/green)."),
    ] = None,
    drain_delay: Annotated[
        str | None,
        typer.Option(
            help="Keep a version's pods this long after no endpoint lists them (default 10s)."
        ),
    ] = None,
    replica_mode: Annotated[
        str | None,
        typer.Option(help="seed (stable shrinks as canary grows) or full (stable keeps N)."),
    ] = None,
    prometheus: Annotated[
        str | None, typer.Option(help="Prometheus URL: enables metric analysis.")
    ] = None,
    judge: Annotated[str, typer.Option(help="sequential (default) or threshold.")] = "sequential",
    analysis_interval: Annotated[
        str | None,
        typer.Option(
            help="Seconds between looks, or auto (default for the sequential judge: looks "
            "sized to the evidence, 5-60 s; the threshold judge checks every 10s)."
        ),
    ] = None,
    tolerance: Annotated[
        float | None, typer.Option(help="Canary may err up to (1+tolerance)x stable's rate.")
    ] = None,
    latency_threshold: Annotated[
        float | None, typer.Option(help="Also judge requests slower than this (seconds).")
    ] = None,
    router: Annotated[
        str,
        typer.Option(
            help="replicas, nginx, istio or gateway.",
            autocompletion=_router_kinds,
        ),
    ] = "replicas",
    ingress: Annotated[str | None, typer.Option(help="nginx: the primary Ingress.")] = None,
    virtual_service: Annotated[str | None, typer.Option(help="istio: the VirtualService.")] = None,
    destination_rule: Annotated[
        str | None, typer.Option(help="istio: DestinationRule with version subsets.")
    ] = None,
    httproute: Annotated[str | None, typer.Option(help="gateway: the HTTPRoute.")] = None,
    header: Annotated[
        list[str] | None, typer.Option(help="Send requests with NAME=VALUE to the canary.")
    ] = None,
    cookie: Annotated[str | None, typer.Option(help="Send requests with this cookie.")] = None,
    mirror: Annotated[
        float | None,
        typer.Option(
            help="istio: mirror this percent to the canary in a dark launch (its pods, weight "
            "0) held for one --pause before the first weight."
        ),
    ] = None,
    canary_namespace: Annotated[
        str | None, typer.Option(help="istio/gateway: the canary's own namespace.")
    ] = None,
    output: Annotated[str, typer.Option("-o", "--output", help="live, plain or json.")] = "live",
    interval: Annotated[float, typer.Option(help="Seconds between observations.")] = 1.0,
    api_timeout: Annotated[
        str,
        typer.Option(
            help="Keep retrying an unreachable API server this long, then exit 6 "
            "(the rollout's state stays in the cluster; rerun to resume)."
        ),
    ] = "2m",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan only (same as `plan`).")
    ] = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    from_canary: Annotated[str | None, typer.Option("--from-canary", hidden=True)] = None,
) -> None:
    """Run a canary to its end: exit 0 promoted, 3 rolled back, 4 aborted, 2 invalid input,
    6 API server unreachable for longer than --api-timeout."""
    from canaryctl.cli.views import make_view
    from canaryctl.driver.engine import Engine, LeaseHeld
    from canaryctl.kube.client import make_client

    with exits.errors_to_exit_codes():
        analysis = analysis_options(
            prometheus, judge, analysis_interval, tolerance, latency_threshold
        )
        routing = router_options(
            router, ingress, virtual_service, destination_rule, httproute, header, cookie, mirror
        )
        give_up = _api_timeout(api_timeout)
        client = make_client(kubeconfig, context)
        if from_canary is not None:
            if not dry_run:
                from canaryctl.errors import SpecError

                raise SpecError(
                    "--from-canary",
                    "only `canaryctl plan` reads a Canary; the operator drives Canary resources",
                )
            spec = _canary_spec(client, from_canary, namespace or "default")
            _print_plan(client, spec, resource=True)
            return
        spec = build_spec(
            file, name, namespace, stable, canary, service, steps, pause,
            ready_deadline, max_restarts, on_promotion, analysis, replica_mode,
            routing, canary_namespace, scale_down_delay, drain_delay,
        )  # fmt: skip
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
            status = engine.run(
                interval,
                on_lease_wait=lease_wait,
                api_timeout=give_up,
                on_api_retry=lambda retry: print(retry.line(), file=sys.stderr),
                resume_hint=(
                    "Rerun the same command to resume once the API server answers "
                    "(check it with `kubectl get --raw /readyz`)."
                ),
            )
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


def _api_timeout(value: str) -> float:
    """--api-timeout in seconds; SpecError names the flag."""
    from canaryctl.core.durations import parse_duration
    from canaryctl.errors import SpecError

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise SpecError("--api-timeout", str(exc)) from exc
    if seconds <= 0:
        raise SpecError("--api-timeout", "must be more than 0, e.g. 2m")
    return seconds


def _canary_spec(client, name: str, namespace: str):
    """The spec of the Canary resource `name` (pair mode), for `plan --from-canary`."""
    from lightkube.core.exceptions import ApiError

    from canaryctl.errors import ClusterError, SpecError
    from canaryctl.kube.canary import Canary, spec_of

    try:
        obj = client.get(Canary, name, namespace=namespace)
    except ApiError as exc:
        raise ClusterError(f"reading canary/{name} in {namespace}: {exc.status.message}") from exc
    spec = spec_of(obj)
    if spec.managed:
        raise SpecError(
            "targetRef",
            "planning managed mode needs the operator's <target>-primary; "
            "plan works on pair-mode Canaries (stable and canary)",
        )
    return spec


def _print_plan(client, spec, resource: bool = False) -> None:
    from canaryctl.driver.engine import analysis_for
    from canaryctl.driver.plan import plan
    from canaryctl.kube import workloads
    from canaryctl.routers import make_router

    # The analysis block is checked as the real run checks it (the same call, before any
    # read): a dry run refuses what `rollout` would refuse, naming the same field.
    analysis_for(client, spec)
    stable = workloads.read_deployment(client, spec.stable, spec.namespace)
    if not stable.exists:
        from canaryctl.errors import SpecError

        raise SpecError("stable", f"deployment/{spec.stable} not found in {spec.namespace}")
    canary = workloads.read_deployment(client, spec.canary, spec.canary_namespace or spec.namespace)
    setup = make_router(client, spec, max(stable.desired_replicas, 1)).reconcile()
    lines = plan(spec, stable.desired_replicas, canary.desired_replicas, setup, resource=resource)
    for line in lines:
        print(line)
    from canaryctl.driver.engine import shutdown_gaps

    for gap in shutdown_gaps(client, spec):
        print(f"warning: {gap}", file=sys.stderr)


def plan_command(**options: Any) -> None:
    """Print every step and object change a rollout would make; changes nothing."""
    rollout(**options, dry_run=True)


# `plan` takes exactly rollout's options, minus the ones that only matter when running.
_ROLLOUT_ONLY = {"dry_run", "output", "interval", "api_timeout"}
# Options only `plan` shows (rollout keeps the parameter, hidden, to share one code path).
_PLAN_ONLY = {
    "from_canary": Annotated[
        str | None,
        typer.Option(
            "--from-canary",
            help="Plan the Canary resource of this name (in -n) as stored in the cluster.",
        ),
    ],
}
_ROLLOUT = inspect.signature(rollout, eval_str=True)
plan_command.__signature__ = _ROLLOUT.replace(  # type: ignore[attr-defined]
    parameters=[
        p.replace(annotation=_PLAN_ONLY[p.name]) if p.name in _PLAN_ONLY else p
        for p in _ROLLOUT.parameters.values()
        if p.name not in _ROLLOUT_ONLY
    ]
)

"""Traffic routers: one module per provider behind the `Router` interface."""

from __future__ import annotations

from lightkube import Client

from canaryctl.core.models import CanarySpec
from canaryctl.errors import SpecError
from canaryctl.routers.base import Change, Router
from canaryctl.routers.replicas import ReplicaRouter

__all__ = ["Change", "ReplicaRouter", "Router", "make_router"]


def make_router(client: Client, spec: CanarySpec, baseline: int) -> Router:
    """The router the spec asks for; `baseline` is the stable capacity the rollout started from."""
    kind = spec.router.kind
    if kind == "replicas":
        return ReplicaRouter(
            client,
            namespace=spec.namespace,
            service=spec.service,
            stable=spec.stable,
            canary=spec.canary,
            baseline=baseline,
            mode=spec.replica_mode,
            on_promotion=spec.on_promotion,
        )
    raise SpecError("router.kind", f"the {kind} router is not available in this version")

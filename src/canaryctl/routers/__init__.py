"""Traffic routers: one module per provider behind the `Router` interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import Client

from canaryctl.core.models import CanarySpec, OnPromotion, ReplicaMode, RouterSpec, RoutesRef
from canaryctl.routers.base import Change, Router
from canaryctl.routers.gateway import GatewayRouter
from canaryctl.routers.istio import IstioRouter
from canaryctl.routers.nginx import NginxRouter
from canaryctl.routers.replicas import ReplicaRouter

__all__ = [
    "Change",
    "GatewayRouter",
    "IstioRouter",
    "NginxRouter",
    "ReplicaRouter",
    "Router",
    "make_router",
    "routes_router",
]


def make_router(
    client: Client,
    spec: CanarySpec,
    baseline: int,
    generations: Mapping[str, int] | None = None,
) -> Router:
    """The router the spec asks for.

    `baseline` is the stable capacity the rollout started from; `generations` are the
    Deployments' generations the engine decided on (scaling fails if they changed since).
    """
    return _build(
        client,
        spec.router,
        name=spec.name,
        namespace=spec.namespace,
        service=spec.service,
        stable=spec.pair[0],
        canary=spec.pair[1],
        canary_namespace=spec.canary_namespace,
        on_promotion=spec.on_promotion,
        replica_mode=spec.replica_mode,
        baseline=baseline,
        generations=generations,
    )


def routes_router(
    client: Client, routes: RoutesRef, *, name: str, namespace: str, baseline: int
) -> Router:
    """The router of stored routes (`CanaryStatus.routes`), for `cleanup` only: it puts
    the routes back on the stable when the spec they came from no longer parses.

    `routes` is checked already (`parse_routes`). A promotion is never asked of it, so
    its `on_promotion` is the one that deletes nothing.
    """
    return _build(
        client,
        routes.router_spec(),
        name=name,
        namespace=namespace,
        service=routes.service,
        stable=routes.stable,
        canary=routes.canary,
        canary_namespace=routes.canary_namespace,
        on_promotion="scale-to-zero",
        replica_mode="seed" if routes.kind == "replicas" else "full",
        baseline=baseline,
        generations=None,
    )


def _build(
    client: Client,
    router: RouterSpec,
    *,
    name: str,
    namespace: str,
    service: str,
    stable: str,
    canary: str,
    canary_namespace: str | None,
    on_promotion: OnPromotion,
    replica_mode: ReplicaMode,
    baseline: int,
    generations: Mapping[str, int] | None,
) -> Router:
    common: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "service": service,
        "stable": stable,
        "canary": canary,
        "on_promotion": on_promotion,
    }
    if router.kind == "nginx":
        assert router.ingress is not None  # RouterSpec requires it for nginx
        return NginxRouter(
            client, ingress=router.ingress, header=router.header, cookie=router.cookie, **common
        )
    if router.kind == "istio":
        assert router.virtual_service is not None  # RouterSpec requires it for istio
        return IstioRouter(
            client,
            virtual_service=router.virtual_service,
            destination_rule=router.destination_rule,
            canary_namespace=canary_namespace,
            header=router.header,
            cookie=router.cookie,
            mirror_percent=router.mirror,
            **common,
        )
    if router.kind == "gateway":
        assert router.httproute is not None  # RouterSpec requires it for gateway
        return GatewayRouter(
            client,
            httproute=router.httproute,
            canary_namespace=canary_namespace,
            header=router.header,
            cookie=router.cookie,
            **common,
        )
    return ReplicaRouter(
        client,
        namespace=namespace,
        service=service,
        stable=stable,
        canary=canary,
        baseline=baseline,
        mode=replica_mode,
        on_promotion=on_promotion,
        generations=generations,
    )

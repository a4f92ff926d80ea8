"""Traffic routers: one module per provider behind the `Router` interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import Client

from canaryctl.core.models import CanarySpec
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
    router = spec.router
    common: dict[str, Any] = {
        "name": spec.name,
        "namespace": spec.namespace,
        "service": spec.service,
        "stable": spec.stable,
        "canary": spec.canary,
        "on_promotion": spec.on_promotion,
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
            canary_namespace=spec.canary_namespace,
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
            canary_namespace=spec.canary_namespace,
            header=router.header,
            cookie=router.cookie,
            **common,
        )
    return ReplicaRouter(
        client,
        namespace=spec.namespace,
        service=spec.service,
        stable=spec.stable,
        canary=spec.canary,
        baseline=baseline,
        mode=spec.replica_mode,
        on_promotion=spec.on_promotion,
        generations=generations,
    )

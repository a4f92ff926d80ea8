"""The router factory: a spec's router, and the same router rebuilt from the routes a
Canary's status keeps (pure: building a router reads nothing from the cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from canaryctl.core import RoutesRef, parse_routes, parse_spec
from canaryctl.routers import (
    GatewayRouter,
    IstioRouter,
    NginxRouter,
    ReplicaRouter,
    make_router,
    routes_router,
)

ROUTERS: dict[str, tuple[dict[str, Any], type]] = {
    "nginx": ({"kind": "nginx", "ingress": "web", "header": {"X-Canary": "t"}}, NginxRouter),
    "istio": ({"kind": "istio", "virtualService": "web", "mirror": 10}, IstioRouter),
    "gateway": ({"kind": "gateway", "httproute": "web", "cookie": "c"}, GatewayRouter),
    "replicas": ({"kind": "replicas"}, ReplicaRouter),
}


def _spec(router: dict[str, Any]) -> Any:
    steps = [{"setCanaryScale": 10}] if router.get("mirror") else []
    return parse_spec({
        "name": "shop", "namespace": "prod", "targetRef": {"name": "app"}, "service": "app",
        "router": router, "steps": [*steps, {"setWeight": 50}],
    }).resolved()  # fmt: skip


@pytest.mark.parametrize("kind", list(ROUTERS))
def test_the_stored_routes_rebuild_the_router_on_the_same_objects(kind: str) -> None:
    router, cls = ROUTERS[kind]
    spec = _spec(router)
    live = make_router(None, spec, 3)  # type: ignore[arg-type]
    stored = parse_routes(RoutesRef.of(spec).to_dict())
    rebuilt = routes_router(None, stored, name="shop", namespace="prod", baseline=3)  # type: ignore[arg-type]
    assert type(live) is type(rebuilt) is cls
    if kind == "replicas":
        assert (rebuilt.service, rebuilt.stable, rebuilt.canary) == ("app", "app-primary", "app")
        return
    assert rebuilt.name == live.name == "shop" and rebuilt.namespace == "prod"
    for attr in ("stable_service", "canary_service", "stable", "canary", "canary_namespace"):
        assert getattr(rebuilt.backends, attr) == getattr(live.backends, attr), attr
    assert rebuilt.backends.canary_service == "app-canary"
    assert rebuilt.backends.stable == "app-primary" and rebuilt.backends.canary == "app"
    if kind == "nginx":
        assert rebuilt.canary_ingress == live.canary_ingress == "web-canary"
    if kind == "istio":
        assert rebuilt.virtual_service == "web"
        assert rebuilt.mirror_percent == live.mirror_percent == 10  # its cleanup drops the mirror
    if kind == "gateway":
        assert rebuilt.httproute == "web"
    # tester routes are recognised by name; their values are not kept
    assert rebuilt.header is None and rebuilt.cookie is None
    # never deletes the stable on a promotion it is never asked for
    assert rebuilt.on_promotion == "scale-to-zero"

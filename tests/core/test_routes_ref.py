"""The routes a Canary's status keeps (`CanaryStatus.routes`): what a deletion resets when
the spec no longer parses, read back strictly, never able to make the status unreadable."""

from __future__ import annotations

from typing import Any

import pytest

from canaryctl.core import CanaryStatus, RoutesRef, parse_routes, parse_spec
from canaryctl.errors import SpecError

ROUTERS: dict[str, dict[str, Any]] = {
    "nginx": {"kind": "nginx", "ingress": "app", "header": {"X-Canary": "tester-token"},
              "cookie": "canary"},
    "istio": {"kind": "istio", "virtualService": "app", "header": {"X-Canary": "tester-token"}},
    "gateway": {"kind": "gateway", "httproute": "app", "cookie": "canary"},
    "replicas": {"kind": "replicas"},
}  # fmt: skip


def managed(router: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "app",
        "namespace": "shop",
        "targetRef": {"kind": "Deployment", "name": "app"},
        "service": "app",
        "router": router,
        "steps": [{"setWeight": 50}, {"pause": {}}],
        **extra,
    }


@pytest.mark.parametrize("kind", list(ROUTERS))
def test_the_routes_of_a_managed_spec_name_its_objects_and_resolved_deployments(
    kind: str,
) -> None:
    spec = parse_spec(managed(ROUTERS[kind])).resolved()
    stored = RoutesRef.of(spec).to_dict()
    name = {"nginx": "ingress", "istio": "virtualService", "gateway": "httproute"}.get(kind)
    assert stored == {
        "kind": kind,
        **({name: "app"} if name else {}),
        "service": "app",
        "stable": "app-primary",
        "canary": "app",
    }
    # what the router's cleanup needs comes back unchanged
    routes = parse_routes(stored)
    assert routes == RoutesRef.of(spec)
    assert routes.router_spec().kind == kind


def test_the_routes_never_hold_header_values_or_cookies() -> None:
    for router in ROUTERS.values():
        stored = str(RoutesRef.of(parse_spec(managed(router)).resolved()).to_dict())
        assert "tester-token" not in stored and "X-Canary" not in stored
        assert "cookie" not in stored and "header" not in stored


def test_the_routes_of_a_pair_spec_keep_the_mirror_and_the_canary_namespace() -> None:
    spec = parse_spec({
        "name": "app", "namespace": "shop", "stable": "app-v1", "canary": "app-v2",
        "canaryNamespace": "shop-next", "service": "app",
        "router": {"kind": "istio", "virtualService": "vs", "mirror": 20},
        "steps": [{"setCanaryScale": 10}, {"setWeight": 50}],
    })  # fmt: skip
    stored = RoutesRef.of(spec).to_dict()
    assert stored == {
        "kind": "istio",
        "virtualService": "vs",
        "mirror": 20.0,
        "service": "app",
        "stable": "app-v1",
        "canary": "app-v2",
        "canaryNamespace": "shop-next",
    }
    assert parse_routes(stored).router_spec().mirror == 20.0


GOOD = {"kind": "nginx", "ingress": "app", "service": "app", "stable": "app-primary",
        "canary": "app"}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ingress": None}, "status.routes.ingress"),  # required by the nginx router
        ({"httproute": "app"}, "status.routes.httproute"),  # not the nginx router's
        ({"kind": "traefik"}, "status.routes.kind"),
        ({"stable": "App_Primary"}, "status.routes.stable"),
        ({"service": None}, "status.routes.service"),
        ({"extra": 1}, "status.routes.extra"),
        ({"mirror": 20}, "status.routes.mirror"),  # the istio router's only
    ],
)
def test_unreadable_routes_are_a_spec_error_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    data = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(SpecError) as err:
        parse_routes(data)
    assert err.value.field == field


@pytest.mark.parametrize("value", ["nginx", ["app"], 3])
def test_routes_that_are_not_a_mapping_are_a_spec_error(value: Any) -> None:
    with pytest.raises(SpecError) as err:
        parse_routes(value)
    assert err.value.field == "status.routes"


def test_unreadable_routes_leave_the_rest_of_the_status_readable() -> None:
    """Opaque to the machine: a hand-edited record is reported where it is used (the
    deletion), never as a status that cannot be read (which would look like no rollout)."""
    status = CanaryStatus.from_dict({"phase": "Paused", "weight": 50, "routes": {"kind": "x"}})
    assert status.phase.value == "Paused" and status.weight == 50
    assert status.to_dict()["routes"] == {"kind": "x"}
    assert CanaryStatus.from_dict({"phase": "Paused"}).routes is None

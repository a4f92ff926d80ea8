"""The Gateway API router on the real control plane with the Gateway API's own CRDs:
backendRef weights on the owned rules only, tester rules, promotion, rollback,
cross-namespace references, races and bad references."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Service, ServiceAccount
from lightkube.types import PatchType

from canaryctl.errors import SpecError
from canaryctl.routers import GatewayRouter
from canaryctl.routers._patch import HTTPRoute
from helpers import wait_until
from routers.conftest import App, Interfering, create, deployment, ready, service

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("installed_crds")]

PREFIX = {"path": {"type": "PathPrefix", "value": "/"}}


def http_route(backend: dict[str, Any]) -> dict[str, Any]:
    """An HTTPRoute with an unrelated admin rule and the main rule to `backend`."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "app", "annotations": {"team": "web"}},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "hostnames": ["app.example.com"],
            "rules": [
                {
                    "name": "admin",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "backendRefs": [{"name": "admin", "port": 80}],
                },
                {
                    "matches": [PREFIX],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"add": [{"name": "x-env", "value": "prod"}]},
                        }
                    ],
                    "backendRefs": [backend],
                },
            ],
        },
    }


def router(kube: Client, ns: str, **kwargs: Any) -> GatewayRouter:
    options: dict[str, Any] = {
        "name": "app",
        "namespace": ns,
        "httproute": "app",
        "service": "app",
        "stable": "app-v1",
        "canary": "app-v2",
        "header": {"X-Track": "canary"},
        **kwargs,
    }
    return GatewayRouter(kube, **options)


def route(kube: Client, ns: str) -> dict[str, Any]:
    return kube.get(HTTPRoute, "app", namespace=ns).to_dict()


def rules(kube: Client, ns: str) -> list[dict[str, Any]]:
    return route(kube, ns)["spec"]["rules"]


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def start(r: Any) -> None:
    """What the engine does first: validate, then its first tick at weight 0."""
    r.reconcile()
    r.set_weight(0)


def converge(r: GatewayRouter, weight: int, **kwargs: Any) -> None:
    wait_until(lambda: r.set_weight(weight, **kwargs) is not None and r.get_weight() == weight)


def ref(name: str, weight: int, **extra: Any) -> dict[str, Any]:
    """A backendRef as the API server stores it (group and kind defaulted)."""
    return {"group": "", "kind": "Service", "name": name, "port": 80, **extra, "weight": weight}


@pytest.fixture
def gateway(kube: Client, app: App) -> GatewayRouter:
    create(kube, app.namespace, http_route({"name": "app", "port": 80}))
    return router(kube, app.namespace)


def test_weights_go_on_the_owned_rule_and_the_unrelated_rule_is_untouched(
    kube: Client, app: App, gateway: GatewayRouter
) -> None:
    before = route(kube, app.namespace)
    start(gateway)
    converge(gateway, 10)
    after = route(kube, app.namespace)
    assert canonical(after["spec"]["rules"][0]) == canonical(before["spec"]["rules"][0])
    main = after["spec"]["rules"][2]
    assert main["backendRefs"] == [ref("app", 90), ref("app-canary", 10)]
    assert main["filters"] == before["spec"]["rules"][1]["filters"]
    for field in ("parentRefs", "hostnames"):
        assert after["spec"][field] == before["spec"][field]
    assert after["metadata"]["annotations"] == {"team": "web"}
    assert gateway.get_weight() == 10
    converge(gateway, 50)
    assert [b["weight"] for b in rules(kube, app.namespace)[2]["backendRefs"]] == [50, 50]


def test_testers_get_a_header_rule_with_the_owned_rules_match_and_filters(
    kube: Client, app: App, gateway: GatewayRouter
) -> None:
    start(gateway)
    converge(gateway, 10)
    tester = rules(kube, app.namespace)[1]
    assert tester == {
        "name": "canaryctl-app",
        "matches": [
            {**PREFIX, "headers": [{"type": "Exact", "name": "X-Track", "value": "canary"}]}
        ],
        "backendRefs": [ref("app-canary", 1)],
        "filters": rules(kube, app.namespace)[2]["filters"],
    }


def test_promotion_repoints_the_service_and_restores_the_rules_as_they_were(
    kube: Client, app: App, gateway: GatewayRouter
) -> None:
    before = route(kube, app.namespace)
    start(gateway)
    converge(gateway, 100)
    kube.patch(Deployment, "app-v2", {"spec": {"replicas": 2}}, namespace=app.namespace)
    wait_until(lambda: ready(kube, app.namespace, "app-v2") == 2)
    wait_until(
        lambda: gateway.promote() is not None and ready(kube, app.namespace, "app-v1") is None
    )
    assert canonical(route(kube, app.namespace)["spec"]) == canonical(before["spec"])
    assert kube.get(Service, "app", namespace=app.namespace).spec.selector == {
        "app": "app",
        "version": "v2",
    }
    assert gateway.get_weight() == 100
    assert gateway.set_weight(100) == []
    gateway.cleanup()
    assert kube.get(Service, "app", namespace=app.namespace).spec.selector == {"app": "app"}


def test_rollback_and_cleanup_restore_the_route_exactly(
    kube: Client, app: App, gateway: GatewayRouter
) -> None:
    before = route(kube, app.namespace)
    start(gateway)
    converge(gateway, 50)
    gateway.set_weight(0, replicas=(2, 0))
    assert len(rules(kube, app.namespace)) == 2, "withdrawing the canary drops the tester rule"
    gateway.cleanup()
    assert canonical(route(kube, app.namespace)["spec"]) == canonical(before["spec"])
    assert gateway.cleanup() == []


def test_a_rule_added_by_someone_else_mid_write_survives(
    kube: Client, app: App, gateway: GatewayRouter
) -> None:
    start(gateway)
    extra = {
        "name": "hotfix",
        "matches": [{"path": {"type": "Exact", "value": "/x"}}],
        "backendRefs": [{"name": "admin", "port": 80}],
    }

    def add_rule(client: Client) -> None:
        op = [{"op": "add", "path": "/spec/rules/0", "value": extra}]
        client.patch(HTTPRoute, "app", op, namespace=app.namespace, patch_type=PatchType.JSON)

    racing = Interfering(kube, add_rule)
    converge(router(racing, app.namespace), 10)  # type: ignore[arg-type]
    assert racing.interfered == 1
    names = [r.get("name") for r in rules(kube, app.namespace)]
    assert names == ["hotfix", "admin", "canaryctl-app", None]
    assert rules(kube, app.namespace)[3]["backendRefs"] == [ref("app", 90), ref("app-canary", 10)]


@pytest.fixture
def canary_namespace(kube: Client) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}-canary"
    kube.create(Namespace(metadata=ObjectMeta(name=name)))
    wait_until(lambda: list(kube.list(ServiceAccount, namespace=name)), timeout=30)
    yield name
    kube.delete(Namespace, name)


def test_cross_namespace_backend_needs_a_reference_grant(
    kube: Client, namespace: str, canary_namespace: str
) -> None:
    create(kube, namespace, service("app", {"app": "app"}), deployment("app-v1", "v1", 2))
    create(kube, canary_namespace, service("app", {"app": "app"}), deployment("app-v2", "v2", 1))
    create(kube, namespace, http_route({"name": "app", "port": 80}))
    wait_until(lambda: ready(kube, namespace, "app-v1") == 2)
    wait_until(lambda: ready(kube, canary_namespace, "app-v2") == 1)
    r = router(kube, namespace, canary_namespace=canary_namespace)
    with pytest.raises(SpecError, match="no ReferenceGrant") as err:
        start(r)
    assert err.value.field == "canaryNamespace"
    grant = {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "from-app-routes"},
        "spec": {
            "from": [
                {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": namespace}
            ],
            "to": [{"group": "", "kind": "Service"}],
        },
    }
    create(kube, canary_namespace, grant)
    start(r)
    converge(r, 10)
    assert rules(kube, namespace)[2]["backendRefs"] == [
        ref("app", 90),
        ref("app", 10, namespace=canary_namespace),
    ]


def test_no_weight_moves_to_a_canary_without_ready_endpoints(
    kube: Client, app: App, gateway: GatewayRouter
) -> None:
    start(gateway)
    kube.patch(Deployment, "app-v2", {"spec": {"replicas": 0}}, namespace=app.namespace)
    wait_until(lambda: not gateway.backends.ready("canary"))
    # No weight, and the tester rule goes too: it would lead to a canary with no endpoint.
    assert [str(c) for c in gateway.set_weight(10)] == [
        "patch httproute/app: tester rules removed: 1"
    ]
    assert gateway.get_weight() == 0
    version = route(kube, app.namespace)["metadata"]["resourceVersion"]
    assert gateway.set_weight(10) == []
    assert route(kube, app.namespace)["metadata"]["resourceVersion"] == version


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no-route", "httproute/app not found"),
        ("no-rule-to-service", "has no rule with a backendRef to service/app"),
    ],
)
def test_bad_references_are_spec_errors_that_change_nothing(
    kube: Client, app: App, setup: str, message: str
) -> None:
    if setup == "no-rule-to-service":
        create(kube, app.namespace, http_route({"name": "admin", "port": 80}))
    before = canonical(route(kube, app.namespace)) if setup != "no-route" else None
    service_before = kube.get(Service, "app", namespace=app.namespace).to_dict()
    with pytest.raises(SpecError) as err:
        router(kube, app.namespace).reconcile()
    assert err.value.field == "router.httproute"
    assert message in err.value.reason, err.value.reason
    if before is not None:
        assert canonical(route(kube, app.namespace)) == before
    assert kube.get(Service, "app", namespace=app.namespace).to_dict() == service_before
    assert not [
        s for s in kube.list(Service, namespace=app.namespace) if s.metadata.name == "app-canary"
    ]


def test_a_weight_call_between_repointing_and_retiring_keeps_cleanup_complete(
    kube: Client, app: App, gateway: GatewayRouter
) -> None:
    # Under load the engine may call set_weight(100) again after promote() repointed the
    # Service but before the old Deployment is retired (endpoints lag): the record of the
    # selector keys canaryctl added must survive, or cleanup leaves `version` behind.
    start(gateway)
    converge(gateway, 100)
    kube.patch(Deployment, "app-v2", {"spec": {"replicas": 2}}, namespace=app.namespace)
    wait_until(lambda: ready(kube, app.namespace, "app-v2") == 2)
    gateway.backends.repoint()
    gateway.set_weight(100, replicas=(0, 2))
    annotations = kube.get(Service, "app", namespace=app.namespace).metadata.annotations
    assert annotations["canaryctl.dev/selector-added"] == "version"
    wait_until(
        lambda: gateway.promote() is not None and ready(kube, app.namespace, "app-v1") is None
    )
    gateway.cleanup()
    assert kube.get(Service, "app", namespace=app.namespace).spec.selector == {"app": "app"}

"""The Istio router on the real control plane with Istio's own CRDs: weights on the owned
routes only, tester routes, mirroring, subsets, two Services, two namespaces, races and
bad references."""

from __future__ import annotations

import copy
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
from canaryctl.routers import IstioRouter
from canaryctl.routers._patch import VirtualService
from helpers import destination_rule, wait_until
from routers.conftest import App, Interfering, create, deployment, ready, service

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("installed_crds")]

ADMIN = {
    "name": "admin",
    "match": [{"uri": {"prefix": "/admin"}}],
    "route": [{"destination": {"host": "admin", "port": {"number": 80}}}],
    "timeout": "5s",
}


def virtual_service(destination: dict[str, Any]) -> dict[str, Any]:
    """A VirtualService with an unrelated admin route and the main route to `destination`."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "app", "annotations": {"team": "web"}},
        "spec": {
            "hosts": ["app.example.com"],
            "gateways": ["public"],
            "http": [
                ADMIN,
                {
                    "name": "main",
                    "match": [{"uri": {"prefix": "/"}}],
                    "retries": {"attempts": 3},
                    "route": [{"destination": destination}],
                },
            ],
        },
    }


DESTINATION_RULE = destination_rule()


def router(kube: Client, ns: str, **kwargs: Any) -> IstioRouter:
    options: dict[str, Any] = {
        "name": "app",
        "namespace": ns,
        "virtual_service": "app",
        "service": "app",
        "stable": "app-v1",
        "canary": "app-v2",
        "header": {"X-Track": "canary"},
        **kwargs,
    }
    return IstioRouter(kube, **options)


def vs(kube: Client, ns: str) -> dict[str, Any]:
    return kube.get(VirtualService, "app", namespace=ns).to_dict()


def http(kube: Client, ns: str) -> list[dict[str, Any]]:
    return vs(kube, ns)["spec"]["http"]


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def start(r: Any) -> None:
    """What the engine does first: validate, then its first tick at weight 0."""
    r.reconcile()
    r.set_weight(0)


def converge(r: IstioRouter, weight: int, **kwargs: Any) -> None:
    wait_until(lambda: r.set_weight(weight, **kwargs) is not None and r.get_weight() == weight)


def promote(kube: Client, r: IstioRouter, ns: str) -> None:
    """Give the canary full capacity, then promote until the old stable is gone."""
    converge(r, 100)
    kube.patch(Deployment, "app-v2", {"spec": {"replicas": 2}}, namespace=ns)
    wait_until(lambda: ready(kube, ns, "app-v2") == 2)
    wait_until(lambda: r.promote() is not None and ready(kube, ns, "app-v1") is None)


@pytest.fixture
def subsets(kube: Client, app: App) -> IstioRouter:
    """The seed's Istio example: DestinationRule subsets by version behind one Service."""
    create(kube, app.namespace, virtual_service({"host": "app", "subset": "v1"}), DESTINATION_RULE)
    return router(kube, app.namespace, destination_rule="app")


def test_weights_go_on_the_owned_route_and_the_unrelated_route_is_untouched(
    kube: Client, app: App, subsets: IstioRouter
) -> None:
    before = vs(kube, app.namespace)
    start(subsets)
    converge(subsets, 10)
    after = vs(kube, app.namespace)
    routes = after["spec"]["http"]
    assert canonical(routes[0]) == canonical(before["spec"]["http"][0]) == canonical(ADMIN)
    assert routes[2] == {
        "name": "main",
        "match": [{"uri": {"prefix": "/"}}],
        "retries": {"attempts": 3},
        "route": [
            {"destination": {"host": "app", "subset": "v1"}, "weight": 90},
            {"destination": {"host": "app", "subset": "v2"}, "weight": 10},
        ],
    }
    for field in ("hosts", "gateways"):
        assert after["spec"][field] == before["spec"][field]
    assert after["metadata"]["annotations"] == {"team": "web"}
    assert subsets.get_weight() == 10
    converge(subsets, 50)
    assert [e["weight"] for e in http(kube, app.namespace)[2]["route"]] == [50, 50]


def test_testers_get_a_header_route_to_the_canary_before_the_owned_route(
    kube: Client, app: App, subsets: IstioRouter
) -> None:
    start(subsets)
    converge(subsets, 10)
    assert http(kube, app.namespace)[1] == {
        "name": "canaryctl-app",
        "match": [{"uri": {"prefix": "/"}, "headers": {"x-track": {"exact": "canary"}}}],
        "route": [{"destination": {"host": "app", "subset": "v2"}}],
        "retries": {"attempts": 3},
    }


def test_cookie_route_matches_the_cookie_set_to_always(kube: Client, app: App) -> None:
    create(kube, app.namespace, virtual_service({"host": "app", "subset": "v1"}), DESTINATION_RULE)
    r = router(kube, app.namespace, destination_rule="app", header=None, cookie="canary")
    start(r)
    converge(r, 10)
    match = http(kube, app.namespace)[1]["match"]
    assert match == [
        {"uri": {"prefix": "/"}, "headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}
    ]


def test_promotion_leaves_the_canary_subset_alone_and_retires_the_stable(
    kube: Client, app: App, subsets: IstioRouter
) -> None:
    start(subsets)
    promote(kube, subsets, app.namespace)
    routes = http(kube, app.namespace)
    assert canonical(routes[0]) == canonical(ADMIN)
    assert routes[1]["route"] == [{"destination": {"host": "app", "subset": "v2"}}]
    assert len(routes) == 2, "the tester route is gone"
    assert subsets.get_weight() == 100
    assert subsets.set_weight(100) == [], "a late tick at 100 changes nothing"


def test_rollback_and_cleanup_restore_the_virtual_service_exactly(
    kube: Client, app: App, subsets: IstioRouter
) -> None:
    before = vs(kube, app.namespace)
    start(subsets)
    converge(subsets, 50)
    subsets.set_weight(0, replicas=(2, 0))
    assert subsets.get_weight() == 0
    assert len(http(kube, app.namespace)) == 2, "withdrawing the canary drops the tester route"
    subsets.cleanup()
    after = vs(kube, app.namespace)
    assert canonical(after["spec"]) == canonical(before["spec"])
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert subsets.cleanup() == [], "cleanup is idempotent"


def test_two_services_split_by_fqdn_and_promotion_repoints_the_users_service(
    kube: Client, app: App
) -> None:
    ns = app.namespace
    create(kube, ns, virtual_service({"host": "app", "port": {"number": 80}}))
    r = router(kube, ns)
    start(r)
    converge(r, 10)
    canary_host = f"app-canary.{ns}.svc.cluster.local"
    assert http(kube, ns)[2]["route"] == [
        {"destination": {"host": "app", "port": {"number": 80}}, "weight": 90},
        {"destination": {"host": canary_host, "port": {"number": 80}}, "weight": 10},
    ]
    promote(kube, r, ns)
    assert http(kube, ns)[1]["route"] == [{"destination": {"host": "app", "port": {"number": 80}}}]
    selector = kube.get(Service, "app", namespace=ns).spec.selector
    assert selector == {"app": "app", "version": "v2"}
    r.cleanup()
    assert kube.get(Service, "app", namespace=ns).spec.selector == {"app": "app"}
    assert not [s for s in kube.list(Service, namespace=ns) if s.metadata.name == "app-canary"]


@pytest.fixture
def canary_namespace(kube: Client) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}-canary"
    kube.create(Namespace(metadata=ObjectMeta(name=name)))
    wait_until(lambda: list(kube.list(ServiceAccount, namespace=name)), timeout=30)
    yield name
    kube.delete(Namespace, name)


def test_cross_namespace_canary_is_addressed_by_fqdn_and_promoted_there(
    kube: Client, namespace: str, canary_namespace: str
) -> None:
    """The Istio + Helm example: one release per namespace, each with Service `app`."""
    create(kube, namespace, service("app", {"app": "app"}), deployment("app-v1", "v1", 2))
    create(kube, canary_namespace, service("app", {"app": "app"}), deployment("app-v2", "v2", 1))
    stable_host = f"app.{namespace}.svc.cluster.local"
    canary_host = f"app.{canary_namespace}.svc.cluster.local"
    create(kube, namespace, virtual_service({"host": stable_host}))
    wait_until(lambda: ready(kube, namespace, "app-v1") == 2)
    wait_until(lambda: ready(kube, canary_namespace, "app-v2") == 1)
    r = router(kube, namespace, canary_namespace=canary_namespace)
    assert r.reconcile() == [], "nothing to create: both releases have their Service"
    r.set_weight(0)
    converge(r, 10)
    routes = http(kube, namespace)
    assert routes[1]["route"] == [{"destination": {"host": canary_host}}]
    assert routes[2]["route"] == [
        {"destination": {"host": stable_host}, "weight": 90},
        {"destination": {"host": canary_host}, "weight": 10},
    ]
    converge(r, 100)
    kube.patch(Deployment, "app-v2", {"spec": {"replicas": 2}}, namespace=canary_namespace)
    wait_until(lambda: ready(kube, canary_namespace, "app-v2") == 2)
    wait_until(lambda: r.promote() is not None and ready(kube, namespace, "app-v1") is None)
    assert http(kube, namespace)[1]["route"] == [{"destination": {"host": canary_host}}]


def test_mirroring_is_a_dark_launch_that_ends_where_the_weight_begins(
    kube: Client, app: App
) -> None:
    create(kube, app.namespace, virtual_service({"host": "app", "subset": "v1"}), DESTINATION_RULE)
    r = router(kube, app.namespace, destination_rule="app", header=None, mirror_percent=20)
    start(r)
    # Weight 0 with a ready canary: copies of 20% of the requests, none answered by it.
    wait_until(lambda: r.set_weight(0) is not None and "mirror" in http(kube, app.namespace)[1])
    main = http(kube, app.namespace)[1]
    assert main["mirror"] == {"host": "app", "subset": "v2"}
    assert main["mirrorPercentage"] == {"value": 20}
    assert [e["weight"] for e in main["route"]] == [100, 0]
    generation = vs(kube, app.namespace)["metadata"]["generation"]
    for _ in range(5):
        assert r.set_weight(0) == [], "the stored mirror (20, written 20.0) is no change"
    assert vs(kube, app.namespace)["metadata"]["generation"] == generation
    # Weighted traffic: the canary answers its share; no copies on top of it.
    converge(r, 10)
    assert "mirror" not in http(kube, app.namespace)[1]
    assert "mirrorPercentage" not in http(kube, app.namespace)[1]
    converge(r, 0)
    assert http(kube, app.namespace)[1]["mirrorPercentage"] == {"value": 20}
    r.set_weight(0, replicas=(2, 0))
    assert "mirror" not in http(kube, app.namespace)[1], "withdrawn: nothing to mirror to"


def test_a_route_added_by_someone_else_mid_write_survives(
    kube: Client, app: App, subsets: IstioRouter
) -> None:
    start(subsets)
    hotfix = {"name": "hotfix", "match": [{"uri": {"exact": "/x"}}], "route": ADMIN["route"]}

    def add_route(client: Client) -> None:
        op = [{"op": "add", "path": "/spec/http/0", "value": hotfix}]
        client.patch(VirtualService, "app", op, namespace=app.namespace, patch_type=PatchType.JSON)

    racing = Interfering(kube, add_route)
    converge(router(racing, app.namespace, destination_rule="app"), 10)  # type: ignore[arg-type]
    assert racing.interfered == 1
    names = [r.get("name") for r in http(kube, app.namespace)]
    assert names == ["hotfix", "admin", "canaryctl-app", "main"]
    assert [e["weight"] for e in http(kube, app.namespace)[3]["route"]] == [90, 10]


def test_no_weight_moves_to_a_canary_without_ready_endpoints(
    kube: Client, app: App, subsets: IstioRouter
) -> None:
    start(subsets)
    kube.patch(Deployment, "app-v2", {"spec": {"replicas": 0}}, namespace=app.namespace)
    wait_until(lambda: not subsets.backends.ready("canary"))
    # No weight, and the tester route goes too: it would lead to a canary with no endpoint.
    assert [str(c) for c in subsets.set_weight(10)] == [
        "patch virtualservice/app: tester routes removed: 1"
    ]
    assert subsets.get_weight() == 0
    before = vs(kube, app.namespace)["metadata"]["resourceVersion"]
    assert subsets.set_weight(10) == []
    assert vs(kube, app.namespace)["metadata"]["resourceVersion"] == before


@pytest.mark.parametrize(
    ("setup", "field", "message"),
    [
        ("no-virtual-service", "router.virtualService", "virtualservice/app not found"),
        ("no-route-to-host", "router.virtualService", "has no http route to host app"),
        ("no-canary-subset", "router.destinationRule", "no subset selecting only the canary"),
        ("other-destination", "router.virtualService", "also sends traffic to admin"),
        ("no-destination-rule", "router.destinationRule", "destinationrule/app not found"),
    ],
)
def test_bad_references_are_spec_errors_that_change_nothing(
    kube: Client, app: App, setup: str, field: str, message: str
) -> None:
    ns = app.namespace
    doc = virtual_service({"host": "app", "subset": "v1"})
    rule = copy.deepcopy(DESTINATION_RULE)
    if setup == "no-route-to-host":
        doc["spec"]["http"] = [ADMIN]
    if setup == "no-canary-subset":
        rule["spec"]["subsets"] = rule["spec"]["subsets"][:1]
    if setup == "other-destination":
        doc["spec"]["http"][1]["route"] = [
            {"destination": {"host": "app", "subset": "v1"}, "weight": 80},
            {"destination": {"host": "admin"}, "weight": 20},
        ]
    if setup != "no-virtual-service":
        create(kube, ns, doc)
    if setup != "no-destination-rule":
        create(kube, ns, rule)
    before = canonical(vs(kube, ns)) if setup != "no-virtual-service" else None
    service_before = kube.get(Service, "app", namespace=ns).to_dict()
    with pytest.raises(SpecError) as err:
        router(kube, ns, destination_rule="app").reconcile()
    assert err.value.field == field
    assert message in err.value.reason, err.value.reason
    if before is not None:
        assert canonical(vs(kube, ns)) == before
    assert kube.get(Service, "app", namespace=ns).to_dict() == service_before


def test_services_mode_needs_a_route_to_the_service_without_subset(kube: Client, app: App) -> None:
    create(kube, app.namespace, virtual_service({"host": "app", "subset": "v1"}))
    with pytest.raises(SpecError, match="has no http route to host app"):
        router(kube, app.namespace).reconcile()
    assert not [
        s for s in kube.list(Service, namespace=app.namespace) if s.metadata.name == "app-canary"
    ]

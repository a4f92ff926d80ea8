"""The NGINX router on the real control plane: the canary Ingress it creates and weights,
header/cookie routes, capacity before traffic, promotion, rollback and bad references."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service
from lightkube.resources.networking_v1 import Ingress

from canaryctl.errors import SpecError
from canaryctl.routers import NginxRouter
from helpers import wait_until
from routers.conftest import App, Interfering, create, deployment, other_writer_patch, ready

pytestmark = pytest.mark.integration
W = "nginx.ingress.kubernetes.io/"


def primary_ingress() -> dict[str, Any]:
    """Two hosts to `app`, one path to another Service, TLS, a class and some annotations."""

    def path(p: str, service: str, port: dict[str, Any]) -> dict[str, Any]:
        return {
            "path": p,
            "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": port}},
        }

    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "app",
            "annotations": {W + "affinity": "cookie", W + "rewrite-target": "/", "team": "web"},
        },
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["app.example.com"], "secretName": "app-tls"}],
            "rules": [
                {
                    "host": "app.example.com",
                    "http": {
                        "paths": [
                            path("/", "app", {"number": 80}),
                            path("/admin", "admin", {"number": 80}),
                        ]
                    },
                },
                {
                    "host": "www.example.com",
                    "http": {"paths": [path("/", "app", {"name": "http"})]},
                },
            ],
        },
    }


def router(kube: Client, ns: str, **kwargs: Any) -> NginxRouter:
    options: dict[str, Any] = {
        "name": "app",
        "namespace": ns,
        "ingress": "app",
        "service": "app",
        "stable": "app-v1",
        "canary": "app-v2",
        "header": {"X-Track": "canary"},
        **kwargs,
    }
    return NginxRouter(kube, **options)


def get(kube: Client, res: Any, name: str, ns: str) -> dict[str, Any] | None:
    try:
        return kube.get(res, name, namespace=ns).to_dict()
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise


def annotations(kube: Client, ns: str) -> dict[str, str]:
    canary = get(kube, Ingress, "app-canary", ns)
    assert canary is not None, "the canary Ingress exists"
    return {k: v for k, v in canary["metadata"]["annotations"].items() if k.startswith(W)}


@pytest.fixture
def nginx(kube: Client, app: App) -> NginxRouter:
    create(kube, app.namespace, primary_ingress())
    return router(kube, app.namespace)


def start(r: Any) -> None:
    """What the engine does first: validate, then its first tick at weight 0."""
    r.reconcile()
    r.set_weight(0)


def converge(r: NginxRouter, weight: int, **kwargs: Any) -> None:
    """Call set_weight like the engine's ticks do until the weight is stored."""
    wait_until(lambda: r.set_weight(weight, **kwargs) is not None and r.get_weight() == weight)


def test_canary_ingress_copies_the_routes_to_the_stable_service_with_tls_and_class(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    primary_before = get(kube, Ingress, "app", app.namespace)
    changes = nginx.reconcile()
    assert {str(c).split(":")[0] for c in changes} == {
        "create service/app-canary",
        "patch service/app",
        "create ingress/app-canary",
    }
    assert get(kube, Ingress, "app-canary", app.namespace) is None, "reconcile only validates"
    nginx.set_weight(0)
    canary = get(kube, Ingress, "app-canary", app.namespace)
    assert canary is not None
    assert canary["spec"] == {
        "ingressClassName": "nginx",
        "tls": [{"hosts": ["app.example.com"], "secretName": "app-tls"}],
        "rules": [
            {
                "host": "app.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "app-canary", "port": {"number": 80}}},
                        }
                    ]
                },
            },
            {
                "host": "www.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {"name": "app-canary", "port": {"name": "http"}}
                            },
                        }
                    ]
                },
            },
        ],
    }
    assert annotations(kube, app.namespace) == {
        W + "canary": "true",
        W + "canary-weight": "0",
        W + "canary-by-header": "X-Track",  # the canary is ready: testers may reach it
        W + "canary-by-header-value": "canary",
        W + "affinity": "cookie",  # NGINX reads affinity on a canary; rewrite-target it inherits
    }
    assert canary["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "canaryctl",
        "canaryctl.dev/canary": "app",
    }
    owners = canary["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("Deployment", "app-v2")]
    assert get(kube, Ingress, "app", app.namespace) == primary_before, "primary never written"


def test_services_split_the_versions_and_what_canaryctl_made_is_labelled_and_owned(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    start(nginx)
    stable = get(kube, Service, "app", app.namespace)
    canary = get(kube, Service, "app-canary", app.namespace)
    assert stable is not None and canary is not None
    # The seed's Service selects both versions: narrowed to v1 for the rollout, and recorded.
    assert stable["spec"]["selector"] == {"app": "app", "version": "v1"}
    assert stable["metadata"]["annotations"] == {"canaryctl.dev/selector-added": "version"}
    assert canary["spec"]["selector"] == {"app": "app", "version": "v2"}
    assert canary["spec"]["ports"][0]["port"] == 80
    assert canary["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "canaryctl"
    dep = kube.get(Deployment, "app-v2", namespace=app.namespace)
    assert [o["uid"] for o in canary["metadata"]["ownerReferences"]] == [dep.metadata.uid]


def test_each_weight_is_stored_on_the_canary_ingress_with_the_header_route(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    start(nginx)
    for weight in (10, 50):
        converge(nginx, weight)
        assert annotations(kube, app.namespace) == {
            W + "canary": "true",
            W + "canary-weight": str(weight),
            W + "canary-by-header": "X-Track",
            W + "canary-by-header-value": "canary",
            W + "affinity": "cookie",
        }
        assert nginx.get_weight() == weight
    assert nginx.set_weight(50) == [], "a second call at the same weight changes nothing"


def test_cookie_route_is_the_canary_by_cookie_annotation(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    r = router(kube, app.namespace, header=None, cookie="canary")
    start(r)
    converge(r, 10)
    assert annotations(kube, app.namespace)[W + "canary-by-cookie"] == "canary"
    assert W + "canary-by-header" not in annotations(kube, app.namespace)


def test_no_weight_moves_to_a_canary_without_ready_endpoints(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    start(nginx)
    # The canary's Service is created by the first reconcile, and its endpoints come a
    # moment later: until then the header route is rightly withheld.
    wait_until(lambda: nginx.backends.ready("canary"))
    nginx.set_weight(0)
    assert W + "canary-by-header" in annotations(kube, app.namespace)
    kube.patch(Deployment, "app-v2", {"spec": {"replicas": 0}}, namespace=app.namespace)
    wait_until(lambda: ready(kube, app.namespace, "app-v2") == 0)
    wait_until(lambda: not nginx.backends.ready("canary"))
    # No weight, and the header route goes too: it would lead to a canary with no endpoint.
    changes = nginx.set_weight(10)
    assert {c.detail.split(":")[0] for c in changes} == {
        "nginx.ingress.kubernetes.io/canary-by-header",
        "nginx.ingress.kubernetes.io/canary-by-header-value",
    }
    assert all(c.detail.endswith("-> None") for c in changes)
    assert nginx.get_weight() == 0
    assert nginx.set_weight(10) == []
    kube.patch(Deployment, "app-v2", {"spec": {"replicas": 1}}, namespace=app.namespace)
    converge(nginx, 10)


def test_withdrawing_the_canary_sets_weight_zero_and_drops_the_header_route(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    start(nginx)
    converge(nginx, 50)
    nginx.set_weight(0, replicas=(2, 0))
    assert annotations(kube, app.namespace) == {
        W + "canary": "true",
        W + "canary-weight": "0",
        W + "affinity": "cookie",
    }


def test_rollback_then_cleanup_removes_the_canary_ingress_and_restores_the_service(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    service_before = get(kube, Service, "app", app.namespace)
    start(nginx)
    converge(nginx, 50)
    nginx.set_weight(0, replicas=(2, 0))
    assert nginx.get_weight() == 0, "weight goes to 0 before the canary Ingress goes"
    changes = [str(c) for c in nginx.cleanup()]
    assert "delete ingress/app-canary: rollout finished" in changes
    assert get(kube, Ingress, "app-canary", app.namespace) is None
    assert get(kube, Service, "app-canary", app.namespace) is None
    after = get(kube, Service, "app", app.namespace)
    assert after is not None and service_before is not None
    assert after["spec"]["selector"] == service_before["spec"]["selector"] == {"app": "app"}
    assert "annotations" not in after["metadata"]
    assert nginx.cleanup() == [], "cleanup is idempotent"


def test_promotion_repoints_the_primary_service_then_removes_the_canary_ingress(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    start(nginx)
    converge(nginx, 100)
    kube.patch(Deployment, "app-v2", {"spec": {"replicas": 2}}, namespace=app.namespace)
    wait_until(lambda: ready(kube, app.namespace, "app-v2") == 2)
    wait_until(lambda: nginx.promote() is not None and ready(kube, app.namespace, "app-v1") is None)
    assert get(kube, Ingress, "app-canary", app.namespace) is None
    stable = get(kube, Service, "app", app.namespace)
    assert stable is not None and stable["spec"]["selector"] == {"app": "app", "version": "v2"}
    assert nginx.get_weight() == 100, "the primary Ingress serves the new version"
    assert nginx.set_weight(100) == [], "a late tick at 100 does not recreate the canary"
    nginx.cleanup()
    stable = get(kube, Service, "app", app.namespace)
    assert stable is not None and stable["spec"]["selector"] == {"app": "app"}
    assert get(kube, Service, "app-canary", app.namespace) is None


def test_version_specific_service_is_repointed_and_kept_at_promotion(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    kube.patch(Service, "app", {"spec": {"selector": {"version": "v1"}}}, namespace=app.namespace)
    start(nginx)
    stable = get(kube, Service, "app", app.namespace)
    assert stable is not None and "annotations" not in stable["metadata"], "nothing to narrow"
    converge(nginx, 100)
    kube.patch(Deployment, "app-v2", {"spec": {"replicas": 2}}, namespace=app.namespace)
    wait_until(lambda: ready(kube, app.namespace, "app-v2") == 2)
    wait_until(lambda: nginx.promote() is not None and ready(kube, app.namespace, "app-v1") is None)
    nginx.cleanup()
    stable = get(kube, Service, "app", app.namespace)
    assert stable is not None and stable["spec"]["selector"] == {"app": "app", "version": "v2"}


def test_someone_editing_the_canary_ingress_mid_write_keeps_their_change(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    start(nginx)
    edit = other_writer_patch(
        Ingress, "app-canary", app.namespace, {"metadata": {"annotations": {"owner": "sre"}}}
    )
    racing = Interfering(kube, edit)
    converge(router(racing, app.namespace), 10)  # type: ignore[arg-type]
    assert racing.interfered == 1
    canary = get(kube, Ingress, "app-canary", app.namespace)
    assert canary is not None
    assert canary["metadata"]["annotations"]["owner"] == "sre"
    assert canary["metadata"]["annotations"][W + "canary-weight"] == "10"


def test_dry_run_lists_the_changes_and_writes_nothing(
    kube: Client, app: App, nginx: NginxRouter
) -> None:
    changes = [str(c) for c in nginx.set_weight(10, dry_run=True)]
    assert "create ingress/app-canary: canary of ingress/app at weight 10" in changes
    assert get(kube, Ingress, "app-canary", app.namespace) is None
    assert get(kube, Service, "app-canary", app.namespace) is None


@pytest.mark.parametrize(
    ("setup", "field", "message"),
    [
        ("no-ingress", "router.ingress", "ingress/app not found"),
        ("wrong-service", "router.ingress", "routes no path to service/app"),
        ("foreign-canary", "router.ingress", "ingress/app-canary exists and was not created"),
        ("no-version-label", "canary", "agree on every label"),
    ],
)
def test_bad_references_are_spec_errors_that_change_nothing(
    kube: Client, app: App, setup: str, field: str, message: str
) -> None:
    ingress = primary_ingress()
    if setup == "wrong-service":
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                path["backend"]["service"]["name"] = "elsewhere"
    if setup != "no-ingress":
        create(kube, app.namespace, ingress)
    if setup == "foreign-canary":
        create(kube, app.namespace, {**primary_ingress(), "metadata": {"name": "app-canary"}})
    canary = "app-v2"
    if setup == "no-version-label":
        canary = "app-twin"  # pods labelled exactly like the stable's
        create(kube, app.namespace, deployment("app-twin", "v1", 0))
    service_before = get(kube, Service, "app", app.namespace)
    with pytest.raises(SpecError) as err:
        router(kube, app.namespace, canary=canary).reconcile()
    assert err.value.field == field
    assert message in err.value.reason, err.value.reason
    assert get(kube, Service, "app", app.namespace) == service_before
    assert get(kube, Service, "app-canary", app.namespace) is None
    if setup != "foreign-canary":
        assert get(kube, Ingress, "app-canary", app.namespace) is None

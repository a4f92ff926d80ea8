"""The seed example's Ingress and HTTPRoute, applied as they are, are what the nginx and
gateway routers expect: the first steps create the canary objects beside them."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.networking_v1 import Ingress

from canaryctl.kube import manifests
from canaryctl.routers import GatewayRouter, NginxRouter
from canaryctl.routers._patch import HTTPRoute
from helpers import EXAMPLES, wait_until
from routers.conftest import ready

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("installed_crds")]

SEED = EXAMPLES / "pulpocon-app"
NAMES = {
    "name": "pulpocon-app",
    "service": "pulpocon-app",
    "stable": "pulpocon-app-v1",
    "canary": "pulpocon-app-v2",
    "header": {"X-Track": "canary"},
}


def seed(kube: Client, namespace: str, route: str) -> None:
    files = [SEED / f for f in ("service.yaml", "app-v1.yaml", "app-v2.yaml")]
    manifests.apply(kube, manifests.load([*files, SEED / route]), namespace)
    wait_until(lambda: ready(kube, namespace, "pulpocon-app-v1") == 10, timeout=60)
    wait_until(lambda: ready(kube, namespace, "pulpocon-app-v2") == 1, timeout=60)


def step_to(router: Any, weight: int) -> None:
    router.reconcile()
    wait_until(lambda: router.set_weight(weight) is not None and router.get_weight() == weight)


def test_nginx_router_takes_the_example_ingress(kube: Client, namespace: str) -> None:
    seed(kube, namespace, "ingress/ingress.yaml")
    router = NginxRouter(kube, namespace=namespace, ingress="pulpocon-app", **NAMES)
    step_to(router, 10)
    canary = kube.get(Ingress, "pulpocon-app-canary", namespace=namespace).to_dict()
    annotations = canary["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "10"
    assert canary["spec"]["ingressClassName"] == "nginx"
    (rule,) = canary["spec"]["rules"]
    assert rule["host"] == "pulpocon-app.local"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "pulpocon-app-canary"


def test_gateway_router_takes_the_example_httproute(kube: Client, namespace: str) -> None:
    seed(kube, namespace, "gateway/httproute.yaml")
    router = GatewayRouter(kube, namespace=namespace, httproute="pulpocon-app", **NAMES)
    step_to(router, 10)
    route = kube.get(HTTPRoute, "pulpocon-app", namespace=namespace).to_dict()
    main = route["spec"]["rules"][-1]
    assert {r["name"]: r.get("weight") for r in main["backendRefs"]} == {
        "pulpocon-app": 90,
        "pulpocon-app-canary": 10,
    }
    (parent,) = route["spec"]["parentRefs"]
    assert (parent["name"], parent["namespace"]) == ("traefik", "canaryctl-system")

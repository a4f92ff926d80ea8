"""Small helpers shared by the tests (integration tests, and the benchmarks' pure halves)."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
BENCHMARKS = REPO / "benchmarks"


def load_benchmark(path: str, name: str) -> ModuleType:
    """The benchmark script at `path` (below benchmarks/) imported as module `name`.

    The benchmarks are scripts, not a package; the module is registered in sys.modules
    under `name` first, so a script that imports a sibling by that name gets this one."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def wait_until(probe: Callable[[], T], timeout: float = 60.0, interval: float = 0.25) -> T:
    """Poll probe() until it returns something truthy; fail with its last value on timeout."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        time.sleep(interval)
        last = probe()
    return last


def found(kube: Client, res: Any, name: str, ns: str) -> Any | None:
    """The object, or None when it does not exist (other API errors raise)."""
    try:
        return kube.get(res, name, namespace=ns)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise


def replicas(kube: Client, ns: str, name: str) -> tuple[int, int] | None:
    """(desired, ready) of a Deployment, None when it does not exist."""
    dep = found(kube, Deployment, name, ns)
    if dep is None:
        return None
    return dep.spec.replicas, (dep.status.readyReplicas or 0) if dep.status else 0


def app_service() -> dict[str, Any]:
    """Service `app`: port 80 to 8080 on every pod labelled app=app (both versions)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "app"},
        "spec": {"selector": {"app": "app"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def app_deployment(
    name: str,
    version: str,
    replicas: int,
    container: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Deployment `name` of one version, pods labelled app=app and version; `container`
    adds fields to its one container (image app:<version>), `annotations` go on its pods."""
    labels = {"app": "app", "version": version}
    pod_meta: dict[str, Any] = {"labels": labels}
    if annotations is not None:
        pod_meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": pod_meta,
                "spec": {
                    "containers": [{"name": "app", "image": f"app:{version}", **(container or {})}]
                },
            },
        },
    }


def app_spec(namespace: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The rollout spec of `app` in `namespace`: app-v1 to app-v2 behind Service app, ready
    deadline 30 s; `extra` adds or replaces top-level fields (router, drainDelay, ...)."""
    return {
        "name": "app",
        "namespace": namespace,
        "stable": "app-v1",
        "canary": "app-v2",
        "service": "app",
        "steps": steps,
        "health": {"readyDeadline": "30s"},
        **extra,
    }


def hpa(name: str, low: int, high: int) -> dict[str, Any]:
    """An HPA on deployment `name` (CPU target: no metrics here, so only min/max act)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": high,
        },
    }


def app_ingress(name: str = "app", host: str = "app.example.com") -> dict[str, Any]:
    """The user's Ingress `name` (class nginx, `host`, / to Service `name`:80)."""
    backend = {"service": {"name": name, "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": host,
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ],
        },
    }


def destination_rule() -> dict[str, Any]:
    """Istio's DestinationRule `app` with the subsets v1 and v2 (by the `version` label)."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "app"},
        "spec": {
            "host": "app",
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    }


def route_objects(kind: str) -> list[dict[str, Any]]:
    """The user's routing objects for a router kind, each with an unrelated route."""
    if kind == "nginx":
        return [app_ingress()]
    if kind == "istio":
        return [
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "app"},
                "spec": {
                    "hosts": ["app"],
                    "http": [
                        {
                            "name": "admin",
                            "match": [{"uri": {"prefix": "/admin"}}],
                            "route": [{"destination": {"host": "admin"}}],
                        },
                        {
                            "name": "main",
                            "route": [{"destination": {"host": "app", "subset": "v1"}}],
                        },
                    ],
                },
            },
            destination_rule(),
        ]
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "app"},
            "spec": {
                "parentRefs": [{"name": "public"}],
                "rules": [
                    {
                        "name": "admin",
                        "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                        "backendRefs": [{"name": "admin", "port": 80}],
                    },
                    {"backendRefs": [{"name": "app", "port": 80}]},
                ],
            },
        }
    ]

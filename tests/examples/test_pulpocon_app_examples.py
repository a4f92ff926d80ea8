"""The seed example's manifests fit the app they run and the routers that move them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from canaryctl.core.durations import parse_duration
from helpers import EXAMPLES, REPO

SEED = EXAMPLES / "pulpocon-app"
IMAGE = "canaryctl.local/pulpocon-app"
APP_PORTS = {"http": 8080, "probe": 8086, "metrics": 9101}


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def deployments() -> list[dict[str, Any]]:
    return [load(SEED / f)[0] for f in ("app-v1.yaml", "app-v2.yaml")]


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: d["metadata"]["name"])
def test_deployment_runs_the_locally_built_app_with_probes_metrics_and_a_drain(
    deployment: dict[str, Any],
) -> None:
    template = deployment["spec"]["template"]
    spec = template["spec"]
    (container,) = spec["containers"]
    name, tag = container["image"].rsplit(":", 1)
    assert name == IMAGE and tag and tag != "latest"
    assert container["imagePullPolicy"] == "IfNotPresent"  # no registry to pull from
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == APP_PORTS

    env = {e["name"]: e for e in container["env"]}
    assert env["VERSION"]["value"] == template["metadata"]["labels"]["version"]
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert float(env["ERROR_RATE"]["value"]) == 0.0

    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "probe"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "probe"}
    prestop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    in_flight = parse_duration(env["SHUTDOWN_TIMEOUT"]["value"])
    assert prestop >= 5
    assert spec["terminationGracePeriodSeconds"] >= prestop + in_flight

    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == APP_PORTS["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_image_is_built_from_the_apps_source_folder() -> None:
    assert (REPO / "images" / "pulpocon-app" / "go.mod").exists()


def test_ingress_and_httproute_lead_to_the_seed_service() -> None:
    (service,) = load(SEED / "service.yaml")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    (ingress,) = load(SEED / "ingress" / "ingress.yaml")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in ports

    (route,) = load(SEED / "gateway" / "httproute.yaml")
    assert route["spec"]["parentRefs"] == [{"name": "traefik", "namespace": "canaryctl-system"}]
    assert route["spec"]["hostnames"] == [rule["host"]]
    (ref,) = route["spec"]["rules"][0]["backendRefs"]
    assert ref["name"] == service["metadata"]["name"] and ref["port"] in ports.values()

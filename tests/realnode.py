"""Helpers for tests on the real node: the echo image, Deployments placed on the node,
and requests from the host through kube-proxy."""

from __future__ import annotations

import math
import re
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from lightkube import Client, codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from canaryctl.kube import manifests
from canaryctl.testenv import ClusterState, binaries, images
from canaryctl.testenv.dataplane import REAL_POD_PLACEMENT
from helpers import wait_until

ECHO_SOURCE = Path(__file__).resolve().parent / "dataplane" / "echo"


def echo_image() -> images.Image:
    """The tests' HTTP server image (built once, cached by source hash)."""
    return images.build_image(ECHO_SOURCE, "echo")


def load_echo(state: ClusterState) -> str:
    """Build the echo image and import it into the real node; returns its reference."""
    from canaryctl.testenv import LocalCluster

    image = echo_image()
    LocalCluster(state.name).load_image(image)
    return image.ref


def echo_template(labels: dict[str, str], image: str, version: str) -> dict[str, Any]:
    """A pod template of the echo server on the real node, Ready when it answers /ready."""
    return {
        "metadata": {"labels": labels},
        "spec": {
            **REAL_POD_PLACEMENT,
            "terminationGracePeriodSeconds": 5,
            "enableServiceLinks": False,
            "containers": [
                {
                    "name": "echo",
                    "image": image,
                    # Built locally: there is no registry to pull from.
                    "imagePullPolicy": "Never",
                    "env": [{"name": "VERSION", "value": version}],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {
                        "httpGet": {"path": "/ready", "port": "http"},
                        "periodSeconds": 1,
                    },
                }
            ],
        },
    }


def deployment(name: str, version: str, replicas: int, image: str) -> dict[str, Any]:
    """A Deployment of the echo server on the real node, Ready when it answers /ready."""
    labels = {"app": "echo", "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": echo_template(labels, image, version),
        },
    }


def service(name: str = "echo") -> dict[str, Any]:
    """A ClusterIP Service in front of every echo pod, whatever its version."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }


def apply(kube: Client, namespace: str, *docs: dict[str, Any]) -> None:
    """Server-side apply plain dicts."""
    manifests.apply(kube, [codecs.from_dict(d) for d in docs], namespace)


def ready_pods(kube: Client, namespace: str) -> list[Pod]:
    """Pods of the namespace that are Ready."""
    return [
        p
        for p in kube.list(Pod, namespace=namespace)
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def available(kube: Client, name: str, namespace: str) -> int:
    """Available replicas of a Deployment."""
    return kube.get(Deployment, name, namespace=namespace).status.availableReplicas or 0


def cluster_ip(kube: Client, name: str, namespace: str) -> str:
    """The ClusterIP of a Service."""
    return str(kube.get(Service, name, namespace=namespace).spec.clusterIP)


def echo_version(response: httpx.Response) -> str:
    """The version in an echo server's answer."""
    return response.text.split()[0]


def ready_endpoints(kube: Client, namespace: str, service: str) -> int:
    """Ready endpoints the EndpointSlices of a Service list."""
    slices = kube.list(
        EndpointSlice, namespace=namespace, labels={"kubernetes.io/service-name": service}
    )
    return sum(
        1
        for s in slices
        for e in s.endpoints or []
        if e.conditions is None or e.conditions.ready is not False
    )


def programmed_endpoints(state: ClusterState, namespace: str, service: str) -> int | None:
    """Endpoints kube-proxy's iptables rules send `service`'s traffic to (None in another
    proxy mode): the KUBE-SVC chain's jumps to KUBE-SEP chains."""
    if state.proxy_mode != "iptables":
        return None
    out = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True
    ).stdout
    # "<ns>/<svc> -> ip:port" or "<ns>/<svc>:<port name> -> ip:port": never the same prefix
    # of another Service (app-primary, app-canary)
    tag = re.compile(rf'--comment "?{re.escape(namespace)}/{re.escape(service)}(:\S+)? -> ')
    return sum(
        1
        for line in out.splitlines()
        if line.startswith("-A KUBE-SVC-") and tag.search(line) and "-j KUBE-SEP-" in line
    )


def wait_programmed(
    state: ClusterState, kube: Client, namespace: str, service: str, ready: int
) -> None:
    """Wait until kube-proxy serves `service` with `ready` endpoints: the EndpointSlices list
    them, and (iptables mode) its rules jump to that many. A split measured before then is
    over the pods programmed first (5 + 1 pods: 1/6 to the one)."""
    wait_until(lambda: ready_endpoints(kube, namespace, service) == ready, timeout=60)
    if state.proxy_mode == "iptables":
        wait_until(lambda: programmed_endpoints(state, namespace, service) == ready, timeout=30)


def split(
    url: str, requests: int, version_of: Callable[[httpx.Response], str] = echo_version
) -> tuple[Counter[str], int]:
    """Answers by version over ``requests`` new connections, and the number of failures.

    A new TCP connection per request: kube-proxy picks a pod per connection, so a kept-alive
    connection would measure one pod.
    """
    versions: Counter[str] = Counter()
    failed = 0
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=5.0, limits=limits) as http:
        for _ in range(requests):
            try:
                r = http.get(url, headers={"Connection": "close"})
            except httpx.HTTPError:
                failed += 1
                continue
            try:
                version = version_of(r) if r.status_code == 200 else None
            except (IndexError, KeyError):
                version = None  # an answer that names no version is a failed request
            if version is None:
                failed += 1
                continue
            versions[version] += 1
    return versions, failed


def binomial_interval(n: int, p: float, z: float = 2.576) -> tuple[float, float]:
    """Normal approximation of the two-sided 99% interval of Binomial(n, p) counts."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - z * sd, n * p + z * sd


def kubectl(state: ClusterState, *args: str, timeout: float = 60) -> str:
    """Run the cluster's kubectl; fail with its stderr."""
    path = binaries.find()["kubectl"]
    proc = subprocess.run(
        [str(path), f"--kubeconfig={state.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout

"""A real Prometheus finding pods through the real API server (kubernetes_sd_configs) and
scraping them by their annotations, as a user's Prometheus does.

The pods are bound to a node nobody runs ("loopback-node") and their status says they run
on 127.0.0.1, where the seed app's real binaries serve: discovery, relabelling and
scraping are the real thing, and nothing is sent to an address outside this host.
A simulated (KWOK) pod with the same annotations stays out: discovery is limited to one
node, so its fake address is never scraped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lightkube import Client, codecs
from lightkube.resources.core_v1 import Node, Pod

from canaryctl.providers.prometheus import PrometheusClient
from canaryctl.providers.templates import Target, error_batch
from canaryctl.testenv import ClusterState
from canaryctl.testenv.poddiscovery import PodDiscovery
from canaryctl.testenv.prometheus import PrometheusServer, find_prometheus
from helpers import wait_until
from seedapp import SeedApp

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

NODE = "loopback-node"
APP = "pulpocon-app"


@pytest.fixture(scope="module")
def loopback_node(kube: Client) -> Iterator[str]:
    """A Node object no kubelet or KWOK runs: pods bound to it keep the status we write."""
    kube.create(codecs.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}))
    yield NODE
    kube.delete(Node, NODE)


def pod(name: str, version: str, metrics_port: int, node: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "canaryctl.local/x:1"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": APP, "version": version},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(metrics_port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": spec,
    }


def running_on_loopback(kube: Client, name: str, namespace: str) -> None:
    """Write the status a kubelet would: Running, with the pod's address on 127.0.0.1."""
    status = {"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}}
    kube.patch(Pod.Status, name, status, namespace=namespace)


def port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_pods_are_discovered_scraped_and_labelled_for_the_builtin_queries(
    kube: Client,
    namespace: str,
    local_cluster: ClusterState,
    loopback_node: str,
    seed_app_binary: Path,
) -> None:
    if find_prometheus() is None:
        pytest.fail("needs the prometheus binary: run `make test` (installs the Debian package)")
    v1_env = {"VERSION": "v1.0.0"}
    v2_env = {"VERSION": "v2.0.0", "ERROR_RATE": "0.25", "ERROR_SEED": "5"}
    with SeedApp(seed_app_binary, v1_env) as v1, SeedApp(seed_app_binary, v2_env) as v2:
        for name, version, app in (("app-v1-a", "v1.0.0", v1), ("app-v2-a", "v2.0.0", v2)):
            kube.create(codecs.from_dict(pod(name, version, port(app.metrics_url), loopback_node)),
                        namespace=namespace)  # fmt: skip
            running_on_loopback(kube, name, namespace)
        # A simulated pod with the same annotations, on a KWOK node.
        kube.create(codecs.from_dict(pod("kwok-pod", "v1.0.0", 9101, None)), namespace=namespace)

        discovery = PodDiscovery.for_cluster(local_cluster, node=loopback_node)
        with (
            PrometheusServer(pods=discovery) as prom,
            PrometheusClient(prom.url) as client,
            httpx.Client(timeout=5) as http,
        ):
            try:
                # Prometheus scrapes each target on its own schedule: wait for both pods,
                # not the first one up.
                targets = wait_until(
                    lambda: len(found := _pod_targets(prom.url, up_only=True)) >= 2 and found,
                    timeout=30,
                )
            except AssertionError:
                assert prom.workdir is not None
                found = (prom.workdir / PodDiscovery.TARGETS_FILE).read_text()
                seen = httpx.get(f"{prom.url}/api/v1/targets", timeout=5).json()["data"]
                error = prom.discovery_error
                raise AssertionError(
                    f"not both pods scraped ({error}); targets: {found}; {seen}"
                ) from None
            assert sorted(t["labels"]["pod"] for t in targets) == ["app-v1-a", "app-v2-a"]
            assert len(_pod_targets(prom.url, up_only=False)) == 2, "one target per pod"
            labels = {t["labels"]["pod"]: t["labels"] for t in targets}
            assert labels["app-v2-a"]["namespace"] == namespace
            assert labels["app-v2-a"]["app"] == APP
            assert labels["app-v2-a"]["version"] == "v2.0.0"

            for _ in range(100):
                http.get(v1.url)
            codes = [http.get(v2.url).status_code for _ in range(200)]
            failed = codes.count(500)

            selector = f'namespace="{namespace}",app="{APP}"'

            def total(version: str, code: str = ".*") -> float | None:
                query = f'sum(http_requests_total{{{selector},version="{version}",code=~"{code}"}})'
                return client.query(query)

            wait_until(lambda: total("v2.0.0") == 200 and total("v1.0.0") == 100, timeout=30)
            assert total("v2.0.0", "5..") == failed
            assert total("v1.0.0", "5..") == 0

            time.sleep(2)  # a few more samples, so the look has a slope
            target = Target(namespace=namespace, app=APP, canary="v2.0.0", stable="v1.0.0")
            batch = error_batch(client, target, "1m")
            assert batch is not None
            assert batch.canary_requests > 0 and batch.stable_requests > 0
            assert batch.stable_errors == 0 and batch.canary_errors > 0


def _pod_targets(url: str, *, up_only: bool) -> list[dict[str, Any]]:
    data = httpx.get(f"{url}/api/v1/targets", params={"state": "active"}, timeout=5).json()
    return [
        t
        for t in data["data"]["activeTargets"]
        if t["scrapePool"] == PodDiscovery.JOB and (t["health"] == "up" or not up_only)
    ]

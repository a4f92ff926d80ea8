"""The seed's app, built locally from images/pulpocon-app, runs from the examples on the real
node: 10 x v1 + 1 x v2 behind the seed's Service, split by pods, counted by its metrics."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
import yaml
from lightkube import Client
from lightkube.resources.core_v1 import Pod

from canaryctl.testenv import ClusterState, LocalCluster, images
from canaryctl.testenv.dataplane import NODE_NAME, on_real_node
from helpers import EXAMPLES, wait_until
from realnode import (
    apply,
    available,
    binomial_interval,
    cluster_ip,
    ready_pods,
    split,
    wait_programmed,
)

pytestmark = [pytest.mark.dataplane, pytest.mark.integration]
SEED = EXAMPLES / "pulpocon-app"
COUNTER = re.compile(r"^http_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)


def _docs() -> list[dict[str, Any]]:
    docs = []
    for name in ("service.yaml", "app-v1.yaml", "app-v2.yaml"):
        for doc in yaml.safe_load_all((SEED / name).read_text()):
            docs.append(on_real_node(doc) if doc["kind"] == "Deployment" else doc)
    return docs


def _version(response: httpx.Response) -> str:
    return str(response.headers["X-App-Version"])


def _served(pods: list[Pod]) -> dict[str, float]:
    """Requests counted by the app's own metrics (port 9101), by version, over all pods."""
    total: dict[str, float] = {}
    for pod in pods:
        text = httpx.get(f"http://{pod.status.podIP}:9101/metrics", timeout=5).text
        for m in COUNTER.finditer(text):
            version = re.search(r'version="([^"]*)"', m["labels"])
            assert version is not None
            total[version[1]] = total.get(version[1], 0) + float(m["value"])
    return total


def test_the_seed_examples_run_the_real_app_on_the_real_node_split_by_ready_pods(
    dataplane_cluster: ClusterState, dataplane_kube: Client, dataplane_namespace: str
) -> None:
    LocalCluster(dataplane_cluster.name).load_image(images.app_image())
    started = time.monotonic()
    apply(dataplane_kube, dataplane_namespace, *_docs())
    wait_until(
        lambda: (
            available(dataplane_kube, "pulpocon-app-v1", dataplane_namespace) == 10
            and available(dataplane_kube, "pulpocon-app-v2", dataplane_namespace) == 1
        ),
        timeout=180,
    )
    ready_s = time.monotonic() - started
    pods = ready_pods(dataplane_kube, dataplane_namespace)
    assert len(pods) == 11 and {p.spec.nodeName for p in pods} == {NODE_NAME}

    url = f"http://{cluster_ip(dataplane_kube, 'pulpocon-app', dataplane_namespace)}/"
    wait_programmed(dataplane_cluster, dataplane_kube, dataplane_namespace, "pulpocon-app", 11)
    wait_until(lambda: split(url, 1, _version)[0], timeout=30)
    before = _served(pods)
    versions, failed = split(url, 1000, _version)
    after = _served(pods)
    low, high = binomial_interval(1000, 1 / 11)
    print(f"\n11 app pods Ready in {ready_s:.1f}s; 1000 requests: {dict(versions)}")
    assert failed == 0
    assert low <= versions["v2.0.0"] <= high, f"99% interval {low:.0f}-{high:.0f}"
    # The app counted every request it answered, under its own version label.
    assert {v: after[v] - before.get(v, 0) for v in after} == dict(versions)

"""The real node's cost: start-up, node Ready, pods Ready against KWOK pods in the same
cluster (the baseline), Service split through kube-proxy, memory of the node's processes,
and down time. Needs root (see `canaryctl testenv up --dataplane`).

Run: sudo .venv/bin/python benchmarks/dataplane.py [--proxy-mode iptables|nftables]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from lightkube import codecs
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Node, Service

from canaryctl.kube import manifests
from canaryctl.kube.client import make_client
from canaryctl.testenv import LocalCluster, dataplane, images
from canaryctl.testenv.components import alive, rss_bytes

ECHO = Path(__file__).resolve().parent.parent / "tests" / "dataplane" / "echo"


def _deployment(name: str, replicas: int, image: str, real: bool) -> dict[str, object]:
    labels = {"app": name}
    doc: dict[str, object] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "echo",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "env": [{"name": "VERSION", "value": name}],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8080},
                                "periodSeconds": 1,
                            },
                        }
                    ]
                },
            },
        },
    }
    return dataplane.on_real_node(doc) if real else doc


def _ready_in(kube: object, doc: dict[str, object], replicas: int) -> float:
    started = time.monotonic()
    manifests.apply(kube, [codecs.from_dict(doc)], "default")  # type: ignore[arg-type]
    name = doc["metadata"]["name"]  # type: ignore[index]
    while (
        kube.get(Deployment, name, namespace="default").status.availableReplicas or 0
    ) < replicas:  # type: ignore[attr-defined]
        time.sleep(0.05)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy-mode", default="iptables", choices=dataplane.PROXY_MODES)
    parser.add_argument("--pods", type=int, default=10)
    args = parser.parse_args()
    why = dataplane.missing_requirements(args.proxy_mode)
    if why:
        sys.exit("cannot run a real node here: " + "; ".join(why))
    image = images.build_image(ECHO, "echo")
    cluster = LocalCluster("bench-node", dataplane=True, proxy_mode=args.proxy_mode)
    started = time.monotonic()
    state = cluster.up(timeout=300)
    up_s = time.monotonic() - started
    try:
        kube = make_client(state.kubeconfig)
        cluster.load_image(image)
        node = kube.get(Node, dataplane.NODE_NAME)
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        registered = node.metadata.creationTimestamp
        kwok_s = _ready_in(kube, _deployment("kwok", args.pods, image.ref, False), args.pods)
        real_s = _ready_in(kube, _deployment("real", args.pods, image.ref, True), args.pods)
        manifests.apply(
            kube,
            [
                codecs.from_dict(
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": {"name": "real"},
                        "spec": {
                            "selector": {"app": "real"},
                            "ports": [{"port": 80, "targetPort": 8080}],
                        },
                    }
                )
            ],
            "default",
        )
        ip = kube.get(Service, "real", namespace="default").spec.clusterIP
        pods: Counter[str] = Counter()
        t = time.monotonic()
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=5) as http:
            while time.monotonic() - t < 30 and not pods:
                try:
                    pods[http.get(f"http://{ip}/").text.split()[1]] += 1
                except httpx.HTTPError:
                    time.sleep(0.05)
            t = time.monotonic()
            for _ in range(1000):
                r = http.get(f"http://{ip}/")
                assert r.status_code == 200 and len(r.text.split()) == 2, (r, r.text)
                pods[r.text.split()[1]] += 1
            rps = 1000 / (time.monotonic() - t)
        mem = {c: rss_bytes(state.pids[c]) / 2**20 for c in ("containerd", "kubelet", "kube-proxy")}
        shims = [
            int(p)
            for p in os.listdir("/proc")
            if p.isdigit() and int(p) not in state.pids.values() and alive(int(p), state.folder)
        ]
        shim_mib = sum(rss_bytes(p) for p in shims) / 2**20
    finally:
        t = time.monotonic()
        cluster.down()
        down_s = time.monotonic() - t
    print(f"kube-proxy mode            {args.proxy_mode}")
    print(f"up (control plane + node)  {up_s:.1f} s")
    node_s = (ready.lastTransitionTime - registered).total_seconds()
    print(f"node registered -> Ready   {node_s:.0f} s (1 s resolution)")
    ratio = real_s / kwok_s
    print(f"{args.pods} pods Ready: KWOK {kwok_s:.1f} s, real {real_s:.1f} s (ratio {ratio:.1f}x)")
    print(f"ClusterIP, 1000 new connections: {len(pods)} pods answered, {rps:.0f} req/s")
    print(f"  per pod: min {min(pods.values())} max {max(pods.values())}")
    print(
        "RSS MiB: "
        + ", ".join(f"{k} {v:.0f}" for k, v in mem.items())
        + f", {len(shims)} shims {shim_mib:.0f}"
    )
    print(f"down (host restored)       {down_s:.1f} s")


if __name__ == "__main__":
    main()

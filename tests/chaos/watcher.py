"""Record every write to a namespace's Deployments, Services and ConfigMaps through watches.

`python watcher.py KUBECONFIG NAMESPACE OUT`: one JSON line per watch event (kind, event
type, name, resourceVersion and the fields the kill tests check), until terminated. A
separate process so the test can stop its blocking watches by ending it.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Service
from lightkube.resources.networking_v1 import Ingress
from lightkube.types import OnErrorAction, OnErrorResult

from canaryctl.kube.client import make_client
from canaryctl.routers._patch import HTTPRoute, VirtualService


def summary(kind: str, obj) -> dict:
    """The fields the invariants look at, per kind."""
    meta = obj.metadata
    line = {"kind": kind, "name": meta.name, "rv": meta.resourceVersion}
    line["annotations"] = dict(meta.annotations or {})
    line["labels"] = dict(meta.labels or {})
    if kind == "Deployment":
        line["replicas"] = obj.spec.replicas
    elif kind == "Service":
        line["selector"] = dict(obj.spec.selector or {})
    elif kind == "ConfigMap":
        line["data"] = dict(obj.data or {})
    else:
        line["spec"] = obj.to_dict().get("spec") or {}
    return line


ROUTING = {"nginx": (Ingress, "Ingress"), "istio": (VirtualService, "VirtualService"),
           "gateway": (HTTPRoute, "HTTPRoute")}  # fmt: skip


def _retry(_exc: Exception, _count: int) -> OnErrorResult:
    # Through an API server or etcd restart (the outage tests): resume from the last
    # resourceVersion seen, so no write is missed (lightkube relists on 410 Gone).
    return OnErrorResult(OnErrorAction.RETRY, sleep=0.5)


def main(kubeconfig: str, namespace: str, out: str, router: str = "replicas") -> None:
    lock = threading.Lock()
    sink = open(out, "a")  # noqa: SIM115 (kept open until the process is terminated)

    def watch(res, kind: str) -> None:
        client = make_client(kubeconfig)
        version = None
        while True:
            try:
                for event, obj in client.watch(
                    res, namespace=namespace, resource_version=version, on_error=_retry
                ):
                    version = obj.metadata.resourceVersion
                    with lock:
                        sink.write(json.dumps({"event": event, **summary(kind, obj)}) + "\n")
                        sink.flush()
            except Exception:
                # Reconnecting to an API server that is down raises outside lightkube's
                # retry: wait, then resume from the last version seen.
                time.sleep(0.5)

    kinds = [(Deployment, "Deployment"), (Service, "Service"), (ConfigMap, "ConfigMap")]
    if router in ROUTING:
        kinds.append(ROUTING[router])
    threads = [threading.Thread(target=watch, args=kind, daemon=True) for kind in kinds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main(*sys.argv[1:5])

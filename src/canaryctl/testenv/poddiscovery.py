"""Pod discovery for the test bed's Prometheus, as Kubernetes service discovery does it.

Debian's Prometheus is built without `kubernetes_sd_configs` (Debian removed it for the
size of client-go's dependency tree). This module gives it the same information: a thread
lists the pods from the API server every second and writes them as a `file_sd_configs`
target file, one target per pod, labelled with the metadata Kubernetes discovery
attaches (`__meta_kubernetes_namespace`, `__meta_kubernetes_pod_name`, `_ip`, `_phase`,
`_node_name`, `_label_<name>`, `_annotation_<name>`, label names sanitised the same way).
The scrape job then uses the relabelling a user's Prometheus uses with `role: pod`: keep
pods annotated `prometheus.io/scrape: "true"`, scrape the port and path of their
`prometheus.io/port` and `prometheus.io/path` annotations, and copy the namespace, the pod
name and the pod's labels (`app`, `version`, ...) onto every series.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from canaryctl.testenv.cluster import ClusterState

__all__ = ["PodDiscovery", "PodWatcher", "target_groups"]

META = "__meta_kubernetes_"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def _sanitize(name: str) -> str:
    """A label or annotation name as Prometheus's discovery writes it in a label name."""
    return _UNSAFE.sub("_", name)


def target_groups(pods: Mapping[str, Any]) -> list[dict[str, Any]]:
    """file_sd target groups for a PodList (as the API returns it): one per pod with an IP."""
    groups = []
    for pod in pods.get("items") or []:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        ip = status.get("podIP")
        if not ip:
            continue  # nothing to scrape yet
        labels = {
            f"{META}namespace": meta.get("namespace", ""),
            f"{META}pod_name": meta.get("name", ""),
            f"{META}pod_ip": ip,
            f"{META}pod_phase": status.get("phase", ""),
            f"{META}pod_node_name": (pod.get("spec") or {}).get("nodeName", ""),
            f"{META}pod_uid": meta.get("uid", ""),
        }
        for key, value in (meta.get("labels") or {}).items():
            labels[f"{META}pod_label_{_sanitize(key)}"] = value
        for key, value in (meta.get("annotations") or {}).items():
            labels[f"{META}pod_annotation_{_sanitize(key)}"] = value
        groups.append({"targets": [ip], "labels": labels})
    return sorted(groups, key=lambda g: (g["labels"][f"{META}namespace"], g["targets"][0]))


@dataclass(frozen=True)
class PodDiscovery:
    """Which pods to find and how to reach the API server.

    `node` keeps only the pods of one node (the real one: simulated pods have addresses
    nobody answers on, which must never be scraped); `namespaces` limits the search.
    Credentials: the cluster CA and a client certificate, or a bearer token file.
    """

    api_server: str
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    token_file: str | None = None
    node: str | None = None
    namespaces: tuple[str, ...] = ()

    JOB = "kubernetes-pods"
    TARGETS_FILE = "pods.json"

    @classmethod
    def for_cluster(
        cls, state: ClusterState, *, node: str | None = None, namespaces: Sequence[str] = ()
    ) -> PodDiscovery:
        """Discovery on a local test cluster, with its admin client certificate."""
        pki = Path(state.folder) / "pki"
        return cls(
            api_server=state.server,
            ca_file=str(pki / "ca.crt"),
            cert_file=str(pki / "admin.crt"),
            key_file=str(pki / "admin.key"),
            node=node,
            namespaces=tuple(namespaces),
        )

    def scrape_config(self, interval: str) -> dict[str, object]:
        """The scrape job: the target file, relabelled as for `kubernetes_sd_configs`."""
        pod = f"{META}pod_"
        relabel: list[dict[str, object]] = [
            {
                "source_labels": [f"{pod}annotation_prometheus_io_scrape"],
                "action": "keep",
                "regex": "true",
            },
            # Running pods only (terminating ones still run, and are still counted).
            {"source_labels": [f"{pod}phase"], "action": "keep", "regex": "Running"},
            {
                "source_labels": [f"{pod}annotation_prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {
                "source_labels": ["__address__", f"{pod}annotation_prometheus_io_port"],
                "regex": r"([^:]+)(?::\d+)?;(\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            {"action": "labelmap", "regex": f"{pod}label_(.+)"},
            {"source_labels": [f"{META}namespace"], "target_label": "namespace"},
            {"source_labels": [f"{pod}name"], "target_label": "pod"},
        ]
        return {
            "job_name": self.JOB,
            "scrape_interval": interval,
            "scrape_timeout": interval,
            # Relative to the configuration file's folder; Prometheus watches it.
            "file_sd_configs": [{"files": [self.TARGETS_FILE], "refresh_interval": "5s"}],
            "relabel_configs": relabel,
        }

    def client(self) -> httpx.Client:
        """An HTTP client for the API server with these credentials."""
        tls = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file and self.key_file:
            tls.load_cert_chain(self.cert_file, self.key_file)
        headers = {}
        if self.token_file:
            token = Path(self.token_file).read_text(encoding="utf-8").strip()
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.api_server, verify=tls, headers=headers, timeout=5)

    def list_pods(self, http: httpx.Client) -> dict[str, Any]:
        """The pods to consider, as one PodList."""
        params = {"fieldSelector": f"spec.nodeName={self.node}"} if self.node else {}
        paths = [f"/api/v1/namespaces/{ns}/pods" for ns in self.namespaces] or ["/api/v1/pods"]
        items: list[Any] = []
        for path in paths:
            response = http.get(path, params=params)
            response.raise_for_status()
            items.extend(response.json().get("items") or [])
        return {"items": items}


class PodWatcher:
    """Keeps the target file current: lists the pods every `interval` seconds in a thread
    and rewrites the file (atomically) when the targets change."""

    def __init__(self, discovery: PodDiscovery, path: Path, interval: float = 1.0) -> None:
        self.discovery = discovery
        self.path = path
        self.interval = interval
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written: str | None = None

    def sync(self, http: httpx.Client) -> None:
        """List the pods once and write the file if the targets changed."""
        text = json.dumps(target_groups(self.discovery.list_pods(http)), indent=1)
        if text != self._written:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)  # Prometheus never reads a half-written file
            self._written = text

    def start(self) -> PodWatcher:
        """Write the first target file, then keep it current in the background."""
        self._http = self.discovery.client()
        try:
            self.sync(self._http)
        except (httpx.HTTPError, OSError) as exc:
            self.last_error = str(exc)
            self.path.write_text("[]", encoding="utf-8")
        self._thread = threading.Thread(target=self._loop, name="pod-discovery", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync(self._http)
                self.last_error = None
            except (httpx.HTTPError, OSError, ValueError) as exc:
                # The API server may restart or be slow; the last targets stay in place.
                self.last_error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        """Stop the thread and release the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with contextlib.suppress(AttributeError):
            self._http.close()

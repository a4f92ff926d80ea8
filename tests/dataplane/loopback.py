"""Loopback stand-ins for pods, so a real proxy can be measured without a real node.

Each version of the app is a real HTTP server on 127.0.0.1 that answers with its version.
``EndpointMirror`` plays the part of Kubernetes that a node would otherwise provide: a
version "runs" while its Deployment exists with replicas > 0, and for every Service of
the namespace the mirror publishes an EndpointSlice (its own ``managed-by`` value, so
the cluster's EndpointSlice controller leaves it alone) listing the loopback server of
each running version whose pod labels the Service's selector matches, ready or not as
the test says. A version that stops running loses its server at once (connections are
refused), as pods without a preStop delay would. The Deployments' pods select no node,
so they stay Pending and nothing else lists endpoints for these Services.

Everything Traefik and canaryctl read and write is real: Services, EndpointSlices,
Ingresses, HTTPRoutes, the proxy and every request.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.discovery_v1 import Endpoint, EndpointConditions, EndpointPort
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service
from lightkube.resources.discovery_v1 import EndpointSlice

from canaryctl.testenv.dataplane import node_ip

MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
#: The host's own address: EndpointSlices refuse loopback addresses, and Traefik on this
#: host reaches servers bound to it directly.
HOST_IP = node_ip()
MIRROR = "canaryctl-tests-loopback"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real app behind a proxy
    # Headers and body are two writes: without TCP_NODELAY the body waits for the proxy's
    # delayed ACK (40 ms a request).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.track(self, busy=False)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.untrack(self)  # type: ignore[attr-defined]
        super().finish()

    def do_GET(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        server.track(self, busy=True)
        body = f"{server.version}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if server.stopping:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        server.track(self, busy=False)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, version: str) -> None:
        super().__init__((HOST_IP, 0), _Handler)
        self.version = version
        self.stopping = False
        self._lock = threading.Lock()
        self._conns: dict[_Handler, bool] = {}

    def track(self, handler: _Handler, *, busy: bool) -> None:
        with self._lock:
            self._conns[handler] = busy

    def untrack(self, handler: _Handler) -> None:
        with self._lock:
            self._conns.pop(handler, None)

    def close_idle(self) -> None:
        """Close keep-alive connections waiting for a request (in-flight ones finish)."""
        with self._lock:
            idle = [h for h, busy in self._conns.items() if not busy]
        for handler in idle:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)


class VersionServer:
    """An HTTP server on a free loopback port answering ``<version>``.

    ``stop`` behaves like a Go server's graceful Shutdown in a pod that is deleted: the
    listener closes (new connections are refused), idle keep-alive connections are closed,
    a request in flight is answered and its connection closed.
    """

    def __init__(self, version: str) -> None:
        self.version = version
        self.httpd = _Server(version)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        self.running = True

    def stop(self) -> None:
        """Stop accepting, close idle connections, let requests in flight finish."""
        if self.running:
            self.running = False
            self.httpd.stopping = True
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd.close_idle()


@dataclass
class EndpointMirror:
    """Publishes EndpointSlices of loopback servers for the Services of one namespace."""

    kube: Client
    namespace: str
    #: the versions served (pod label ``version``); pod labels are read from the Deployments.
    versions: tuple[str, ...]
    #: version -> its server while the version runs.
    servers: dict[str, VersionServer] = field(default_factory=dict)
    #: versions whose endpoints are published as not ready.
    unready: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.sync()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.sync()
            except Exception as exc:  # shown by the test, never swallowed silently
                self.errors.append(repr(exc))

    def _pod_labels(self) -> dict[str, dict[str, str]]:
        """Pod labels of each running version; starts and stops servers to match."""
        labels: dict[str, dict[str, str]] = {}
        for dep in self.kube.list(Deployment, namespace=self.namespace):
            pod = dict(dep.spec.template.metadata.labels or {})
            if pod.get("version") in self.versions and (dep.spec.replicas or 0) > 0:
                labels[pod["version"]] = pod
        for version in self.versions:
            server = self.servers.get(version)
            if version in labels and server is None:
                self.servers[version] = VersionServer(version)
            elif version not in labels and server is not None:
                server.stop()
                del self.servers[version]
        return labels

    def sync(self) -> None:
        """One pass: make every Service's loopback EndpointSlices match its selector."""
        labels = self._pod_labels()
        wanted: dict[str, EndpointSlice] = {}
        for svc in self.kube.list(Service, namespace=self.namespace):
            selector = dict(svc.spec.selector or {})
            if not selector:
                continue
            port_name = svc.spec.ports[0].name if svc.spec.ports else None
            for version, pod in labels.items():
                server = self.servers[version]
                if any(pod.get(k) != v for k, v in selector.items()):
                    continue
                name = f"{svc.metadata.name}-{version}-loopback"
                wanted[name] = EndpointSlice(
                    metadata=ObjectMeta(
                        name=name,
                        labels={
                            "kubernetes.io/service-name": svc.metadata.name,
                            MANAGED_BY: MIRROR,
                        },
                    ),
                    addressType="IPv4",
                    endpoints=[
                        Endpoint(
                            addresses=[HOST_IP],
                            conditions=EndpointConditions(ready=version not in self.unready),
                        )
                    ],
                    ports=[EndpointPort(name=port_name, port=server.port, protocol="TCP")],
                )
        existing = {
            s.metadata.name: s
            for s in self.kube.list(
                EndpointSlice, namespace=self.namespace, labels={MANAGED_BY: MIRROR}
            )
        }
        for name, eps in wanted.items():
            old = existing.get(name)
            if old is not None and _same(old, eps):
                continue
            self.kube.apply(eps, namespace=self.namespace, field_manager=MIRROR, force=True)
        for name in existing.keys() - wanted.keys():
            with contextlib.suppress(ApiError):
                self.kube.delete(EndpointSlice, name, namespace=self.namespace)


def _same(a: EndpointSlice, b: EndpointSlice) -> bool:
    def key(s: EndpointSlice) -> tuple[object, ...]:
        eps = tuple(
            (tuple(e.addresses), e.conditions.ready if e.conditions else None)
            for e in s.endpoints or []
        )
        ports = tuple((p.name, p.port) for p in s.ports or [])
        return eps, ports

    return key(a) == key(b)


@dataclass
class Tally:
    """Answers counted by version, and failures by kind."""

    versions: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    #: monotonic time of the first and the last answer counted
    first: float = 0.0
    last: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.versions.values()) + sum(self.failures.values())

    def share(self, version: str) -> float:
        """Fraction of all requests (failures included) answered by ``version``."""
        return self.versions[version] / self.total if self.total else 0.0

    def add(self, other: Tally) -> None:
        self.versions.update(other.versions)
        self.failures.update(other.failures)


def request_once(
    http: httpx.Client, url: str, host: str, tally: Tally, headers: dict[str, str] | None = None
) -> None:
    """One GET through the proxy; the answer's version or the failure is counted."""
    tally.first = tally.first or time.monotonic()
    try:
        r = http.get(url, headers={"Host": host, **(headers or {})})
    except httpx.HTTPError as exc:
        tally.failures[type(exc).__name__] += 1
        tally.last = time.monotonic()
        return
    tally.last = time.monotonic()
    if r.status_code == 200:
        tally.versions[r.text.strip()] += 1
    else:
        tally.failures[f"HTTP {r.status_code}"] += 1


def measure(url: str, host: str, n: int, headers: dict[str, str] | None = None) -> Tally:
    """``n`` sequential requests on one keep-alive connection to the proxy."""
    tally = Tally()
    with httpx.Client(timeout=5.0) as http:
        for _ in range(n):
            request_once(http, url, host, tally, headers)
    return tally


class Load:
    """Requests sent without pause in a background thread, counted per phase."""

    def __init__(self, url: str, host: str) -> None:
        self.url = url
        self.host = host
        self.phases: dict[str, Tally] = {}
        self.phase = "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as http:
            while not self._stop.is_set():
                tally = self.phases.setdefault(self.phase, Tally())
                request_once(http, self.url, self.host, tally)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)

    def total(self) -> Tally:
        out = Tally()
        for tally in self.phases.values():
            out.add(tally)
        return out


def wait_for_answers(url: str, host: str, want: str, timeout: float = 30.0) -> None:
    """Wait until 20 requests in a row all answer ``want`` (the proxy took the config)."""
    deadline = time.monotonic() + timeout
    last = Tally()
    while time.monotonic() < deadline:
        last = measure(url, host, 20)
        if last.versions[want] == 20:
            return
        time.sleep(0.1)
    raise AssertionError(f"{host}: not all answers from {want} within {timeout}s: {last}")

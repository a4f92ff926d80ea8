"""A stand-in for the seed app's metrics endpoint, for tests and the demo.

Serves `/metrics` with `http_requests_total{code,method,version}` and the histogram
`request_duration_seconds{code,method,version}` for each configured version. Traffic
is simulated from configured rates: when metrics are read, the requests that
"arrived" since the last read (by the clock) are drawn one by one, so Prometheus's
`rate`/`increase` see real traffic. The n-th request of a version always gets the
same outcome for a given seed. Reconfigure at run time with `configure()` or
`POST /config` (JSON `{"v2": {"error_rate": 0.2}}`), e.g. to make the canary fail.

Run alone: `python -m canaryctl.testenv.fakeapp --port 9101 --config traffic.yaml`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from canaryctl.errors import SpecError, TestenvError

__all__ = ["DEFAULT_TRAFFIC", "FakeApp", "Traffic", "load_traffic", "main"]


@dataclass(frozen=True)
class Traffic:
    """Requests per second of one version, its share of 5xx, and a log-normal latency."""

    rate: float
    error_rate: float = 0.0
    latency_median: float = 0.05
    latency_sigma: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise SpecError("traffic.rate", f"must be >= 0 requests/s, not {self.rate}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise SpecError("traffic.error_rate", f"must be within [0, 1], not {self.error_rate}")
        if not (self.latency_median > 0 and self.latency_sigma >= 0):
            raise SpecError("traffic.latency", "median must be > 0 and sigma >= 0")

    def slow_share(self, threshold: float) -> float:
        """Expected share of requests slower than `threshold` seconds."""
        if self.latency_sigma == 0:
            return float(self.latency_median > threshold)
        z = (math.log(threshold) - math.log(self.latency_median)) / self.latency_sigma
        return 1.0 - statistics.NormalDist().cdf(z)


DEFAULT_TRAFFIC: Mapping[str, Traffic] = {
    "v1": Traffic(rate=90.0, error_rate=0.01),
    "v2": Traffic(rate=10.0, error_rate=0.01),
}


def _traffic_from(raw: Mapping[str, Any], base: Traffic | None, version: str) -> Traffic:
    fields = {f.name for f in dataclasses.fields(Traffic)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise SpecError(f"{version}.{unknown[0]}", "unknown traffic field")
    values = {k: float(v) for k, v in raw.items()}
    if base is None:
        if "rate" not in values:
            raise SpecError(f"{version}.rate", "required for a new version")
        return Traffic(**values)
    return dataclasses.replace(base, **values)


class _Version:
    """Simulation state of one version: its traffic since `since`, and its random stream."""

    def __init__(self, traffic: Traffic, rng: random.Random, since: float) -> None:
        self.traffic = traffic
        self.rng = rng
        self.since = since
        self.base = 0  # requests before `since`
        self.requests = 0
        self.errors = 0

    def due(self, now: float) -> int:
        """Requests due by `now`; computed from `since`, so no rounding drift builds up."""
        return self.base + math.floor(self.traffic.rate * (now - self.since) + 1e-9)


class FakeApp:
    """Serves simulated seed-app metrics over HTTP from a background thread."""

    def __init__(
        self,
        traffic: Mapping[str, Traffic] | None = None,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`traffic` per version label (default DEFAULT_TRAFFIC); `port=0` picks a free
        port; `clock` (seconds) drives the simulation and is replaceable in tests."""
        self._seed = seed
        self._host, self._port = host, port
        self._clock = clock
        self._lock = threading.Lock()
        self._registry = CollectorRegistry()
        self._requests = Counter(
            "http_requests",
            "Requests served, by status code, method and version.",
            ["code", "method", "version"],
            registry=self._registry,
        )
        self._duration = Histogram(
            "request_duration_seconds",
            "Request latency in seconds.",
            ["code", "method", "version"],
            registry=self._registry,
        )
        self._versions: dict[str, _Version] = {}
        for version, spec in (traffic or DEFAULT_TRAFFIC).items():
            self._add(version, spec)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _add(self, version: str, traffic: Traffic) -> None:
        # One random stream per version: the n-th request's outcome depends on the
        # seed only, not on how reads interleave.
        rng = random.Random(f"{self._seed}/{version}")
        self._versions[version] = _Version(traffic, rng, self._clock())
        for code in ("200", "500"):
            # Create the series up front so a version's first error is not lost
            # to `increase` (which needs two samples of a series).
            self._requests.labels(code, "GET", version)
            self._duration.labels(code, "GET", version)

    @property
    def address(self) -> str:
        """`host:port` of the running server."""
        if self._server is None:
            raise TestenvError("FakeApp is not started")
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://{self.address}"

    def start(self) -> FakeApp:
        """Serve in a daemon thread; returns self."""
        app = self

        class Handler(_Handler):
            fake = app

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            # A short poll interval keeps stop() fast.
            target=self._server.serve_forever,
            args=(0.05,),
            name="fakeapp",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeApp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def configure(self, version: str, **changes: float) -> Traffic:
        """Change one version's traffic from now on (a new version needs `rate`)."""
        with self._lock:
            self._advance()
            current = self._versions.get(version)
            traffic = _traffic_from(changes, current.traffic if current else None, version)
            if current is None:
                self._add(version, traffic)
            else:
                current.traffic = traffic
                current.since, current.base = self._clock(), current.requests
            return traffic

    def traffic(self) -> dict[str, Traffic]:
        """The current configuration."""
        with self._lock:
            return {name: state.traffic for name, state in self._versions.items()}

    def totals(self, version: str) -> tuple[int, int]:
        """(requests, errors) simulated so far for `version`, up to now."""
        with self._lock:
            self._advance()
            state = self._versions[version]
            return state.requests, state.errors

    def metrics(self) -> bytes:
        """The exposition text, after simulating the requests due by now."""
        with self._lock:
            self._advance()
            return generate_latest(self._registry)

    def _advance(self) -> None:
        now = self._clock()
        for version, state in self._versions.items():
            traffic = state.traffic
            count = max(0, state.due(now) - state.requests)
            log_median = math.log(traffic.latency_median)
            for _ in range(count):
                failed = state.rng.random() < traffic.error_rate
                latency = state.rng.lognormvariate(log_median, traffic.latency_sigma)
                code = "500" if failed else "200"
                self._requests.labels(code, "GET", version).inc()
                self._duration.labels(code, "GET", version).observe(latency)
                state.errors += failed
            state.requests += count


class _Handler(BaseHTTPRequestHandler):
    """GET /metrics, GET /config, POST /config."""

    fake: FakeApp

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._send(200, self.fake.metrics(), CONTENT_TYPE_LATEST)
        elif self.path == "/config":
            self._send_json(200, {k: dataclasses.asdict(v) for k, v in self.fake.traffic().items()})
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        if self.path != "/config":
            self._send(404, b"not found\n", "text/plain")
            return
        length = int(self.headers.get("Content-Length", "0"))
        try:
            changes = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(changes, dict):
                raise SpecError("config", "must be a JSON object of versions")
            for version, fields in changes.items():
                if not isinstance(fields, dict):
                    raise SpecError(str(version), "must be an object of traffic fields")
                self.fake.configure(str(version), **fields)
        except (ValueError, TypeError, SpecError) as exc:
            self._send(400, f"{exc}\n".encode(), "text/plain")
            return
        self._send_json(200, {k: dataclasses.asdict(v) for k, v in self.fake.traffic().items()})

    def _send_json(self, status: int, body: object) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: Prometheus scrapes every second."""


def load_traffic(path: str) -> dict[str, Traffic]:
    """Read `{version: {rate, error_rate, latency_median, latency_sigma}}` (YAML or JSON)."""
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise SpecError(path, "must map versions to traffic settings")
    return {str(v): _traffic_from(fields or {}, None, str(v)) for v, fields in raw.items()}


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--config", help="YAML/JSON traffic per version")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    traffic = load_traffic(args.config) if args.config else None
    app = FakeApp(traffic, seed=args.seed, host=args.host, port=args.port).start()
    print(f"serving seed-app metrics on {app.url}/metrics", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()


if __name__ == "__main__":
    main()

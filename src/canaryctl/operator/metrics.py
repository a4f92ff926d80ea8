"""Prometheus metrics of the operator, and its /metrics, /healthz and /readyz endpoints."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from canaryctl.core.models import CanaryStatus, Phase

log = logging.getLogger(__name__)


class Metrics:
    """Every metric the operator exports, in a registry of its own (tests run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.weight = Gauge(
            "canaryctl_canary_weight", "Canary traffic weight in percent",
            ["namespace", "name"], registry=r,
        )  # fmt: skip
        self.phase = Gauge(
            "canaryctl_canary_phase", "1 for the canary's current phase, 0 for the others",
            ["namespace", "name", "phase"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "canaryctl_canary_duration_seconds", "Duration of finished rollouts",
            ["namespace", "name", "result"], registry=r,
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
        )  # fmt: skip
        self.checks = Counter(
            "canaryctl_analysis_checks_total", "Evaluated checks by result",
            ["namespace", "name", "check", "result"], registry=r,
        )  # fmt: skip
        self.evalue = Gauge(
            "canaryctl_judge_evalue", "Latest e-value of a sequential judge (rollback side)",
            ["namespace", "name", "metric"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "canaryctl_reconcile_errors_total", "Reconciles that failed, by error class",
            ["error"], registry=r,
        )  # fmt: skip
        self.reconcile = Histogram(
            "canaryctl_reconcile_duration_seconds", "Time of one reconcile of one canary",
            registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.queued = Histogram(
            "canaryctl_reconcile_queue_seconds",
            "Time a due reconcile waited for a worker, by lane (react: a change to react "
            "to; tick: a running rollout's next look)",
            ["lane"], registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.api_requests = Counter(
            "canaryctl_api_requests_total", "Requests to the Kubernetes API (watches excluded)",
            ["verb"], registry=r,
        )  # fmt: skip
        self.events = Counter(
            "canaryctl_events_total", "Kubernetes Events by result (posted, dropped, failed)",
            ["result"], registry=r,
        )  # fmt: skip
        self.leader = Gauge(
            "canaryctl_leader", "1 while this process is the acting leader", registry=r
        )
        self.canaries = Gauge(
            "canaryctl_canaries", "Canary resources known to this process", registry=r
        )
        self.active = Gauge(
            "canaryctl_active_rollouts", "Rollouts that are not finished", registry=r
        )

    def observe_status(self, namespace: str, name: str, status: CanaryStatus) -> None:
        """Weight and phase gauges, new check records and judge e-values of one decision."""
        self.weight.labels(namespace, name).set(status.weight)
        for phase in Phase:
            self.phase.labels(namespace, name, phase.value).set(
                1.0 if phase is status.phase else 0.0
            )
        for metric, verdict in (status.last_verdict or {}).items():
            if not isinstance(verdict, dict):
                continue  # e.g. the "warning" string
            value = verdict.get("rollbackEvalue")
            if isinstance(value, int | float):
                self.evalue.labels(namespace, name, metric).set(value)

    def count_checks(self, namespace: str, name: str, before: float | None, st: CanaryStatus):
        """Count the check records a decision added (those newer than `before`)."""
        for record in st.history:
            if before is None or record.time > before:
                result = "passed" if record.passed else "failed"
                self.checks.labels(namespace, name, record.name, result).inc()

    def forget(self, namespace: str, name: str) -> None:
        """Drop the series of a deleted canary."""
        for gauge in (self.weight,):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)
        for phase in Phase:
            with contextlib.suppress(KeyError):
                self.phase.remove(namespace, name, phase.value)


def count_requests(client: Any, metrics: Metrics) -> None:
    """Count every request a lightkube client sends (an httpx event hook)."""
    httpx_client = getattr(getattr(client, "_client", None), "_client", None)
    hooks = getattr(httpx_client, "event_hooks", None)
    if hooks is None:
        log.warning("cannot count API requests of this lightkube version")
        return

    def hook(request: Any) -> None:
        watch = request.url.params.get("watch") in ("true", "1")
        if not watch:
            metrics.api_requests.labels(request.method).inc()

    httpx_client.event_hooks = {**hooks, "request": [*hooks.get("request", []), hook]}


def serve(
    port: int, metrics: Metrics | None, checks: dict[str, Callable[[], bool | tuple[bool, str]]]
) -> ThreadingHTTPServer:
    """Serve /metrics (when `metrics`) and each health check path on `port`, in a thread.

    A check returns whether all is well, or (that, a line saying why) for the body."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and metrics is not None:
                body, ctype, code = generate_latest(metrics.registry), CONTENT_TYPE_LATEST, 200
            elif path in checks:
                result = checks[path]()
                ok, why = result if isinstance(result, tuple) else (result, "")
                body = (b"ok\n" if ok else b"not ready\n") + (why.encode() + b"\n" if why else b"")
                ctype, code = "text/plain", 200 if ok else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes every few seconds would flood the log

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"http-{port}", daemon=True).start()
    return server

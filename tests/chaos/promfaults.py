"""A fault-injecting HTTP proxy in front of the real Prometheus.

It forwards every request to Prometheus and, while a fault is set, breaks the answer the
way real incidents do: an outage that never answers (paused), a server that answers after
`delay` seconds, an HTML error page from a load balancer, JSON cut off mid-body, a range
vector where an instant vector was due, NaN values, or negative counts. `fault = None`
restores the real answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from providers.httpstub import Recorded, Reply, serve

#: Every fault the proxy can inject, each named as the verdict should name it.
FAULTS = ("paused", "slow", "html", "truncated", "matrix", "nan", "negative")


@dataclass
class FaultProxy:
    """Prometheus at `upstream`, served at `url` with the fault in `fault` (None: none)."""

    upstream: str
    delay: float = 30.0
    fault: str | None = None
    url: str = ""
    requests: int = 0
    faulted: int = 0
    _release: threading.Event = field(default_factory=threading.Event)

    def set(self, fault: str | None) -> None:
        """Inject `fault` from the next request on (None: answer truthfully again)."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        self.fault = fault
        if fault == "paused":
            self._release.clear()
        else:
            self._release.set()  # requests held by a pause are answered now

    def _handle(self, request: Recorded) -> Reply:
        self.requests += 1
        fault = self.fault
        if fault is not None:
            self.faulted += 1
        if fault == "paused":
            # Accepts the connection and says nothing, like a SIGSTOPped server.
            self._release.wait(self.delay)
        if fault == "html":
            page = b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"
            return Reply(200, page)
        with httpx.Client(base_url=self.upstream, timeout=10) as upstream:
            response = upstream.request(
                request.method,
                request.path,
                content=request.body,
                headers={"Content-Type": request.headers.get("Content-Type", "")},
            )
        body = response.content
        if fault == "slow":
            return Reply(response.status_code, body, delay=self.delay)
        if fault == "truncated":
            return Reply(response.status_code, body[: len(body) // 2])
        if fault in ("matrix", "nan", "negative") and request.path.startswith("/api/v1/query"):
            body = json.dumps(_rewrite(json.loads(body), fault)).encode()
        return Reply(response.status_code, body)


def _rewrite(answer: dict[str, Any], fault: str) -> dict[str, Any]:
    data = answer.get("data") or {}
    if data.get("resultType") != "vector":
        return answer
    result = data["result"]
    if fault == "matrix":
        data["resultType"] = "matrix"
        data["result"] = [{"metric": s["metric"], "values": [s["value"]]} for s in result]
    for sample in result if fault != "matrix" else []:
        stamp, value = sample["value"]
        if fault == "nan":
            sample["value"] = [stamp, "NaN"]
        elif float(value) > 0:
            sample["value"] = [stamp, str(-float(value) - 2)]  # below any rounding slack
    return answer


@contextmanager
def fault_proxy(upstream: str, delay: float = 30.0) -> Iterator[FaultProxy]:
    """A FaultProxy serving on a free local port for the block's duration."""
    proxy = FaultProxy(upstream, delay=delay)
    proxy._release.set()
    server = serve(proxy._handle)
    proxy.url = next(server)
    try:
        yield proxy
    finally:
        proxy.set(None)  # release held requests so the server can shut down
        next(server, None)  # runs serve()'s shutdown

"""The scenarios the live provider tests run against, and a handle on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from canaryctl.providers.prometheus import PrometheusClient
from canaryctl.testenv.fakeapp import FakeApp, Traffic
from canaryctl.testenv.prometheus import PrometheusServer
from helpers import wait_until

TOKEN = "s3cr3t-t0ken-do-not-leak"
"""The bearer token the auth proxy in front of Prometheus demands."""

NAMESPACE = "demo"

# One fake app per scenario, told apart by the `app` label Prometheus attaches, so
# tests sharing the session server never see each other's traffic.
FAKE_APPS: dict[str, dict[str, Traffic]] = {
    # Same error rate on both versions; canary gets a third of the traffic.
    "steady": {
        "v1": Traffic(rate=400, error_rate=0.02, latency_median=0.1, latency_sigma=0.8),
        "v2": Traffic(rate=200, error_rate=0.02, latency_median=0.1, latency_sigma=0.8),
    },
    # The canary fails twice as often as stable.
    "regress": {
        "v1": Traffic(rate=300, error_rate=0.05),
        "v2": Traffic(rate=300, error_rate=0.10),
    },
    # Healthy until a test reconfigures it.
    "switch": {
        "v1": Traffic(rate=200, error_rate=0.0),
        "v2": Traffic(rate=200, error_rate=0.0),
    },
}


@dataclass
class Live:
    """The running fake apps and the Prometheus scraping them."""

    server: PrometheusServer
    apps: dict[str, FakeApp]

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, **kwargs: Any) -> PrometheusClient:
        return PrometheusClient(self.server.url, **kwargs)

    def wait_for_history(self, seconds: float, timeout: float = 30.0) -> None:
        """Block until every app has at least `seconds` of scraped samples."""
        with self.client() as prom:
            query = f'min(count_over_time(up{{namespace="{NAMESPACE}"}}[{int(seconds) + 1}s]))'
            wait_until(lambda: (prom.query(query) or 0) >= seconds, timeout=timeout)

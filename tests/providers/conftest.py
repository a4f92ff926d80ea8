"""Fixtures for provider tests: fake seed apps, a real Prometheus scraping them, an
auth proxy in front of it (the webhook receiver is in the top-level conftest)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from canaryctl.testenv.fakeapp import FakeApp
from canaryctl.testenv.prometheus import PrometheusServer, ScrapeTarget, find_prometheus
from providers.httpstub import Recorded, Reply, serve
from providers.scenarios import FAKE_APPS, NAMESPACE, TOKEN, Live


@pytest.fixture(scope="session")
def fakeapps() -> Iterator[dict[str, FakeApp]]:
    """The FAKE_APPS scenarios, each serving /metrics on its own port."""
    apps = {name: FakeApp(traffic, seed=7).start() for name, traffic in FAKE_APPS.items()}
    yield apps
    for app in apps.values():
        app.stop()


@pytest.fixture(scope="session")
def prometheus(fakeapps: dict[str, FakeApp]) -> Iterator[Live]:
    """A real Prometheus scraping every fake app each second, labelled
    namespace=demo and app=<scenario>. Skips when the binary is not installed."""
    if find_prometheus() is None:
        pytest.fail("needs the prometheus binary: run `make test` (installs the Debian package)")
    targets = [
        ScrapeTarget(app.address, {"namespace": NAMESPACE, "app": name})
        for name, app in fakeapps.items()
    ]
    server = PrometheusServer(targets).start()
    print(f"\nprometheus ready with all targets scraped in {server.startup_seconds:.2f}s")
    pid, workdir = server.pid, server.workdir
    yield Live(server, fakeapps)
    server.stop()
    assert pid is not None and workdir is not None
    assert not workdir.exists(), "temporary files left behind"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture
def auth_proxy(prometheus: Live) -> Iterator[str]:
    """Prometheus behind a proxy that demands `Bearer TOKEN`. On refusal it echoes the
    presented header back, as a careless proxy might, to prove we never surface it."""
    upstream = httpx.Client(base_url=prometheus.url, timeout=5.0)

    def handle(request: Recorded) -> Reply:
        presented = request.headers.get("Authorization", "")
        if presented != f"Bearer {TOKEN}":
            return Reply(401, f"unauthorized: got {presented!r}".encode())
        response = upstream.post(
            request.path,
            content=request.body,
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        )
        return Reply(response.status_code, response.content)

    yield from serve(handle)
    upstream.close()

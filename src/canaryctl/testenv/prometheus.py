"""A real, private Prometheus server for tests and the demo.

Starts the `prometheus` binary on 127.0.0.1 with a free port, a temporary data
folder and a generated configuration that scrapes the given targets every second,
and, with `pods=PodDiscovery(...)`, the pods of a cluster found by their
`prometheus.io/*` annotations (see `poddiscovery`); returns once the server is ready
and every static target has been scraped successfully.
It never touches a system-wide Prometheus (its own port, config and data).

Binary resolution: the `binary` argument, `$CANARYCTL_PROMETHEUS`, `prometheus` on
PATH, then `/usr/bin/prometheus` (Debian/Ubuntu package `prometheus`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from canaryctl.errors import TestenvError
from canaryctl.testenv.poddiscovery import PodDiscovery, PodWatcher

__all__ = ["PodDiscovery", "PrometheusServer", "ScrapeTarget", "find_prometheus"]

_DEBIAN_PATH = "/usr/bin/prometheus"
_PORT_ATTEMPTS = 3


def find_prometheus(binary: str | None = None) -> str | None:
    """The Prometheus binary to use, or None when there is none."""
    for candidate in (binary, os.environ.get("CANARYCTL_PROMETHEUS")):
        if candidate:
            return candidate
    return shutil.which("prometheus") or (_DEBIAN_PATH if os.path.exists(_DEBIAN_PATH) else None)


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint to scrape; `labels` are attached to all its series (e.g. namespace, app)."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    metrics_path: str = "/metrics"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    """A Prometheus process owned by this object: `start()`, query `url`, `stop()`."""

    def __init__(
        self,
        targets: Sequence[ScrapeTarget] = (),
        *,
        pods: PodDiscovery | None = None,
        binary: str | None = None,
        scrape_interval: str = "1s",
        host: str = "127.0.0.1",
    ) -> None:
        self._targets = list(targets)
        self._pods = pods
        self._watcher: PodWatcher | None = None
        self._binary = binary
        self._interval = scrape_interval
        self._host = host
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self.url = ""
        self.startup_seconds = 0.0
        """Seconds from process start to ready with every target scraped once."""

    @property
    def workdir(self) -> Path | None:
        """The temporary folder (config, data, log) while running."""
        return self._dir

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self._proc else None

    @property
    def discovery_error(self) -> str | None:
        """The pod discovery's last failure to list pods (None when it works or is off)."""
        return self._watcher.last_error if self._watcher else None

    def config(self) -> dict[str, object]:
        """The generated Prometheus configuration."""
        groups: dict[str, list[dict[str, object]]] = {}
        for target in self._targets:
            static = {"targets": [target.address], "labels": dict(target.labels)}
            groups.setdefault(target.metrics_path, []).append(static)
        jobs = [
            {
                "job_name": f"canaryctl-{index}",
                "metrics_path": path,
                "scrape_interval": self._interval,
                "scrape_timeout": self._interval,
                "static_configs": statics,
            }
            for index, (path, statics) in enumerate(sorted(groups.items()))
        ]
        if self._pods is not None:
            jobs.append(self._pods.scrape_config(self._interval))
        return {
            "global": {"scrape_interval": self._interval, "evaluation_interval": self._interval},
            "scrape_configs": jobs,
        }

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Start and wait until ready and every static target was scraped; returns self.
        (Discovered pods come and go: they are not waited for.)"""
        binary = find_prometheus(self._binary)
        if binary is None or not os.access(binary, os.X_OK):
            raise TestenvError(
                f"prometheus binary not found{f' at {binary}' if binary else ''}: install the "
                "'prometheus' package (apt-get install prometheus) or set CANARYCTL_PROMETHEUS"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="canaryctl-prometheus-"))
        config = self._dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")
        try:
            if self._pods is not None:
                path = self._dir / PodDiscovery.TARGETS_FILE
                self._watcher = PodWatcher(self._pods, path).start()
            for attempt in range(_PORT_ATTEMPTS):
                port = _free_port(self._host)
                started = time.monotonic()
                self._spawn(binary, config, port)
                try:
                    self._wait_ready(started + timeout)
                except _PortTaken:
                    # Another process took the port between probe and bind: try another.
                    if attempt + 1 == _PORT_ATTEMPTS:
                        tail = self._tail()
                        raise TestenvError(f"prometheus could not bind a port: {tail}") from None
                    continue
                self.startup_seconds = time.monotonic() - started
                return self
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable: the loop returns or raises")

    def _spawn(self, binary: str, config: Path, port: int) -> None:
        assert self._dir is not None
        self.url = f"http://{self._host}:{port}"
        # One log per attempt, so an earlier attempt's failure is not read as this one's.
        self._log = self._dir / f"prometheus-{port}.log"
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self._dir / 'data'}",
                    f"--web.listen-address={self._host}:{port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Same process group: a Ctrl-C on the test run stops Prometheus too.
                cwd=self._dir,
            )

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        last = "not ready"
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                code = self._proc.poll()
                if code is not None:
                    tail = self._tail()
                    if "address already in use" in tail:
                        raise _PortTaken
                    raise TestenvError(f"prometheus exited with code {code}: {tail}")
                try:
                    if http.get("/-/ready").status_code == 200:
                        last = self._scrape_state(http)
                        if last == "up":
                            return
                except httpx.TransportError as exc:
                    last = f"not answering ({type(exc).__name__})"
                time.sleep(0.1)
        raise TestenvError(f"prometheus at {self.url} not ready in time: {last}")

    def _scrape_state(self, http: httpx.Client) -> str:
        """'up' once every target was scraped successfully, else what is missing."""
        active = http.get("/api/v1/targets", params={"state": "active"}).json()["data"]
        active = [t for t in active["activeTargets"] if t.get("scrapePool") != PodDiscovery.JOB]
        if len(active) < len(self._targets):
            return f"{len(active)}/{len(self._targets)} targets discovered"
        down = [t for t in active if t.get("health") != "up"]
        if down:
            first = down[0]
            return (
                f"target {first.get('scrapeUrl')} {first.get('health')}: {first.get('lastError')}"
            )
        return "up"

    def _tail(self, lines: int = 15) -> str:
        if self._log is None or not self._log.exists():
            return ""
        text = self._log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the process (by its pid) and remove its temporary files."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=grace)
        if self._dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._dir)
            self._dir = self._log = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _PortTaken(Exception):
    """The chosen port was taken before Prometheus could bind it."""

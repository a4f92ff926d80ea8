"""The seed app (images/pulpocon-app) built and run as a host process on loopback ports.

Shared by the app's own tests and the probe's: `build(dest)` compiles the static binary,
`SeedApp(binary, env)` runs one version with free ports and stops it by its pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import pytest

from helpers import REPO

SOURCE = REPO / "images" / "pulpocon-app"


def build(dest: Path) -> Path:
    """Compile the app as a static binary into `dest`; skip when Go is missing."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("needs the Go toolchain to build images/pulpocon-app")
    binary = dest / "pulpocon-app"
    env = {**os.environ, "CGO_ENABLED": "0"}
    result = subprocess.run(
        [go, "build", "-trimpath", "-buildvcs=false", "-o", str(binary), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    if result.returncode != 0:
        raise AssertionError(f"go build failed:\n{result.stderr}")
    return binary


class SeedApp:
    """One running app process; `url`, `probe_url` and `metrics_url` are on 127.0.0.1."""

    def __init__(self, binary: Path, env: Mapping[str, str] | None = None) -> None:
        self.binary = binary
        self.env = {"PATH": os.environ.get("PATH", ""), **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[dict[str, object]] = []
        self._reader: threading.Thread | None = None
        self.url = self.probe_url = self.metrics_url = ""

    def start(self, timeout: float = 10.0) -> SeedApp:
        """Start the process and wait for its "listening" log line."""
        ports = ("-listen-address", "-probe-address", "-metrics-address")
        self.proc = subprocess.Popen(
            [str(self.binary), *(arg for flag in ports for arg in (flag, "127.0.0.1:0"))],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        listening = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            try:
                for raw in self.proc.stdout:
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        line = {"msg": raw.strip()}
                    self.lines.append(line)
                    if line.get("msg") == "listening":
                        self.url = f"http://{line['http']}"
                        self.probe_url = f"http://{line['probe']}"
                        self.metrics_url = f"http://{line['metrics']}"
                        listening.set()
            except ValueError:  # stop() closed the pipe under us: nothing more to read
                return

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not listening.wait(timeout):
            self.stop()
            raise AssertionError(f"the app did not start: {self.lines}")
        return self

    def terminate(self) -> None:
        """Send SIGTERM (what the kubelet sends after preStop)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit; its exit code."""
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=2)
        return code

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) if it still runs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> SeedApp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""What the benchmarks sample of a process under test: CPU and memory from /proc, an API
request counter, and the machine's 1-minute load average, read at marks (the start and
end of an idle minute, of a wave) and every few seconds in a daemon thread.

Shared by `operator.py` (requests from the operator's own counter) and `peers/compare.py`
(requests from the API server's audit log, so no counter here). Standard library only.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int, key: str = "VmRSS") -> float:
    """A memory figure of /proc/<pid>/status in MiB: VmRSS (now) or VmHWM (peak RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


@dataclass(frozen=True)
class Mark:
    """One reading: wall clock, CPU seconds, requests so far (nan without a counter)."""

    at: float
    cpu: float
    requests: float


@dataclass(frozen=True)
class Sample:
    """One periodic reading of the sampling thread."""

    at: float
    cpu: float
    rss_mib: float
    load: float


class Sampler:
    """Samples one process (CPU, RSS) and the load average every `every` seconds in a daemon
    thread, and takes marks on demand; `rates` turns two marks into per-minute figures.

    Without a pid (the process is not started yet) it samples the load only until
    `attach` names the process."""

    def __init__(
        self,
        pid: int | None = None,
        *,
        requests: Callable[[], float] | None = None,
        every: float = 5.0,
    ) -> None:
        self.pid = pid
        self._requests = requests
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def attach(self, pid: int, requests: Callable[[], float] | None = None) -> None:
        """The process to sample from now on (and its request counter, if any)."""
        self.pid = pid
        if requests is not None:
            self._requests = requests

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            cpu = rss = math.nan
            if self.pid is not None:
                # the process may be gone: the load is still worth keeping
                with contextlib.suppress(OSError):
                    cpu, rss = self.cpu(), self.rss_mib()
            self.samples.append(Sample(time.time(), cpu, rss, os.getloadavg()[0]))
            self._stop.wait(every)

    def _pid(self) -> int:
        if self.pid is None:
            raise RuntimeError("no process attached to the sampler")
        return self.pid

    def cpu(self) -> float:
        """CPU seconds of the process so far."""
        return cpu_seconds(self._pid())

    def rss_mib(self) -> float:
        """Resident memory now (MiB)."""
        return memory_mib(self._pid(), "VmRSS")

    def peak_rss_mib(self) -> float:
        """Peak resident memory so far (MiB)."""
        return memory_mib(self._pid(), "VmHWM")

    def mark(self) -> Mark:
        """CPU and requests now."""
        requests = self._requests() if self._requests is not None else math.nan
        return Mark(time.time(), self.cpu(), requests)

    @staticmethod
    def rates(start: Mark, end: Mark) -> tuple[float, float]:
        """(CPU seconds per minute, requests per minute) between two marks."""
        minutes = max(end.at - start.at, 1e-9) / 60
        return (end.cpu - start.cpu) / minutes, (end.requests - start.requests) / minutes

    def window(self, seconds: float) -> tuple[float, float]:
        """(CPU seconds per minute, requests per minute) over the next `seconds`."""
        start = self.mark()
        time.sleep(seconds)
        return self.rates(start, self.mark())

    def stop(self) -> dict[str, float]:
        """Stop sampling; the load average seen meanwhile: {"min", "mean", "max"}."""
        self._stop.set()
        self._thread.join(timeout=10)
        values = [s.load for s in self.samples] or [math.nan]
        return {"min": min(values), "mean": sum(values) / len(values), "max": max(values)}

"""Measuring a traffic split from real answers: the bookkeeping of `canaryctl probe`.

Pure: the caller sends the requests and passes in what came back (`Outcome`) and the
time. `Schedule` says when each request is due at a steady rate; `SplitMeter` keeps,
per version, the requests, failures, status codes and latencies, the split over the
whole run and over a recent window (so a live view shows the split move while weights
change), and the p50/p99 latencies.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from canaryctl.errors import SpecError

__all__ = [
    "MAX_DURATION",
    "MAX_RATE",
    "UNKNOWN",
    "Outcome",
    "Schedule",
    "SplitMeter",
    "VersionStats",
    "quantile",
    "version_of",
]

UNKNOWN = "unknown"  # answers naming no version, and requests that got no answer
MAX_RATE = 2000.0  # requests per second: a probe measures, it is no load generator
MAX_DURATION = 3600.0  # seconds: a probe always stops by itself

_VERSION_HEADER = "x-app-version"
# The seed app's plain answer: "Host: <pod>, Version: <version>".
_VERSION_TEXT = re.compile(r"\bversion[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9][\w.+-]*)", re.IGNORECASE)


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent (seconds since the start), how long it took, and
    what came back. `status` is None when no answer came (`error` says why)."""

    sent: float
    latency: float
    status: int | None
    version: str | None
    error: str | None = None

    @property
    def failed(self) -> bool:
        """No answer, or a 5xx answer (what the error-rate queries count)."""
        return self.status is None or self.status >= 500

    @property
    def code(self) -> str:
        """The status code as text, or the failure's name when no answer came."""
        return str(self.status) if self.status is not None else (self.error or "no answer")


def version_of(headers: Mapping[str, str], body: bytes | str) -> str | None:
    """The version an answer names: the `X-App-Version` header, a JSON body's
    `version`, or `Version: v` in a text body (the seed app's answer); else None."""
    for name, value in headers.items():
        if name.lower() == _VERSION_HEADER and value.strip():
            return value.strip()
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text[:4096]  # answers naming a version are short; never scan a large page
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("version"), str | int | float):
            return str(data["version"])
    match = _VERSION_TEXT.search(text)
    return match.group(1) if match else None


def quantile(ordered: list[float], q: float) -> float | None:
    """The q-quantile of sorted values by nearest rank (an observed value), or None."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Schedule:
    """Requests at a steady `rate` for `duration` seconds, at most `count` of them.

    Request n (from 0) is due at n / rate seconds after the start: an open loop, so a
    slow answer never delays the requests after it (unlike a curl loop).
    """

    rate: float
    duration: float
    count: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and 0 < self.rate <= MAX_RATE):
            raise SpecError(
                "--rate", f"must be > 0 and <= {MAX_RATE:g} requests/s, not {self.rate}"
            )
        if not (math.isfinite(self.duration) and 0 < self.duration <= MAX_DURATION):
            raise SpecError(
                "--duration", f"must be > 0 and <= {MAX_DURATION:g}s, not {self.duration}"
            )
        if self.count is not None and self.count < 1:
            raise SpecError("--count", f"must be >= 1, not {self.count}")

    @property
    def total(self) -> int:
        """How many requests the run sends: those due strictly before `duration`."""
        due = max(1, math.ceil(self.rate * self.duration - 1e-9))
        return due if self.count is None else min(due, self.count)

    def due(self, n: int) -> float:
        """Seconds after the start at which request `n` is sent."""
        return n / self.rate


@dataclass
class VersionStats:
    """What one version answered so far."""

    requests: int = 0
    failed: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    _sorted: list[float] | None = field(default=None, repr=False)

    def add(self, outcome: Outcome) -> None:
        """Count one outcome of this version."""
        self.requests += 1
        self.failed += outcome.failed
        self.codes[outcome.code] += 1
        self.latencies.append(outcome.latency)
        self._sorted = None

    @property
    def error_rate(self) -> float:
        """Failed share of this version's requests (0 when there were none)."""
        return self.failed / self.requests if self.requests else 0.0

    def latency(self, q: float) -> float | None:
        """The q-quantile of latencies in seconds (None before any request)."""
        if self._sorted is None:
            self._sorted = sorted(self.latencies)
        return quantile(self._sorted, q)


class SplitMeter:
    """Outcomes by version: totals over the run and the split over a recent window."""

    def __init__(self, window: float = 5.0) -> None:
        """`window`: seconds of recent requests the window split covers."""
        if not window > 0:
            raise SpecError("window", f"must be > 0 seconds, not {window}")
        self.window = window
        self.versions: dict[str, VersionStats] = {}
        self._recent: deque[tuple[float, str]] = deque()
        self.requests = 0
        self.failed = 0
        self.last_sent = 0.0

    def add(self, outcome: Outcome) -> None:
        """Count one outcome; answers without a version count as UNKNOWN."""
        version = outcome.version or UNKNOWN
        self.versions.setdefault(version, VersionStats()).add(outcome)
        self._recent.append((outcome.sent, version))
        self.requests += 1
        self.failed += outcome.failed
        self.last_sent = max(self.last_sent, outcome.sent)

    def shares(self) -> dict[str, float]:
        """Each version's share of all requests so far."""
        if not self.requests:
            return {}
        return {v: s.requests / self.requests for v, s in sorted(self.versions.items())}

    def window_shares(self, now: float) -> dict[str, float]:
        """Each version's share of the requests sent in the last `window` seconds."""
        cutoff = now - self.window
        # Outcomes arrive in completion order, nearly in send order: trimming from the
        # left is exact up to requests that overtook each other within a latency.
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()
        counts = Counter(version for _, version in self._recent)
        total = sum(counts.values())
        return {v: counts[v] / total for v in sorted(counts)} if total else {}

    def report(self, now: float) -> dict[str, Any]:
        """JSON-ready state: totals, and per version its counts, shares and latencies."""
        window = self.window_shares(now)
        versions = {}
        for name, stats in sorted(self.versions.items()):
            versions[name] = {
                "requests": stats.requests,
                "failed": stats.failed,
                "share": stats.requests / self.requests,
                "windowShare": window.get(name, 0.0),
                "errorRate": stats.error_rate,
                "p50": stats.latency(0.5),
                "p99": stats.latency(0.99),
                "codes": dict(sorted(stats.codes.items())),
            }
        return {
            "elapsed": round(now, 3),
            "requests": self.requests,
            "failed": self.failed,
            "window": self.window,
            "versions": versions,
        }

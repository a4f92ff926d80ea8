"""Retry timing for an unreachable API server: capped exponential backoff with jitter.

Pure: the caller passes the current time and a random number, so the schedule and the
give-up instant are testable without a clock (see tests/core/test_backoff.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outage:
    """One stretch of failed API calls, from the first failure to the next success.

    ``failed(now, rand)`` returns how long to wait before the next try, or None once the
    outage has lasted ``timeout`` seconds (then the caller gives up). ``recovered()`` ends
    the outage; the next failure starts a new one with the short first delay again.
    """

    timeout: float = 120.0
    base: float = 0.5
    cap: float = 5.0
    since: float | None = None
    attempts: int = 0

    def failed(self, now: float, rand: float) -> float | None:
        """Record a failure at ``now``; ``rand`` in [0, 1) spreads the delay (jitter)."""
        if self.since is None:
            self.since = now
        self.attempts += 1
        left = self.since + self.timeout - now
        if left <= 0:
            return None
        # Exponential up to the cap; "equal jitter" (half fixed, half random) keeps a
        # floor, so many clients that lost the same API server do not retry in lockstep
        # and none of them spins.
        full = min(self.cap, self.base * 2 ** min(self.attempts - 1, 30))
        delay = full / 2 + full / 2 * min(max(rand, 0.0), 1.0)
        # The last try lands at the timeout, not a whole delay after it.
        return min(delay, left)

    def recovered(self) -> None:
        """A call succeeded: the outage is over."""
        self.since = None
        self.attempts = 0

    def down_for(self, now: float) -> float:
        """Seconds since the outage began (0 when there is none)."""
        return 0.0 if self.since is None else max(0.0, now - self.since)

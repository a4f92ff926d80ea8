"""When to look next: looks that follow the evidence rate instead of a fixed clock.

A fixed 10-s look is too coarse where errors are plentiful (at 1000 req/s and 5%
errors one look holds ~550 errors, and the judge cannot stop inside it) and
needlessly fine where they are rare. `LookSchedule` sizes the next look so that
it is expected to hold about `target_errors` errors (canary and stable
together), from the error rate seen so far; before the first error it doubles
the look, starting at `min_interval`. Every look stays within
[min_interval, max_interval]. This is the default of a rollout's analysis
(`interval: auto`); the defaults here are the rollout's defaults.

Validity. The next look's length is a function of looks already judged, so every
look time is a stopping time of the data's filtration, and the judge's
e-processes are nonnegative supermartingales along any such sequence of times;
Ville's inequality bounds false rollbacks by alpha however the looks are chosen.
Only the speed changes.

Why about 10 errors. With looks of 5 s at the shortest, a look sizes itself only
where errors come at fewer than two a second; there, 10-error looks (10-50 s)
measured less exposure to a 2x regression and faster promotion than 20-error
ones (benchmark grid: 2.0-2.3x the floor against 2.4-2.7x; 650-1280 s to promote
against 860-2040 s) and the same false rollbacks under bursts of 3 errors. Far
fewer is unsafe: the canary's share of a look's errors is the evidence, and
5-error looks (when looks of 1 s were allowed) rolled back 25% of good canaries
whose errors came in bursts of 3, as one bursty window weighs as much as a whole
look while the dispersion estimate cannot see bursts in nearly empty windows.

Why 5 s at the shortest. A look is a handful of PromQL queries over what
Prometheus has scraped: `increase()` needs two samples inside the window, so a
look shorter than two scrape intervals reads stale or empty data, and every look
costs queries. 5 s is two scrapes at 2.5 s, the operator's own tick, and keeps a
look's cost at a few queries per 5 s per canary; with slower scrapes raise
`min_interval` to two scrape intervals. The price of a longer shortest look is
measured, not hidden: no test can roll back before its first look, so a
regression serving E excess errors per second costs at least E * min_interval
(benchmarks/analysis.py, grid section 4). A shortest look of 10 s was measured
and not adopted: it cut false rollbacks under bursts from one pod only at 5% errors
and 100 req/s, and took 5% x 100 from 2.7x to 3.5x the floor (`--shortest-look 10`).

Why 60 s at the longest: where errors are rare a minute-long look still holds only
a few (at 10 req/s and 0.1% errors, 0.6), so longer looks delay a decision by
seconds of an analysis that takes hours, while they keep its cost low and its
status small (a rollout keeps its last 2000 looks, 33 hours of 60-s looks and
2.8 hours of 5-s ones, which are only taken where errors are plentiful and
decisions come in minutes; older looks are folded into the test's stored state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from canaryctl.errors import SpecError

#: Defaults of `LookSchedule` and of a rollout's `interval: auto` (seconds, errors per look).
DEFAULT_MIN_INTERVAL = 5.0
DEFAULT_MAX_INTERVAL = 60.0
DEFAULT_TARGET_ERRORS = 10.0


@dataclass(frozen=True, slots=True)
class LookSchedule:
    """Length of the next look from the errors seen so far; pure, no clock."""

    target_errors: float = DEFAULT_TARGET_ERRORS
    min_interval: float = DEFAULT_MIN_INTERVAL
    max_interval: float = DEFAULT_MAX_INTERVAL

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_errors) and self.target_errors > 0):
            raise SpecError("targetErrors", f"must be a positive number, got {self.target_errors}")
        if not (math.isfinite(self.min_interval) and self.min_interval > 0):
            raise SpecError("minInterval", f"must be positive seconds, got {self.min_interval}")
        if not (math.isfinite(self.max_interval) and self.max_interval >= self.min_interval):
            raise SpecError(
                "maxInterval",
                f"must be at least minInterval ({self.min_interval:g} s), got {self.max_interval}",
            )

    def next_interval(self, elapsed: float, errors: float) -> float:
        """Seconds until the next look, after `elapsed` seconds of looks holding `errors` errors.

        `errors` counts both versions. Invalid inputs (negative, NaN) fall back to the
        shortest look: looking early never costs validity.
        """
        if not (math.isfinite(elapsed) and elapsed > 0):
            return self.min_interval
        if math.isfinite(errors) and errors > 0:
            wanted = self.target_errors * elapsed / errors
        elif errors == 0:
            wanted = elapsed  # nothing seen yet: double the look
        else:
            return self.min_interval
        return min(self.max_interval, max(self.min_interval, wanted))

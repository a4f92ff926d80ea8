"""What several judge tests draw from and configure: Poisson counts, the plain e-process."""

from __future__ import annotations

import math
import random
from typing import Any


def poisson(lam: float, rng: random.Random) -> int:
    """Poisson draw by inversion; fine for the small means used in tests."""
    u, k, p = rng.random(), 0, math.exp(-lam)
    cdf = p
    while u > cdf and p > 0:
        k += 1
        p *= lam / k
        cdf += p
    return k


# The plain e-process: no per-look cap, no dispersion prior, no promotion warm-up.
PLAIN: dict[str, Any] = {
    "min_decisive_looks": 1,
    "dispersion_prior": 1.0,
    "promote_warmup_looks": 0,
    "promote_warmup_errors": 0,
    "min_canary_requests": 0,
    "max_canary_error_rate": None,
}

"""Small helpers shared by integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def wait_until(probe: Callable[[], T], timeout: float = 60.0, interval: float = 0.25) -> T:
    """Poll probe() until it returns something truthy; fail with its last value on timeout."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        time.sleep(interval)
        last = probe()
    return last

"""Human durations ("30s", "2m", "1h30m", "500ms") to seconds and back."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(value: str | int | float) -> float:
    """Return `value` in seconds.

    Accepts a non-negative number of seconds, a numeric string ("45"), or Go-style
    unit groups ("500ms", "30s", "2m", "1h30m", "1.5h"). Raises ValueError otherwise.
    """
    # bool is an int subclass; `pause: true` is a mistake, not one second.
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use a number of seconds or e.g. '30s'")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid duration {value!r}: must be a finite number >= 0")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: use a number of seconds or e.g. '30s'")
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    if not _WHOLE.fullmatch(text):
        raise ValueError(
            f"invalid duration {value!r}: use units ms, s, m, h as in '500ms', '30s', '1h30m'"
        )
    return sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Render seconds compactly, e.g. 90 -> "1m30s", 0.5 -> "500ms", 3600 -> "1h"."""
    if seconds < 0:
        raise ValueError(f"negative duration {seconds!r}")
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts)

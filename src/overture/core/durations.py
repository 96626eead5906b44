"""Durations (``30s``, ``1h30m``, ``250ms``) and rates (``10/s``) as people write them."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h|d)\s*$")

MAX_DURATION = 366 * 86400.0
"""Nothing Overture waits for is longer than a year; a bigger number is a typo."""


def parse_duration(value: object) -> float:
    """Seconds from ``"1h30m"``, ``"250ms"``, ``"2.5s"`` or a plain number of seconds.

    Raises ``ValueError`` with a message a workflow author can act on.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '30s' or '5m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError(f"expected a duration such as '30s' or '5m', got {value!r}")
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {value!r} is longer than a year")
    return seconds


def _parse_text(text: str) -> float:
    compact = text.strip().replace(" ", "")
    try:
        return float(compact)  # "30" and "0.5" are seconds
    except ValueError:
        pass
    total, end = 0.0, 0
    for match in _PART.finditer(compact):
        if match.start() != end:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        end = match.end()
    if end == 0 or end != len(compact):
        raise ValueError(
            f"bad duration {text!r}: use a number with a unit (ms, s, m, h, d), "
            "e.g. '30s' or '1h30m'"
        )
    return total


def parse_rate(value: object) -> float:
    """Events per second from ``"10/s"``, ``"100/m"``, ``"5/10s"`` or a plain number per second."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate such as '10/s', got {value!r}")
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str) and (match := _RATE.match(value)):
        count, span, unit = match.groups()
        period = float(span or 1) * _UNITS[unit]
        if period <= 0:
            raise ValueError(f"bad rate {value!r}: the period must be longer than zero")
        rate = float(count) / period
    else:
        raise ValueError(f"bad rate {value!r}: write it as COUNT/UNIT, e.g. '10/s' or '100/m'")
    if not rate > 0:
        raise ValueError(f"a rate must be greater than zero, got {value!r}")
    return rate

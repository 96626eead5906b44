"""Durations and rates as people write them."""

from __future__ import annotations

import pytest

from overture.core.durations import parse_duration, parse_rate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("250ms", 0.25),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1.5m", 90),
        ("1m 30s", 90),
        (" 45 ", 45),
        (12, 12),
        (0.5, 0.5),
        ("0", 0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "s", "10x", "1h30", "-1s", True, None, "nan"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("10/s", 10), ("120/m", 2), ("5/10s", 0.5), ("3600/h", 1), (4, 4), ("1/250ms", 4)],
)
def test_rates(text: object, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["10", "10 per second", "0/s", "/s", -1, False, "5/0s"])
def test_bad_rates(text: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)

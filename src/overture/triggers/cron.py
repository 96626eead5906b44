"""Cron expressions, and the instants at which they fire in a time zone.

Syntax is Vixie cron's: five fields ``minute hour day-of-month month day-of-week``, or six with a
leading seconds field (as in Quartz and Spring); ``*``, numbers, ``a-b`` ranges, ``*/n``,
``a-b/n`` and ``a/n`` steps, comma lists, names ``JAN``-``DEC`` and ``SUN``-``SAT`` (0 and 7 are
both Sunday), and the macros ``@yearly`` ``@annually`` ``@monthly`` ``@weekly`` ``@daily``
``@midnight`` ``@hourly``. When both day fields are restricted (neither starts with ``*``), a day
matches if either does, as in Vixie cron; otherwise both must.

An expression is read on the wall clock of a zone, and its fire instants are returned in UTC.
Daylight saving time changes the wall clock twice a year:

* **Spring forward.** A wall time that does not exist (02:30 on 2026-03-08 in New York, where
  clocks go from 02:00 to 03:00) still fires, at the instant zoneinfo gives it with ``fold=0``:
  02:30 EST, that is 07:30 UTC or 03:30 EDT. So a daily ``30 2 * * *`` runs that day too. An
  instant reached twice this way fires once: the missing 02:00 is 07:00 UTC, the same instant
  as 03:00 EDT, so ``0 * * * *`` fires 23 times that day.
* **Fall back.** A wall time that happens twice (01:30 on 2026-11-01 in New York) fires at its
  first occurrence only, unless the hour field allows all 24 hours: such a job runs every real
  hour, so ``0 * * * *`` fires 25 times that day while ``30 1 * * *`` fires once.

Fire instants are whole seconds, strictly increasing, and the same whether they are asked for
one at a time (``next_after``) or as a batch (``between``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from overture.errors import OvertureError

_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
# Every expression that parses fires eventually, but "29 February on a Sunday" can be decades away.
_HORIZON = timedelta(days=366 * 100)
_LAST = datetime(9998, 1, 1)  # searching up to datetime.max would overflow
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (name in messages, lowest, highest, names for values from the lowest on)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class CronInvalid(OvertureError, ValueError):
    """A cron expression or time zone that cannot be used; the message names the field and why,
    e.g. "cron '0 25 * * *': hour 25 is out of range 0-23"."""

    code = "bad_cron"


@dataclass(frozen=True, kw_only=True, slots=True)
class Cron:
    """A parsed cron expression: the values each field allows."""

    expression: str
    """The expression as written."""
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    """Days of the month, 1-31."""
    months: frozenset[int]
    """Months, 1-12."""
    weekdays: frozenset[int]
    """Days of the week, 0 (Sunday) to 6."""
    dom_restricted: bool
    """The day-of-month field does not start with ``*``."""
    dow_restricted: bool
    """The day-of-week field does not start with ``*``."""
    hour_wildcard: bool
    """All 24 hours are allowed: the job then fires at both occurrences of a repeated hour."""

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse a 5- or 6-field expression or a macro; CronInvalid says what is wrong."""
        return _parse(expression)

    def next_after(self, after: datetime, zone: ZoneInfo) -> datetime:
        """The first fire instant strictly after `after` (aware, any zone), as an aware UTC time."""
        start = _naive_utc(after)
        for instant in self._fires(start, zone, min(start + _HORIZON, _LAST)):
            return instant.replace(tzinfo=UTC)
        raise CronInvalid(f"cron {self.expression!r}: never fires")

    def between(
        self, after: datetime, until: datetime, zone: ZoneInfo, *, limit: int = 1000
    ) -> list[datetime]:
        """Fire instants in (after, until], oldest first, at most `limit` (the first `limit`)."""
        stop = min(_naive_utc(until), _LAST).replace(microsecond=0) + _SECOND
        fires = self._fires(_naive_utc(after), zone, stop)
        return [instant.replace(tzinfo=UTC) for instant in islice(fires, max(limit, 0))]

    def _fires(self, after: datetime, zone: ZoneInfo, stop: datetime) -> Iterator[datetime]:
        # Works on naive UTC instants, one stretch of constant UTC offset at a time: inside one,
        # wall time and instant move together, so the wall-clock search below is exact.
        first = after.replace(microsecond=0) + _SECOND
        for begin, end, offset, previous in _stretches(zone, first, stop):
            low = max(first, begin)
            repeated_until = begin + (previous - offset)  # the second pass of a fall-back
            plain = (
                wall - offset
                for wall in self._walls(low + offset, end + offset)
                if self.hour_wildcard or wall - offset >= repeated_until
            )
            # Wall times skipped by a spring-forward fire at their fold=0 instant, in this stretch.
            skipped = (
                wall - previous
                for wall in self._walls(low + previous, min(begin + offset, end + previous))
            )
            last = None
            for instant in heapq.merge(plain, skipped):
                if instant != last:
                    yield instant
                    last = instant

    def _walls(self, start: datetime, stop: datetime) -> Iterator[datetime]:
        wall = self._next_wall(start, stop)
        while wall is not None:
            yield wall
            wall = self._next_wall(wall + _SECOND, stop)

    def _next_wall(self, wall: datetime, stop: datetime) -> datetime | None:
        # Jump field by field (month, day, hour, minute, second), never second by second.
        while wall < stop:
            if wall.month not in self.months:
                month = _next_in(self.months, wall.month)
                year = wall.year if month is not None else wall.year + 1
                wall = datetime(year, min(self.months) if month is None else month, 1)
            elif not self._day_matches(wall) or (hour := _next_in(self.hours, wall.hour)) is None:
                wall = datetime(wall.year, wall.month, wall.day) + _DAY
            elif hour != wall.hour:
                wall = wall.replace(hour=hour, minute=0, second=0)
            elif (minute := _next_in(self.minutes, wall.minute)) is None:
                wall = wall.replace(minute=0, second=0) + timedelta(hours=1)
            elif minute != wall.minute:
                wall = wall.replace(minute=minute, second=0)
            elif (second := _next_in(self.seconds, wall.second)) is None:
                wall = wall.replace(second=0) + timedelta(minutes=1)
            else:
                wall = wall.replace(second=second)
                return wall if wall < stop else None
        return None

    def _day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self.dom_restricted and self.dow_restricted:
            return in_month or in_week
        return in_month and in_week


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone; CronInvalid for an unknown name (message names it)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    raise CronInvalid(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris'")


class _Bad(Exception):
    """What is wrong with one field; `_parse` adds which expression it is in."""


@lru_cache(maxsize=1024)
def _parse(expression: str) -> Cron:
    try:
        return _build(expression)
    except _Bad as bad:
        raise CronInvalid(f"cron {expression!r}: {bad}") from None


def _build(expression: str) -> Cron:
    text = expression.strip()
    if not text:
        raise _Bad("is empty")
    if text.lower() == "@reboot":
        raise _Bad("@reboot is not supported: a scheduler has no boot to run at")
    if text.startswith("@") and text.lower() not in _MACROS:
        raise _Bad(f"unknown macro {text!r}; use one of {', '.join(_MACROS)}")
    text = _MACROS.get(text.lower(), text)
    fields = text.split()
    if len(fields) not in (5, 6):
        raise _Bad(
            f"expected 5 fields (minute hour day-of-month month day-of-week) "
            f"or 6 (second first), got {len(fields)}"
        )
    if len(fields) == 5:
        fields.insert(0, "0")
    parsed = (_field(field, *spec) for field, spec in zip(fields, _FIELDS, strict=True))
    seconds, minutes, hours, days, months, weekdays = parsed
    cron = Cron(
        expression=expression,
        seconds=seconds,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=frozenset(day % 7 for day in weekdays),
        dom_restricted=not fields[3].startswith("*"),
        dow_restricted=not fields[5].startswith("*"),
        hour_wildcard=len(hours) == 24,
    )
    # Every weekday falls in every month, and every date on every weekday over the years: only
    # a day of month that no allowed month has (30 February) can make a schedule never fire.
    either = cron.dom_restricted and cron.dow_restricted
    if not either and not any(day <= _MONTH_DAYS[m] for m in months for day in days):
        raise _Bad("never fires: none of its months has any of its days of month")
    return cron


def _field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise _Bad(f"{name} field {text!r} has an empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            step = _number(step_text, f"{name} step", 0, 10**9, ())
            if step == 0:
                raise _Bad(f"{name} step 0 must be at least 1")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start, _, end = base.partition("-")
            first = _number(start, name, low, high, names)
            last = _number(end, name, low, high, names)
            if names is _WEEKDAYS and last == 0 < first:
                last = 7  # FRI-SUN means Friday to Sunday, not an empty range
            if first > last:
                raise _Bad(f"{name} range {base!r} is reversed: write the smaller value first")
        else:
            first = _number(base, name, low, high, names)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _number(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.upper() in names:
        return low + names.index(text.upper())
    if not (text.isascii() and text.isdigit()):
        kind = f"a number or a name such as {names[0]}" if names else "a number"
        raise _Bad(f"{name} {text!r} is not {kind}")
    value = int(text)
    if not low <= value <= high:
        raise _Bad(f"{name} {value} is out of range {low}-{high}")
    return value


def _next_in(values: frozenset[int], at_least: int) -> int | None:
    return min((value for value in values if value >= at_least), default=None)


def _naive_utc(moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone: pass an aware datetime")
    return moment.astimezone(UTC).replace(tzinfo=None)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    return instant.replace(tzinfo=UTC).astimezone(zone).utcoffset() or timedelta(0)


def _stretches(
    zone: ZoneInfo, start: datetime, stop: datetime
) -> Iterator[tuple[datetime, datetime, timedelta, timedelta]]:
    """Stretches of constant offset covering [start, stop): begin, end, offset, offset before."""
    begin, offset = start, _offset(zone, start)
    previous = offset
    for year in range(start.year - 1, stop.year + 1):
        for instant, before, after in _transitions(zone, year):
            if instant <= start:
                begin, previous = instant, before
            elif instant < stop:
                yield begin, instant, offset, previous
                begin, offset, previous = instant, after, offset
        # Also end a stretch at each new year, so that a zone without changes (UTC) needs no
        # probing of the years ahead; not within days of a change, whose effects it would cut.
        boundary = datetime(year + 1, 1, 1)
        if start < boundary < stop and boundary - begin > 2 * _DAY:
            yield begin, boundary, offset, previous
            begin, previous = boundary, offset
    yield begin, stop, offset, previous


@lru_cache(maxsize=512)
def _transitions(zone: ZoneInfo, year: int) -> tuple[tuple[datetime, timedelta, timedelta], ...]:
    """The offset changes in (1 January `year`, 1 January `year + 1`]: instant, before, after."""
    # zoneinfo does not expose its transition table: probe daily, then bisect to the second.
    # Two changes less than a day apart would be missed: a rare case, traded for speed.
    found = []
    day = datetime(year, 1, 1)
    before = _offset(zone, day)
    while day.year == year:
        low, day = day, day + _DAY
        after = _offset(zone, day)
        if after != before:
            high = day
            while high - low > _SECOND:
                middle = (low + (high - low) // 2).replace(microsecond=0)
                low, high = (middle, high) if _offset(zone, middle) == before else (low, middle)
            found.append((high, before, after))
            before = after
    return tuple(found)

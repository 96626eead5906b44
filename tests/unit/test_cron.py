"""Cron expressions: parsing, errors, and fire instants across time zones and DST changes.

Every test uses fixed datetimes (a fake clock); nothing sleeps.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overture.core.loader import parse_workflow
from overture.errors import WorkflowInvalid
from overture.triggers.cron import Cron, CronInvalid, time_zone

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
ZULU = ZoneInfo("UTC")


def z(text: str) -> datetime:
    """An aware UTC datetime from ``2026-01-10T12:00`` (seconds optional)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def upcoming(expression: str, after: datetime, zone: ZoneInfo, count: int = 3) -> list[datetime]:
    """The next ``count`` fire instants, asked for one at a time as a scheduler does."""
    instants = []
    for _ in range(count):
        after = Cron.parse(expression).next_after(after, zone)
        instants.append(after)
    return instants


def fires_on(expression: str, zone: ZoneInfo, day: date) -> list[datetime]:
    """The fire instants during one local calendar day."""
    start = datetime.combine(day, time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
    return Cron.parse(expression).between(
        start - timedelta(seconds=1), end - timedelta(seconds=1), zone
    )


# --- the seed schedules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        (ZULU, ["2026-01-11T07:00", "2026-01-12T07:00", "2026-01-13T07:00"]),
        (PARIS, ["2026-01-11T06:00", "2026-01-12T06:00", "2026-01-13T06:00"]),
        # 07:00 EST is 12:00Z: the fire at exactly `after` is not "after" it.
        (NEW_YORK, ["2026-01-11T12:00", "2026-01-12T12:00", "2026-01-13T12:00"]),
    ],
)
def test_daily_at_seven(zone: ZoneInfo, expected: list[str]) -> None:
    assert upcoming("0 7 * * *", z("2026-01-10T12:00"), zone) == [z(e) for e in expected]


@pytest.mark.parametrize(("zone", "hour"), [(ZULU, "18:00"), (PARIS, "17:00"), (NEW_YORK, "23:00")])
def test_sundays_at_six_pm(zone: ZoneInfo, hour: str) -> None:
    # 2026-01-10 is a Saturday.
    expected = [z(f"2026-01-{day}T{hour}") for day in ("11", "18", "25")]
    assert upcoming("0 18 * * SUN", z("2026-01-10T12:00"), zone) == expected


@pytest.mark.parametrize("zone", [ZULU, PARIS, NEW_YORK])
def test_every_sixty_minutes_is_hourly(zone: ZoneInfo) -> None:
    expected = [z("2026-01-10T13:00"), z("2026-01-10T14:00"), z("2026-01-10T15:00")]
    assert upcoming("*/60 * * * *", z("2026-01-10T12:00"), zone) == expected
    assert upcoming("*/60 * * * *", z("2026-01-10T12:30"), zone) == expected


# --- daylight saving time ------------------------------------------------------------------


def test_seven_am_in_paris_keeps_local_time_across_both_changes() -> None:
    cron = Cron.parse("0 7 * * *")
    spring = cron.between(z("2026-03-27T00:00"), z("2026-03-31T00:00"), PARIS)
    assert spring == [z(f"2026-03-{d}") for d in ("27T06:00", "28T06:00", "29T05:00", "30T05:00")]
    autumn = cron.between(z("2026-10-24T00:00"), z("2026-10-27T00:00"), PARIS)
    assert autumn == [z(f"2026-10-{d}") for d in ("24T05:00", "25T06:00", "26T06:00")]


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        (NEW_YORK, date(2026, 3, 8), date(2026, 11, 1)),
        (LONDON, date(2026, 3, 29), date(2026, 10, 25)),
        (PARIS, date(2026, 3, 29), date(2026, 10, 25)),
    ],
)
def test_hourly_fires_every_real_hour(zone: ZoneInfo, spring: date, autumn: date) -> None:
    for day, hours in ((spring, 23), (autumn, 25), (spring - timedelta(days=1), 24)):
        instants = fires_on("0 * * * *", zone, day)
        assert len(instants) == hours
        assert all(b - a == timedelta(hours=1) for a, b in pairwise(instants))


def test_new_york_spring_forward_runs_a_missing_time_once() -> None:
    # 02:30 does not exist on 2026-03-08: it runs at 02:30 EST = 07:30Z = 03:30 EDT.
    assert fires_on("30 2 * * *", NEW_YORK, date(2026, 3, 8)) == [z("2026-03-08T07:30")]
    assert upcoming("30 2 * * *", z("2026-03-07T08:00"), NEW_YORK, 2) == [
        z("2026-03-08T07:30"),
        z("2026-03-09T06:30"),
    ]
    # Every 15 minutes: 02:00-02:45 fall on the same instants as 03:00-03:45 EDT.
    quarters = fires_on("*/15 * * * *", NEW_YORK, date(2026, 3, 8))
    assert len(quarters) == 23 * 4
    assert len(set(quarters)) == len(quarters)


def test_new_york_fall_back_runs_a_repeated_time_once_unless_every_hour() -> None:
    assert fires_on("30 1 * * *", NEW_YORK, date(2026, 11, 1)) == [z("2026-11-01T05:30")]
    quarters = fires_on("*/15 * * * *", NEW_YORK, date(2026, 11, 1))
    assert len(quarters) == 25 * 4
    assert z("2026-11-01T05:45") in quarters  # 01:45 EDT
    assert z("2026-11-01T06:45") in quarters  # 01:45 EST
    # Not every hour: the repeated 01:xx fire only the first time.
    odd_hours = fires_on("0 1-23/2 * * *", NEW_YORK, date(2026, 11, 1))
    assert odd_hours[0] == z("2026-11-01T05:00")
    assert len(odd_hours) == 12


@pytest.mark.parametrize(
    ("zone", "day", "expression", "expected"),
    [
        (LONDON, date(2026, 3, 29), "30 1 * * *", "2026-03-29T01:30"),  # 01:30 GMT, missing
        (LONDON, date(2026, 10, 25), "30 1 * * *", "2026-10-25T00:30"),  # first 01:30, BST
        (PARIS, date(2026, 3, 29), "30 2 * * *", "2026-03-29T01:30"),  # 02:30 CET, missing
        (PARIS, date(2026, 10, 25), "30 2 * * *", "2026-10-25T00:30"),  # first 02:30, CEST
    ],
)
def test_european_changes(zone: ZoneInfo, day: date, expression: str, expected: str) -> None:
    assert fires_on(expression, zone, day) == [z(expected)]


def test_next_after_inside_the_repeated_hour_gives_the_next_real_hour() -> None:
    cron = Cron.parse("0 * * * *")
    assert cron.next_after(z("2026-11-01T05:00"), NEW_YORK) == z("2026-11-01T06:00")
    assert cron.next_after(z("2026-11-01T06:00"), NEW_YORK) == z("2026-11-01T07:00")
    # After 03:10 EDT, the missing 02:30 (07:30Z) is still ahead.
    assert Cron.parse("30 2 * * *").next_after(z("2026-03-08T07:10"), NEW_YORK) == z(
        "2026-03-08T07:30"
    )


def test_after_may_be_in_any_zone_and_results_are_utc() -> None:
    after = datetime(2026, 1, 10, 8, 0, tzinfo=PARIS)
    instant = Cron.parse("0 7 * * *").next_after(after, NEW_YORK)
    assert instant == z("2026-01-10T12:00")
    assert instant.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        Cron.parse("0 7 * * *").next_after(datetime(2026, 1, 1), ZULU)


# --- syntax ----------------------------------------------------------------------------------


def test_six_fields_start_with_seconds() -> None:
    every_two = Cron.parse("*/2 * * * * *")
    assert every_two.next_after(z("2026-01-10T12:00:00.500"), ZULU) == z("2026-01-10T12:00:02")
    assert every_two.between(z("2026-01-10T12:00"), z("2026-01-10T12:00:10"), ZULU) == [
        z(f"2026-01-10T12:00:{s:02}") for s in (2, 4, 6, 8, 10)
    ]
    assert upcoming("30 0 7 * * *", z("2026-01-10T12:00"), ZULU, 1) == [z("2026-01-11T07:00:30")]
    assert Cron.parse("0 7 * * *").seconds == {0}


@pytest.mark.parametrize(
    ("macro", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_macros(macro: str, same_as: str) -> None:
    parsed = Cron.parse(macro)
    assert parsed.expression == macro
    assert dataclasses.replace(parsed, expression=same_as) == Cron.parse(same_as)


def test_names_are_case_insensitive_and_sunday_is_zero_or_seven() -> None:
    cron = Cron.parse("0 9 * jan,Jul mon-FRI")
    assert cron.months == {1, 7}
    assert cron.weekdays == {1, 2, 3, 4, 5}
    assert Cron.parse("0 0 * * 7").weekdays == Cron.parse("0 0 * * SUN").weekdays == {0}
    assert Cron.parse("0 0 * * 5-7").weekdays == Cron.parse("0 0 * * FRI-SUN").weekdays
    assert Cron.parse("0 0 * * FRI-SUN").weekdays == {5, 6, 0}


def test_lists_ranges_and_steps() -> None:
    cron = Cron.parse("5,10-12,40/10 9-17/4 */10 * *")
    assert cron.minutes == {5, 10, 11, 12, 40, 50}
    assert cron.hours == {9, 13, 17}
    assert cron.days == {1, 11, 21, 31}
    assert Cron.parse("*/60 * * * *").minutes == {0}
    assert Cron.parse("* * * * *").hour_wildcard
    assert Cron.parse("* */1 * * *").hour_wildcard
    assert not Cron.parse("* */2 * * *").hour_wildcard


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # 2026-01-01 is a Thursday: Fridays 2, 9, 16 and Tuesday the 13th.
    assert upcoming("0 0 13 * FRI", z("2026-01-01T00:00"), ZULU, 4) == [
        z(f"2026-01-{d}T00:00") for d in ("02", "09", "13", "16")
    ]
    # A field starting with `*` is not a restriction: then both must match (odd-day Fridays).
    assert upcoming("0 0 */2 * FRI", z("2026-01-01T00:00"), ZULU) == [
        z("2026-01-09T00:00"),
        z("2026-01-23T00:00"),
        z("2026-02-13T00:00"),
    ]


def test_twenty_ninth_of_february_waits_for_a_leap_year() -> None:
    assert upcoming("0 0 29 2 *", z("2026-03-01T00:00"), ZULU, 2) == [
        z("2028-02-29T00:00"),
        z("2032-02-29T00:00"),
    ]
    # ... and on a Sunday only (AND, since the weekday starts with `*`): 2032 is the next one.
    assert upcoming("0 0 29 2 */7", z("2026-03-01T00:00"), ZULU, 1) == [z("2032-02-29T00:00")]


def test_an_expression_that_can_never_fire() -> None:
    with pytest.raises(CronInvalid, match=r"^cron '0 0 30 2 \*': never fires"):
        Cron.parse("0 0 30 2 *")
    with pytest.raises(CronInvalid, match="never fires"):
        Cron.parse("0 0 31 4,6,9,11 *")
    Cron.parse("0 0 30 2 MON")  # the 30th never comes, but Mondays do
    # A Cron built by hand skips parse's check; the search still stops.
    never = dataclasses.replace(Cron.parse("0 0 1 2 *"), days=frozenset({30}))
    with pytest.raises(CronInvalid, match="never fires"):
        never.next_after(z("2026-01-01T00:00"), NEW_YORK)
    assert never.between(z("2026-01-01T00:00"), z("2036-01-01T00:00"), NEW_YORK) == []


def test_between_bounds_and_limit() -> None:
    cron = Cron.parse("* * * * *")
    after, until = z("2026-01-10T12:00"), z("2026-01-10T12:03")
    assert cron.between(after, until, ZULU) == [z("2026-01-10T12:0" + m) for m in "123"]
    assert cron.between(after, until, ZULU, limit=2) == [
        z("2026-01-10T12:01"),
        z("2026-01-10T12:02"),
    ]
    assert cron.between(until, after, ZULU) == []
    far = datetime.max.replace(tzinfo=UTC)
    assert len(cron.between(after, far, ZULU, limit=5)) == 5


def test_parse_is_cached() -> None:
    assert Cron.parse("0 7 * * *") is Cron.parse("0 7 * * *")


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        (
            "0 7 * *",
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second first), got 4",
        ),
        ("1 2 3 4 5 6 7", "got 7"),
        ("0 25 * * *", "hour 25 is out of range 0-23"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("60 * * * * *", "second 60 is out of range 0-59"),
        ("0 0 0 * *", "day of month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week 8 is out of range 0-7"),
        ("*/0 * * * *", "minute step 0 must be at least 1"),
        ("*/x * * * *", "minute step 'x' is not a number"),
        ("0 17-9 * * *", "hour range '17-9' is reversed: write the smaller value first"),
        ("0 0 * FOO *", "month 'FOO' is not a number or a name such as JAN"),
        ("0 0 * * FUN", "day of week 'FUN' is not a number or a name such as SUN"),
        ("MON * * * *", "minute 'MON' is not a number"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
        ("0 0 L * *", "day of month 'L' is not a number"),
        ("@reboot", "@reboot is not supported"),
        ("@often", "unknown macro '@often'; use one of @yearly, @annually"),
    ],
)
def test_errors_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronInvalid) as raised:
        Cron.parse(expression)
    assert str(raised.value).startswith(f"cron {expression!r}: ")
    assert message in str(raised.value)


def test_time_zone() -> None:
    assert time_zone("Europe/Paris") == PARIS
    for name in ("Mars/Olympus", "", "../etc", "America"):
        with pytest.raises(CronInvalid, match=f"unknown time zone {name!r}: use an IANA name"):
            time_zone(name)


# --- workflow validation ---------------------------------------------------------------------


def test_workflow_validation_reports_bad_expressions_and_zones() -> None:
    source = """\
name: crons
on:
  cron:
    - "0 25 * * *"
    - cron: "0 7 * *"
      timezone: Mars/Olympus
    - cron: "0 7 * * *"
      timezone: Europe/Paris
steps:
  - id: x
    uses: http
"""
    with pytest.raises(WorkflowInvalid) as raised:
        parse_workflow(source)
    found = {(p.code, p.path, p.line) for p in raised.value.problems}
    assert found == {
        ("bad_cron", ("on", "cron", 0), 4),
        ("bad_cron", ("on", "cron", 1, "cron"), 5),
        ("bad_timezone", ("on", "cron", 1, "timezone"), 6),
    }
    messages = [p.message for p in raised.value.problems]
    assert "cron '0 25 * * *': hour 25 is out of range 0-23" in messages
    assert "unknown time zone 'Mars/Olympus': use an IANA name such as 'Europe/Paris'" in messages


# --- properties ------------------------------------------------------------------------------

ZONES = [ZULU, PARIS, NEW_YORK, LONDON, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Asia/Kolkata")]
# Instants near the 2026 changes of those zones, where mistakes would hide.
CHANGES = [
    z("2026-03-08T07:00"),
    z("2026-11-01T06:00"),
    z("2026-03-29T01:00"),
    z("2026-10-25T01:00"),
    z("2026-04-04T15:00"),  # Lord Howe: 02:00 → 01:30
    z("2026-10-03T15:30"),  # Lord Howe: 02:00 → 02:30
]


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        number.map(str),
        st.integers(1, high - low + 1).map(lambda n: f"*/{n}"),
        st.tuples(number, number).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.tuples(number, number).map(lambda ab: f"{ab[0]},{ab[1]}"),
        st.tuples(number, st.integers(1, 5)).map(lambda an: f"{an[0]}/{an[1]}"),
    )


expressions = st.builds(
    lambda second, minute, hour, day, month, weekday: " ".join(
        f for f in (second, minute, hour, day, month, weekday) if f
    ),
    st.sampled_from(["", "0", "*/20", "15,45"]),
    _field(0, 59),
    _field(0, 23),
    st.one_of(st.just("*"), _field(1, 28)),
    st.one_of(st.just("*"), _field(1, 12)),
    st.one_of(st.just("*"), _field(0, 7), st.just("MON-FRI")),
)
afters = st.one_of(
    st.tuples(st.sampled_from(CHANGES), st.integers(-3 * 3600, 3 * 3600)).map(
        lambda base_shift: base_shift[0] + timedelta(seconds=base_shift[1])
    ),
    st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1)).map(lambda d: d.replace(tzinfo=UTC)),
)


def _matches(cron: Cron, wall: datetime) -> bool:
    in_month = wall.day in cron.days
    in_week = wall.isoweekday() % 7 in cron.weekdays
    day = (
        in_month or in_week if cron.dom_restricted and cron.dow_restricted else in_month and in_week
    )
    return day and all(
        value in allowed
        for value, allowed in (
            (wall.second, cron.seconds),
            (wall.minute, cron.minutes),
            (wall.hour, cron.hours),
            (wall.month, cron.months),
        )
    )


def _is_fire(cron: Cron, instant: datetime, zone: ZoneInfo) -> bool:
    """The module docstring's rules, checked from the instant's side."""
    local = instant.astimezone(zone)
    if _matches(cron, local.replace(tzinfo=None)):
        return local.fold == 0 or cron.hour_wildcard
    # Otherwise it must be a missing wall time, read with the offset from before the change.
    before = (instant - timedelta(days=1)).astimezone(zone).utcoffset()
    assert before is not None
    wall = instant.replace(tzinfo=None) + before
    missing = (
        wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall
    )
    return missing and _matches(cron, wall) and wall.replace(tzinfo=zone).astimezone(UTC) == instant


def _oracle(cron: Cron, after: datetime, until: datetime, zone: ZoneInfo) -> list[datetime]:
    """Every matching wall time near the window, mapped as zoneinfo maps it, minute by minute."""
    instants = set()
    wall = after.astimezone(zone).replace(
        tzinfo=None, minute=0, second=0, microsecond=0
    ) - timedelta(hours=3)
    end = until.astimezone(zone).replace(tzinfo=None) + timedelta(hours=3)
    while wall < end:
        for second in cron.seconds:
            at = wall.replace(second=second)
            if _matches(cron, at):
                first = at.replace(tzinfo=zone, fold=0).astimezone(UTC)
                again = at.replace(tzinfo=zone, fold=1).astimezone(UTC)
                instants.add(first)
                if cron.hour_wildcard and again > first:
                    instants.add(again)
        wall += timedelta(minutes=1)
    return sorted(i for i in instants if after < i <= until)


@settings(max_examples=200, deadline=None)
@given(expression=expressions, after=afters, zone=st.sampled_from(ZONES))
def test_next_after_is_later_and_fires_by_the_rules(
    expression: str, after: datetime, zone: ZoneInfo
) -> None:
    cron = Cron.parse(expression)
    instant = cron.next_after(after, zone)
    assert instant > after
    assert instant.tzinfo is UTC
    assert _is_fire(cron, instant, zone)


@settings(max_examples=200, deadline=None)
@given(expression=expressions, after=afters, zone=st.sampled_from(ZONES))
def test_between_agrees_with_next_after(expression: str, after: datetime, zone: ZoneInfo) -> None:
    cron = Cron.parse(expression)
    instants = cron.between(after, after + timedelta(days=3), zone, limit=30)
    if not instants:
        assert cron.next_after(after, zone) > after + timedelta(days=3)
    previous = after
    for instant in instants:
        assert instant == cron.next_after(previous, zone)
        previous = instant


@settings(max_examples=100, deadline=None)
@given(expression=expressions, after=afters, zone=st.sampled_from(ZONES))
def test_between_finds_exactly_what_a_brute_force_finds(
    expression: str, after: datetime, zone: ZoneInfo
) -> None:
    cron = Cron.parse(expression)
    until = after + timedelta(hours=6)
    assert cron.between(after, until, zone, limit=10_000) == _oracle(cron, after, until, zone)

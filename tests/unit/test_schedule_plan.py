"""Which ticks a scheduler fires: on-time ticks always, missed ones (older than the grace) only
as many as the schedule catches up, never one twice across passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overture.store.records import ScheduleSpec
from overture.triggers.cron import Cron, time_zone
from overture.triggers.schedules import MISFIRE_GRACE, ScheduleInvalid, check_schedule, plan

START = datetime(2026, 3, 1, tzinfo=UTC)
EXPRESSIONS = ["* * * * *", "*/7 * * * * *", "0 * * * *", "30 2 * * *", "* * * * 1 *"]


def every_tick(expression: str, due: datetime, now: datetime) -> list[datetime]:
    return Cron.parse(expression).between(
        due - timedelta(microseconds=1), now, time_zone("UTC"), limit=10**7
    )


def test_on_time_ticks_fire_and_missed_ones_are_skipped() -> None:
    due = START
    now = START + timedelta(minutes=10, seconds=30)

    fired = plan("* * * * *", "UTC", due, now, catch_up=0)

    assert fired.fire == [START + timedelta(minutes=10)]
    assert fired.next_fire_at == START + timedelta(minutes=11)


def test_a_tick_exactly_at_the_grace_is_on_time() -> None:
    now = START + timedelta(minutes=5) + MISFIRE_GRACE

    assert plan("* * * * *", "UTC", START, now, 0).fire == [
        START + timedelta(minutes=5),
        START + timedelta(minutes=6),
    ]


def test_catching_up_fires_the_last_missed_ticks_oldest_first() -> None:
    now = datetime(2025, 12, 15, tzinfo=UTC)

    fired = plan("* * * * 1 *", "UTC", datetime(2023, 1, 1, tzinfo=UTC), now, catch_up=5)

    assert fired.fire == [datetime(2025, 1, 31, 23, 59, 55 + n, tzinfo=UTC) for n in range(5)]
    assert fired.next_fire_at == datetime(2026, 1, 1, tzinfo=UTC)


@settings(max_examples=100, deadline=None)
@given(
    expression=st.sampled_from(EXPRESSIONS),
    gap=st.integers(min_value=0, max_value=86400),
    catch_up=st.integers(min_value=0, max_value=30),
)
def test_plan_matches_every_tick_enumerated(expression: str, gap: int, catch_up: int) -> None:
    due = Cron.parse(expression).next_after(START, time_zone("UTC"))
    now = due + timedelta(seconds=gap)
    ticks = every_tick(expression, due, now)
    cutoff = max(due, now - MISFIRE_GRACE)
    missed = [t for t in ticks if t < cutoff]
    on_time = [t for t in ticks if t >= cutoff]

    fired = plan(expression, "UTC", due, now, catch_up)

    assert fired.fire == (missed[-catch_up:] if catch_up else []) + on_time
    assert fired.next_fire_at > now
    assert fired.next_fire_at == Cron.parse(expression).next_after(now, time_zone("UTC"))


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=20))
def test_passes_never_fire_a_tick_twice_or_go_back(steps: list[int]) -> None:
    due = Cron.parse("*/7 * * * * *").next_after(START, time_zone("UTC"))
    now, fired = due, []
    for step in steps:
        now += timedelta(seconds=step)
        passed = plan("*/7 * * * * *", "UTC", due, now, catch_up=3)
        fired += passed.fire
        due = passed.next_fire_at
    assert fired == sorted(set(fired))


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"id": "has:colon"}, "schedule id"),
        ({"id": ""}, "schedule id"),
        ({"catch_up": -1}, "catch_up"),
        ({"catch_up": 1001}, "catch_up"),
    ],
)
def test_a_schedule_made_by_hand_is_checked(fields: dict[str, object], words: str) -> None:
    spec = ScheduleSpec(**{"id": "nightly", "workflow": "w", "cron": "@daily", **fields})  # type: ignore[arg-type]
    with pytest.raises(ScheduleInvalid, match=words):
        check_schedule(spec)

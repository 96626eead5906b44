"""The scheduler on both stores, with a fake clock: the seed workflows' cron expressions fire
at the instants cron users expect, across a daylight-saving change; and a real-time loop that
stops when told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from overture.core.loader import parse_workflow
from overture.runtime.scheduler import Scheduler
from overture.store import Store, create_store
from overture.store.records import ScheduleSpec

pytestmark = pytest.mark.asyncio

PARIS = ZoneInfo("Europe/Paris")


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = create_store(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def fire_through(store: Store, schedule_id: str, ticks: int) -> list[datetime]:
    """Move a fake clock from each tick to the next, firing as a scheduler would."""
    fired: list[datetime] = []
    while len(fired) < ticks:
        due = (await store.get_schedule(schedule_id)).next_fire_at
        assert due is not None
        clock = Scheduler(store, clock=lambda due=due: due)  # type: ignore[misc]
        fired += [t.tick for t in await clock.fire_due()]
    return fired


async def test_the_daily_seed_fires_at_seven_in_paris_across_the_spring_change(
    store: Store,
) -> None:
    await store.register_workflow(
        parse_workflow(
            """
key: daily_instructor_v1
trigger:
  type: cron_or_event
  event_types: [streak_ping]
  cron: {cron: "0 7 * * *", timezone: Europe/Paris}
steps:
  - {id: gather_signals, uses: echo}
"""
        )
    )
    days_to_spring = (datetime(2027, 3, 29, tzinfo=UTC) - datetime.now(UTC)).days + 2

    fired = await fire_through(store, "daily_instructor_v1:cron:0", days_to_spring)

    assert all(t.astimezone(PARIS).hour == 7 for t in fired)
    assert len({t.date() for t in fired}) == len(fired), "one tick a day"
    winter = [t for t in fired if t < datetime(2027, 3, 28, tzinfo=UTC)]
    summer = [t for t in fired if t >= datetime(2027, 3, 28, tzinfo=UTC)]
    assert {t.hour for t in winter} == {6} and {t.hour for t in summer} == {5}
    runs = (await store.list_runs(workflow="daily_instructor_v1", limit=1000)).items
    assert len(runs) == len(fired)


async def test_the_weekly_seed_fires_on_sundays_at_six_pm(store: Store) -> None:
    await store.register_workflow(
        parse_workflow(
            """
key: weekly_seed_v1
trigger: {type: cron, cron: "0 18 * * SUN"}
steps:
  - {id: clo_begin_week, uses: echo}
"""
        )
    )

    fired = await fire_through(store, "weekly_seed_v1:cron:0", 4)

    assert [(t.weekday(), t.hour, t.minute) for t in fired] == [(6, 18, 0)] * 4
    assert [b - a for a, b in pairwise(fired)] == [timedelta(days=7)] * 3


async def test_every_sixty_minutes_is_hourly(store: Store) -> None:
    await store.register_workflow(
        parse_workflow(
            """
name: worker_cron
on: {cron: "*/60 * * * *"}
steps:
  - {id: tick, uses: echo}
"""
        )
    )

    fired = await fire_through(store, "worker_cron:cron:0", 3)

    assert [(t.minute, t.second) for t in fired] == [(0, 0)] * 3
    assert [b - a for a, b in pairwise(fired)] == [timedelta(hours=1)] * 2


async def test_a_running_scheduler_fires_ticks_and_stops_when_told(store: Store) -> None:
    await store.register_workflow(
        parse_workflow("name: fast\nsteps:\n  - {id: tick, uses: echo}\n")
    )
    await store.create_schedule(ScheduleSpec(id="fast", workflow="fast", cron="* * * * * *"))
    scheduler = Scheduler(store, poll=0.2)
    running = asyncio.create_task(scheduler.run())

    for _ in range(100):
        if len(await store.schedule_ticks("fast")) >= 2:
            break
        await asyncio.sleep(0.1)
    scheduler.stop()
    await asyncio.wait_for(running, 5)

    ticks = await store.schedule_ticks("fast")
    assert len(ticks) >= 2 and all(t.run_id for t in ticks)

"""Cron schedules: each tick fires once however many schedulers run, missed ticks are skipped or
caught up, a workflow's own ``on.cron`` schedules follow its latest version."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from overture.errors import Conflict, InputInvalid, NotFound
from overture.store import Store
from overture.store.records import ScheduleSpec
from overture.triggers.cron import CronInvalid
from overture.triggers.schedules import ScheduleInvalid

from .conftest import OpenStore, execute_sql, register

pytestmark = pytest.mark.asyncio

JOB = """
name: report
steps:
  - {id: build, uses: echo, with: {day: "${input.day}"}}
"""

DAILY = """
name: daily
on:
  cron:
    - "0 7 * * *"
    - {cron: "0 18 * * SUN", timezone: Europe/Paris, input: {kind: weekly}}
steps:
  - {id: run, uses: echo}
"""

EVERY_SECOND = "* * * * * *"


def spec(**fields: object) -> ScheduleSpec:
    values: dict[str, object] = {
        "id": "nightly",
        "workflow": "report",
        "cron": EVERY_SECOND,
        "input": {"day": "today"},
    }
    return ScheduleSpec(**{**values, **fields})  # type: ignore[arg-type]


async def runs_of(store: Store, workflow: str) -> list[str]:
    return [r.id for r in (await store.list_runs(workflow=workflow, limit=500)).items]


async def test_a_schedule_is_created_with_its_next_tick(store: Store) -> None:
    await register(store, JOB)
    before = datetime.now(UTC)

    made = await store.create_schedule(spec(cron="0 7 * * *", timezone="Europe/Paris"))

    assert (made.id, made.workflow, made.origin, made.paused) == ("nightly", "report", "api", False)
    assert made.next_fire_at is not None and made.next_fire_at > before
    local = made.next_fire_at.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (7, 0)
    assert await store.get_schedule("nightly") == made
    assert await store.list_schedules() == [made]


async def test_bad_schedules_are_refused(store: Store) -> None:
    await register(store, JOB)
    await store.create_schedule(spec())
    with pytest.raises(Conflict) as taken:
        await store.create_schedule(spec())
    assert taken.value.code == "schedule_exists"
    with pytest.raises(NotFound):
        await store.create_schedule(spec(id="x", workflow="nope"))
    with pytest.raises(CronInvalid):
        await store.create_schedule(spec(id="y", cron="61 * * * *"))
    with pytest.raises(CronInvalid):
        await store.create_schedule(spec(id="z", timezone="Mars/Olympus"))
    assert [s.id for s in await store.list_schedules()] == ["nightly"]


async def test_each_due_tick_fires_one_run_once(store: Store) -> None:
    await register(store, JOB)
    made = await store.create_schedule(spec())
    first = made.next_fire_at
    assert first is not None

    fired = await store.fire_schedules(now=first + timedelta(seconds=4))
    again = await store.fire_schedules(now=first + timedelta(seconds=4))

    assert [t.tick for t in fired] == [first + timedelta(seconds=n) for n in range(5)]
    assert again == []
    assert all(t.run_id and t.error is None for t in fired)
    assert sorted(await runs_of(store, "report")) == sorted(t.run_id for t in fired)
    run = await store.get_run(fired[0].run_id)  # type: ignore[arg-type]
    assert run.input == {"day": "today"}
    after = await store.get_schedule("nightly")
    assert after.next_fire_at == first + timedelta(seconds=5)
    ticks = await store.schedule_ticks("nightly", limit=2)
    assert [t.tick for t in ticks] == [first + timedelta(seconds=4), first + timedelta(seconds=3)]


async def test_ticks_missed_while_nothing_ran_are_skipped(store: Store) -> None:
    await register(store, JOB)
    made = await store.create_schedule(spec(cron="* * * * *"))
    assert made.next_fire_at is not None

    later = made.next_fire_at + timedelta(hours=1, seconds=30)
    fired = await store.fire_schedules(now=later)

    assert [t.tick for t in fired] == [made.next_fire_at + timedelta(hours=1)]


async def test_a_schedule_that_catches_up_fires_its_last_missed_ticks(store: Store) -> None:
    await register(store, JOB)
    made = await store.create_schedule(spec(cron="* * * * *", catch_up=3))
    assert made.next_fire_at is not None

    fired = await store.fire_schedules(now=made.next_fire_at + timedelta(hours=1, seconds=30))

    start = made.next_fire_at
    expected = [start + timedelta(minutes=m) for m in (57, 58, 59, 60)]
    assert [t.tick for t in fired] == expected
    assert len(await runs_of(store, "report")) == 4


async def test_a_paused_schedule_fires_nothing_and_resumes_from_the_next_tick(
    store: Store,
) -> None:
    await register(store, JOB)
    await store.create_schedule(spec(cron="* * * * *", catch_up=5))

    paused = await store.set_schedule_paused("nightly", True)
    assert (paused.paused, paused.next_fire_at) == (True, None)
    far = datetime.now(UTC) + timedelta(days=1)
    assert await store.fire_schedules(now=far) == []

    resumed = await store.set_schedule_paused("nightly", False)
    assert not resumed.paused
    assert resumed.next_fire_at is not None
    assert resumed.next_fire_at - datetime.now(UTC) < timedelta(minutes=1, seconds=5)
    assert await runs_of(store, "report") == []


async def test_a_tick_of_a_disabled_workflow_says_why_it_started_nothing(store: Store) -> None:
    await register(store, JOB)
    made = await store.create_schedule(spec())
    await store.set_workflow_disabled("report", True)

    fired = await store.fire_schedules(now=made.next_fire_at)

    assert [(t.run_id, (t.error or "").split(":")[0]) for t in fired] == [
        (None, "workflow_disabled")
    ]


async def test_a_workflow_s_cron_becomes_its_schedules(store: Store) -> None:
    await register(store, DAILY)

    found = {s.id: s for s in await store.list_schedules()}

    assert set(found) == {"daily:cron:0", "daily:cron:1"}
    weekly = found["daily:cron:1"]
    assert (weekly.origin, weekly.cron, weekly.timezone, weekly.input) == (
        "workflow",
        "0 18 * * SUN",
        "Europe/Paris",
        {"kind": "weekly"},
    )
    with pytest.raises(Conflict) as own:
        await store.delete_schedule("daily:cron:0")
    assert own.value.code == "schedule_from_workflow"


async def test_a_new_version_keeps_unchanged_ticks_and_drops_removed_ones(store: Store) -> None:
    await register(store, DAILY)
    before = {s.id: s for s in await store.list_schedules()}
    await store.set_schedule_paused("daily:cron:0", True)

    await register(
        store,
        DAILY.replace("name: daily", "name: daily\nversion: 2").replace('    - "0 7 * * *"\n', ""),
    )

    after = {s.id: s for s in await store.list_schedules()}
    assert set(after) == {"daily:cron:0"}
    # index 0 is now the weekly entry: a different expression, so a new next tick...
    assert after["daily:cron:0"].cron == "0 18 * * SUN"
    assert after["daily:cron:0"].next_fire_at != before["daily:cron:0"].next_fire_at
    # ...but the pause set by hand stays.
    assert after["daily:cron:0"].paused


async def test_api_schedules_are_deleted_with_their_ticks(store: Store) -> None:
    await register(store, JOB)
    made = await store.create_schedule(spec())
    await store.fire_schedules(now=made.next_fire_at)

    await store.delete_schedule("nightly")

    with pytest.raises(NotFound):
        await store.get_schedule("nightly")
    with pytest.raises(NotFound):
        await store.schedule_ticks("nightly")
    with pytest.raises(NotFound):
        await store.delete_schedule("nightly")


async def test_schedules_are_a_tenant_s_own(store: Store) -> None:
    await register(store, JOB, tenant="acme")
    await store.create_schedule(spec(tenant="acme"))

    with pytest.raises(NotFound):
        await store.get_schedule("nightly", tenant="globex")
    with pytest.raises(NotFound):
        await store.set_schedule_paused("nightly", True, tenant="globex")
    assert await store.list_schedules(tenant="globex") == []
    with pytest.raises(NotFound):
        await store.create_schedule(spec(tenant="globex"))


async def test_schedulers_sharing_a_database_fire_each_tick_once(
    store: Store, open_store: OpenStore
) -> None:
    await register(store, JOB)
    made = await store.create_schedule(spec())
    assert made.next_fire_at is not None
    schedulers = [store, await open_store(), await open_store()]

    fired = []
    for second in range(5):  # a fake clock: every scheduler sees each tick as due at once
        now = made.next_fire_at + timedelta(seconds=second)
        for ticks in await asyncio.gather(*(s.fire_schedules(now=now) for s in schedulers)):
            fired += ticks

    assert sorted(t.tick for t in fired) == [
        made.next_fire_at + timedelta(seconds=n) for n in range(5)
    ]
    assert len(await runs_of(store, "report")) == 5


async def test_the_next_tick_due_is_known(store: Store) -> None:
    assert await store.next_schedule_at() is None
    await register(store, JOB)
    made = await store.create_schedule(spec(cron="0 7 * * *"))
    await store.create_schedule(spec(id="later", cron="0 7 1 1 *"))

    assert await store.next_schedule_at() == made.next_fire_at


async def test_registering_the_same_definition_again_restores_its_schedules(
    store: Store, store_url: str
) -> None:
    await register(store, DAILY)
    statement = "DELETE FROM schedules"  # as in a database from before cron triggers
    await execute_sql(store_url, statement, statement)
    assert await store.list_schedules() == []

    await register(store, DAILY)

    assert {s.id for s in await store.list_schedules()} == {"daily:cron:0", "daily:cron:1"}


async def test_a_schedule_whose_input_the_workflow_refuses_is_not_made(store: Store) -> None:
    await register(
        store,
        """
name: strict
input: {type: object, required: [day]}
steps:
  - {id: s, uses: echo}
""",
    )

    with pytest.raises(InputInvalid):
        await store.create_schedule(spec(workflow="strict", input={"night": 1}))
    made = await store.create_schedule(spec(workflow="strict", input={"day": 1}))
    assert made.input == {"day": 1}


@pytest.mark.parametrize(
    "fields", [{"id": "has:colon"}, {"id": "a/b"}, {"catch_up": -1}, {"catch_up": 5000}]
)
async def test_schedules_made_by_hand_follow_the_api_s_rules(
    store: Store, fields: dict[str, object]
) -> None:
    await register(store, JOB)

    with pytest.raises(ScheduleInvalid):
        await store.create_schedule(spec(**fields))
    assert await store.list_schedules() == []

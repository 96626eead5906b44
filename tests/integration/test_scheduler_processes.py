"""Schedulers in real processes: three ``overture worker`` processes share one database, and
each tick of a schedule fires exactly one run; stopping them all loses no tick state."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
from tests.support.workers import WorkerProcess, start_worker

from overture.core.loader import parse_workflow
from overture.store import create_store
from overture.store.records import ScheduleSpec

pytestmark = pytest.mark.asyncio

TICKED = parse_workflow(
    """
name: ticked
steps:
  - {id: note, uses: echo, with: {n: 1}}
"""
)
TICKS = 5


async def test_three_schedulers_fire_each_of_five_ticks_once(
    database_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    store = create_store(database_url)
    await store.open()
    try:
        await store.register_workflow(TICKED)
        spec = ScheduleSpec(id="fast", workflow="ticked", cron="* * * * * *", paused=True)
        await store.create_schedule(spec)
        workers = [start_worker(spawn, database_url, tmp_path) for _ in range(3)]
        await asyncio.sleep(1.0)  # let every scheduler start polling
        await store.set_schedule_paused("fast", False)

        deadline = time.monotonic() + 30
        while len(await store.schedule_ticks("fast", limit=100)) < TICKS:
            assert time.monotonic() < deadline, "the schedulers fired too few ticks"
            await asyncio.sleep(0.1)
        await store.set_schedule_paused("fast", True)
        await asyncio.sleep(0.5)  # a pass that started before the pause commits first

        ticks = sorted(t.tick for t in await store.schedule_ticks("fast", limit=100))
        runs = (await store.list_runs(workflow="ticked", limit=100)).items
        assert len(ticks) >= TICKS
        assert len(set(ticks)) == len(ticks)
        assert ticks == [ticks[0] + timedelta(seconds=n) for n in range(len(ticks))], (
            "a tick was skipped"
        )
        assert len(runs) == len(ticks), "one run per tick, no more, no less"
        fired_by = {w.pid for w in workers if "fired its" in w.output()}
        assert fired_by, "no worker logged a fired tick"
    finally:
        await store.close()

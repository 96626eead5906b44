"""Delayed runs: visible as scheduled until their time, cancellable before they start."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from overture.store import Store

from .conftest import ONE_STEP, register, start

pytestmark = pytest.mark.asyncio


async def test_a_delayed_run_is_listed_as_scheduled_until_its_time(store: Store) -> None:
    await register(store, ONE_STEP)
    later = datetime.now(UTC) + timedelta(hours=1)
    delayed = await start(store, "one", {"n": 1}, run_at=later)
    soon = await start(store, "one", {"n": 2}, run_at=datetime.now(UTC) + timedelta(seconds=0.5))
    now = await start(store, "one", {"n": 3})

    assert delayed.not_before == later
    assert (await store.get_run(delayed.id)).not_before == later
    assert now.not_before is None
    scheduled = await store.list_runs(scheduled=True)
    assert {r.id for r in scheduled.items} == {delayed.id, soon.id}

    await asyncio.sleep(0.6)
    assert [r.id for r in (await store.list_runs(scheduled=True)).items] == [delayed.id]


async def test_a_delayed_run_cancelled_before_its_time_never_starts(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1}, run_at=datetime.now(UTC) + timedelta(seconds=0.3))

    cancelled = await store.cancel_run(run.id)
    await asyncio.sleep(0.4)

    assert cancelled.status == "cancelled"
    assert await store.claim("w", limit=10) == []
    assert (await store.list_runs(scheduled=True)).items == []
    assert (await store.get_run(run.id)).status == "cancelled"

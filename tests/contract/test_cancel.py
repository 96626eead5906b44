"""Cancelling: queued work is withdrawn, running handlers learn it through their heartbeat and
can no longer record a result; a finished run stays as it was."""

from __future__ import annotations

import pytest

from overture.core import events as ev
from overture.errors import NotFound
from overture.store import Store
from overture.store.records import Lease

from .conftest import ONE_STEP, complete, drive, event_types, register, start

pytestmark = pytest.mark.asyncio


async def test_cancelling_a_queued_run_withdraws_its_jobs(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})

    cancelled = await store.cancel_run(run.id, reason="no longer needed")

    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None
    assert await store.get_run(run.id) == cancelled
    assert await store.claim("worker-1", limit=10) == []
    assert await store.queue_depth() == 0
    history = [stored.event for stored in await store.events(run.id)]
    assert [e.reason for e in history if isinstance(e, ev.RunCancelled)] == ["no longer needed"]


async def test_a_running_step_of_a_cancelled_run_loses_its_lease(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=10)

    await store.cancel_run(run.id)

    assert await store.heartbeat("worker-1", [Lease(job_id=job.id, token=job.token)]) == {job.id}
    assert not await complete(store, job, {"n": 1})
    assert (await event_types(store, run.id))[-2:] == ["RunCancelled", "StepCancelled"]
    assert (await store.get_run(run.id)).status == "cancelled"


async def test_cancelling_a_finished_run_changes_nothing(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    await drive(store)
    finished = await store.get_run(run.id)
    history = await store.events(run.id)

    assert await store.cancel_run(run.id) == finished
    assert await store.get_run(run.id) == finished
    assert await store.events(run.id) == history


async def test_only_the_runs_tenant_can_cancel_it(store: Store) -> None:
    await register(store, ONE_STEP, tenant="acme")
    run = await start(store, "one", {"n": 1}, tenant="acme")

    with pytest.raises(NotFound):
        await store.cancel_run(run.id)
    with pytest.raises(NotFound):
        await store.cancel_run(run.id, tenant="globex")
    assert (await store.get_run(run.id, tenant="acme")).status == "queued"
    assert (await store.cancel_run(run.id, tenant=None)).status == "cancelled"

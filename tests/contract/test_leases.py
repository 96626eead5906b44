"""Leases: heartbeats keep them, the reaper takes back those of dead workers (within a crash
budget), a graceful release gives a job back at no cost; an old token never commits."""

from __future__ import annotations

import asyncio

import pytest

from overture.core import events as ev
from overture.store import Store
from overture.store.records import ClaimedJob, Lease

from .conftest import ONE_STEP, claim_when_due, complete, register, start

pytestmark = pytest.mark.asyncio

SHORT_LEASE = 0.2
"""Seconds: a lease that a test lets run out."""
HEARTBEAT_LEASE = 0.5
"""Seconds: a lease renewed every 0.1 s, with room for a slow machine between renewals."""

FRAGILE = """
name: fragile
steps:
  - id: work
    uses: fragile
    retry: {max_crashes: 1}
"""


def lease_of(job: ClaimedJob) -> Lease:
    return Lease(job_id=job.id, token=job.token)


async def outlive_the_lease() -> None:
    await asyncio.sleep(SHORT_LEASE + 0.1)


async def last_events(store: Store, run_id: str, count: int) -> list[ev.Event]:
    return [stored.event for stored in (await store.events(run_id))[-count:]]


# --- heartbeat -----------------------------------------------------------------------------


async def test_heartbeats_keep_a_lease_past_its_first_expiry(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=10, lease=HEARTBEAT_LEASE)

    for _ in range(10):  # 1 s in all: twice the lease
        await asyncio.sleep(0.1)
        assert await store.heartbeat("worker-1", [lease_of(job)], lease=HEARTBEAT_LEASE) == set()

    assert await store.reap() == 0
    assert await complete(store, job, {"n": 1})
    assert (await store.get_run(run.id)).status == "succeeded"


async def test_a_heartbeat_reports_the_leases_no_longer_held(store: Store) -> None:
    await register(store, ONE_STEP)
    for n in range(3):
        await start(store, "one", {"n": n})
    held, forged, finished = await store.claim("worker-1", limit=10)
    assert await complete(store, finished, None)

    lost = await store.heartbeat(
        "worker-1",
        [lease_of(held), Lease(job_id=forged.id, token="forged"), lease_of(finished)],
    )

    assert lost == {forged.id, finished.id}


# --- reap ----------------------------------------------------------------------------------


async def test_a_lease_is_not_reaped_before_it_is_over(store: Store) -> None:
    await register(store, ONE_STEP)
    await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=10, lease=30)

    assert await store.reap() == 0
    assert await complete(store, job, {"n": 1})


async def test_an_expired_lease_is_reaped_and_its_attempt_queued_again(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=10, lease=SHORT_LEASE)

    await outlive_the_lease()
    assert await store.reap() == 1

    expired, requeued = await last_events(store, run.id, 2)
    assert isinstance(expired, ev.StepLeaseExpired)
    assert (expired.step_id, expired.attempt, expired.worker_id) == ("only", 1, "worker-1")
    assert isinstance(requeued, ev.StepRetryScheduled)
    assert (requeued.step_id, requeued.attempt, requeued.reason) == ("only", 1, "crash")
    (again,) = await store.claim("worker-2", limit=10)
    assert (again.run_id, again.step_id, again.attempt) == (run.id, "only", 1)
    assert again.token != job.token
    assert await store.heartbeat("worker-1", [lease_of(job)]) == {job.id}
    assert not await complete(store, job, {"from": "the dead worker"})
    assert await complete(store, again, {"from": "worker-2"})
    done = await store.get_run(run.id)
    assert (done.status, done.output) == ("succeeded", {"only": {"from": "worker-2"}})
    assert (await store.run_state(run.id)).step("only").crashes == 1


async def test_a_reap_expires_at_most_limit_leases(store: Store) -> None:
    await register(store, ONE_STEP)
    for n in range(3):
        await start(store, "one", {"n": n})
    await store.claim("worker-1", limit=10, lease=SHORT_LEASE)
    await outlive_the_lease()

    assert await store.reap(limit=2) == 2
    assert await store.reap(limit=2) == 1
    assert len(await store.claim("worker-2", limit=10)) == 3


async def test_a_step_that_keeps_killing_workers_fails_once_its_crash_budget_is_spent(
    store: Store,
) -> None:
    await register(store, FRAGILE)
    run = await start(store, "fragile")

    for _ in range(2):  # max_crashes: 1 allows one re-delivery
        (job,) = await claim_when_due(store, lease=SHORT_LEASE)
        assert job.attempt == 1
        await outlive_the_lease()
        assert await store.reap() == 1

    failed = await store.get_run(run.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "crash_budget_exhausted"
    (letter,) = await store.dead_letters()
    assert (letter.run_id, letter.step_id, letter.error.code) == (
        run.id,
        "work",
        "crash_budget_exhausted",
    )
    assert await store.claim("worker-1", limit=10) == []


# --- release -------------------------------------------------------------------------------


async def test_a_released_job_is_claimable_at_once_without_spending_any_budget(
    store: Store,
) -> None:
    await register(store, FRAGILE.replace("max_crashes: 1", "max_crashes: 0"))
    run = await start(store, "fragile")

    for worker in ("worker-1", "worker-2"):  # with no crash budget, a crash would fail the run
        (job,) = await store.claim(worker, limit=10)
        assert await store.release([lease_of(job)]) == 1
        assert await store.queue_depth() == 1
        (released,) = await last_events(store, run.id, 1)
        assert isinstance(released, ev.StepRetryScheduled)
        assert (released.attempt, released.reason) == (1, "released")

    (last,) = await store.claim("worker-3", limit=10)
    assert (last.step_id, last.attempt) == ("work", 1)
    assert not await complete(store, job, {"by": "a worker that gave it back"})
    assert await complete(store, last, {"by": "worker-3"})
    assert (await store.get_run(run.id)).status == "succeeded"
    assert (await store.run_state(run.id)).step("work").crashes == 0


async def test_releasing_a_lease_not_held_releases_nothing(store: Store) -> None:
    await register(store, ONE_STEP)
    await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=10)

    assert await store.release([Lease(job_id=job.id, token="forged")]) == 0
    assert await store.queue_depth() == 0
    assert await complete(store, job, {"n": 1})

"""Claiming: due jobs only, lowest priority number first, FIFO within a priority, each job leased
to exactly one worker however many claim at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from overture.core import events as ev
from overture.store import Store

from .conftest import (
    FLAKY,
    ONE_STEP,
    boom,
    claim_when_due,
    complete,
    event_types,
    register,
    start,
)

pytestmark = pytest.mark.asyncio

MIXED = """
name: mixed
steps:
  - {id: quick, uses: fast}
  - {id: heavy, uses: slow}
"""


async def claim_one_by_one(store: Store, count: int) -> list[str]:
    """The run ids of ``count`` jobs claimed one at a time."""
    order = []
    for _ in range(count):
        (job,) = await store.claim("worker-1", limit=1)
        order.append(job.run_id)
    return order


async def test_a_claimed_job_carries_what_the_worker_needs(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 7})
    before = datetime.now(UTC)

    (job,) = await store.claim("worker-1", limit=10, lease=30)

    assert (job.run_id, job.tenant, job.workflow) == (run.id, "default", "one")
    assert (job.step_id, job.attempt, job.uses, job.compensation) == ("only", 1, "echo", False)
    assert job.input == {"n": 7}
    assert job.token
    assert job.lease_until > before


async def test_claiming_records_that_the_step_started(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})

    await store.claim("worker-1", limit=10)

    last = (await store.events(run.id))[-1].event
    assert isinstance(last, ev.StepStarted)
    assert (last.step_id, last.attempt, last.worker_id) == ("only", 1, "worker-1")
    assert (await store.get_run(run.id)).status == "running"
    assert await store.queue_depth() == 0


async def test_lower_priority_numbers_are_claimed_first(store: Store) -> None:
    await register(store, ONE_STEP)
    low = await start(store, "one", {"n": 1}, priority=5)
    urgent = await start(store, "one", {"n": 2}, priority=1)
    middle = await start(store, "one", {"n": 3}, priority=3)

    assert await claim_one_by_one(store, 3) == [urgent.id, middle.id, low.id]


async def test_jobs_of_equal_priority_are_claimed_first_in_first_out(store: Store) -> None:
    await register(store, ONE_STEP)
    runs = [await start(store, "one", {"n": n}) for n in range(5)]

    assert await claim_one_by_one(store, 5) == [run.id for run in runs]


async def test_a_claim_takes_at_most_limit_jobs(store: Store) -> None:
    await register(store, ONE_STEP)
    for n in range(5):
        await start(store, "one", {"n": n})

    assert len(await store.claim("worker-1", limit=2)) == 2
    assert len(await store.claim("worker-1", limit=10)) == 3
    assert await store.claim("worker-1", limit=10) == []


async def test_a_claim_takes_only_jobs_for_the_handlers_it_names(store: Store) -> None:
    await register(store, MIXED)
    await start(store, "mixed")

    assert await store.claim("worker-1", limit=10, handlers=[]) == []
    slow = await store.claim("worker-1", limit=10, handlers=["slow", "unknown"])
    rest = await store.claim("worker-1", limit=10, handlers=None)

    assert [job.step_id for job in slow] == ["heavy"]
    assert [job.step_id for job in rest] == ["quick"]


async def test_a_retry_is_not_claimable_before_its_backoff_is_over(store: Store) -> None:
    await register(store, FLAKY)
    run = await start(store, "flaky", {"n": 1})
    (first,) = await store.claim("worker-1", limit=10)

    assert await complete(store, first, boom("http_503", retryable=True))
    assert await store.claim("worker-1", limit=10) == []
    (second,) = await claim_when_due(store)

    assert (second.run_id, second.step_id, second.attempt) == (run.id, "call", 2)
    assert second.input == {"n": 1}


async def test_concurrent_claims_never_lease_a_job_twice(store: Store) -> None:
    await register(store, ONE_STEP)
    runs = [await start(store, "one", {"n": n}) for n in range(20)]

    batches = await asyncio.gather(*(store.claim(f"worker-{i}", limit=5) for i in range(10)))

    claimed = [job.id for batch in batches for job in batch]
    assert len(claimed) == len(set(claimed)) == 20
    assert {job.run_id for batch in batches for job in batch} == {run.id for run in runs}
    for run in runs:
        assert (await event_types(store, run.id)).count("StepStarted") == 1


async def test_a_worker_waiting_for_jobs_is_woken_by_a_new_run(store: Store) -> None:
    await register(store, ONE_STEP)
    waiting = asyncio.create_task(store.wait_for_jobs(timeout=30))
    await asyncio.sleep(0.05)  # let it start waiting

    await start(store, "one", {"n": 1})

    await asyncio.wait_for(waiting, timeout=5)  # long before its own 30 s timeout
    assert len(await store.claim("worker-1", limit=10)) == 1


async def test_queue_depth_counts_queued_jobs_due_or_not(store: Store) -> None:
    await register(store, ONE_STEP)
    await register(store, FLAKY)
    assert await store.queue_depth() == 0

    for n in range(3):
        await start(store, "one", {"n": n})
    assert await store.queue_depth() == 3
    await store.claim("worker-1", limit=1, handlers=["echo"])
    assert await store.queue_depth() == 2

    await start(store, "flaky", {"n": 1})
    (job,) = await store.claim("worker-1", limit=1, handlers=["flaky"])
    assert await store.queue_depth() == 2
    assert await complete(store, job, boom("http_503", retryable=True))
    assert await store.queue_depth() == 3  # the retry, not due before its backoff is over

"""Workers: each reports itself while it runs (the store stamps the time) and when it stops."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from overture.store import Store
from overture.store.records import WorkerRecord

pytestmark = pytest.mark.asyncio

LONG_AGO = datetime(2001, 1, 1, tzinfo=UTC)
"""A ``last_seen`` no store may keep: it stamps ``last_seen`` from its own clock."""


def worker(worker_id: str = "worker-1") -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        host="host-a",
        pid=4242,
        concurrency=8,
        handlers=("echo", "http"),
        started_at=datetime.now(UTC) - timedelta(minutes=5),
        last_seen=LONG_AGO,
    )


async def the_worker(store: Store, worker_id: str = "worker-1") -> WorkerRecord:
    (found,) = [w for w in await store.list_workers() if w.id == worker_id]
    return found


async def test_a_worker_seen_for_the_first_time_is_listed_as_running(store: Store) -> None:
    reported = worker()

    await store.worker_seen(reported)

    listed = await the_worker(store)
    assert (listed.host, listed.pid, listed.concurrency, listed.handlers) == (
        "host-a",
        4242,
        8,
        ("echo", "http"),
    )
    assert abs(listed.started_at - reported.started_at) < timedelta(milliseconds=1)
    assert listed.last_seen > reported.started_at
    assert listed.running
    assert listed.stopped_at is None


async def test_a_worker_seen_again_is_refreshed_not_duplicated(store: Store) -> None:
    await store.worker_seen(worker())
    first = await the_worker(store)
    await asyncio.sleep(0.01)

    await store.worker_seen(worker())

    assert [w.id for w in await store.list_workers()] == ["worker-1"]
    assert (await the_worker(store)).last_seen > first.last_seen


async def test_a_stopped_worker_is_listed_with_when_it_stopped(store: Store) -> None:
    await store.worker_seen(worker("worker-1"))
    await store.worker_seen(worker("worker-2"))

    await store.worker_stopped("worker-1")

    stopped = await the_worker(store, "worker-1")
    assert not stopped.running
    assert stopped.stopped_at is not None
    assert stopped.stopped_at > stopped.started_at
    assert (await the_worker(store, "worker-2")).running

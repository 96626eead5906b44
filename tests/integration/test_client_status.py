"""``Client.status()`` on both stores: one tenant's queues and runs, and when it needs attention
(work ready and no live worker), until an in-process worker has run the work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from overture.client import Client
from overture.core.document import Document
from overture.core.loader import from_document
from overture.handlers.basic import basic_registry
from overture.runtime.worker import Worker

pytestmark = pytest.mark.asyncio

HELLO = from_document(
    Document(
        data={"name": "hello", "steps": [{"id": "say", "uses": "echo", "with": {"text": "hi"}}]},
        positions={},
        source=None,
    )
)


@pytest_asyncio.fixture
async def client(database_url: str) -> AsyncIterator[Client]:
    async with Client(database_url, tenant="mine") as opened:
        yield opened


async def test_ready_work_without_a_live_worker_needs_attention(client: Client) -> None:
    other = Client(store=client.store, tenant="other")
    await other.start_run(HELLO)  # another tenant's queue is not ours to see
    run = await client.start_run(HELLO)

    status = await client.status()
    assert status.tenant == "mine"
    assert [(q.queue, q.tenant, q.ready) for q in status.queues] == [("echo", "mine", 1)]
    assert [(r.workflow, r.status, r.count) for r in status.runs] == [("hello", "queued", 1)]
    assert (status.live_workers, status.workers) == (0, ())
    assert status.attention == ("1 ready attempt(s) and no live worker to run them",)
    assert not status.healthy

    worker = Worker(client.store, basic_registry(), poll=0.05)
    task = asyncio.create_task(worker.run())
    try:
        await client.wait(run.id, timeout=20)
        status = await client.status()
        assert status.healthy and status.queues == () and status.runs == ()
        assert status.live_workers == 1
        assert status.workers is not None
        assert [w.id for w in status.workers] == [worker.id]
    finally:
        worker.stop(grace=0)
        await task
    assert (await client.status()).live_workers == 0  # a stopped worker is not live

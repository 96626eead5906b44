"""``overture.Client.attempts`` and ``logs`` on both stores, with an in-process worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from overture.client import Client
from overture.core.attempts import lines_by_attempt
from overture.handlers.basic import basic_registry
from overture.runtime.context import StepContext
from overture.runtime.worker import Worker

pytestmark = pytest.mark.asyncio

FLOW: dict[str, Any] = {
    "name": "talk_then_fail",
    "steps": [
        {"id": "talk", "uses": "talk", "with": {"lines": 2}},
        {
            "id": "boom",
            "uses": "fail",
            "depends_on": ["talk"],
            "retry": {"max_attempts": 2, "initial": 0.01, "jitter": 0},
            "with": {"code": "again", "retryable": True},
        },
    ],
}


@pytest_asyncio.fixture
async def client(database_url: str) -> AsyncIterator[Client]:
    async with Client(database_url) as opened:
        yield opened


async def test_attempts_and_logs_of_a_run_a_worker_ran(client: Client) -> None:
    registry = basic_registry()

    async def talk(ctx: StepContext, *, lines: int) -> dict[str, int]:
        for n in range(1, lines + 1):
            ctx.log(f"line {n}", n=n)
        return {"lines": lines}

    registry.register("talk", talk)
    worker = Worker(client.store, registry, poll=0.05)
    task = asyncio.create_task(worker.run())
    try:
        await client.register_workflow(FLOW)
        run = await client.start_run("talk_then_fail")
        assert (await client.wait(run.id, timeout=20)).status == "failed"
    finally:
        worker.stop(grace=0)
        await task

    found = await client.attempts(run.id)
    assert [(a.step_id, a.attempt, a.status, a.queued_after) for a in found] == [
        ("talk", 1, "succeeded", None),
        ("boom", 1, "failed", None),
        ("boom", 2, "failed", "error"),
    ]
    assert all(a.worker_id == worker.id for a in found)
    logs = await client.logs(run.id)
    assert [line.message for line in logs] == ["line 1", "line 2"]
    assert [len(mine) for mine in lines_by_attempt(found, logs)] == [2, 0, 0]
    assert await client.logs(run.id, after=logs[0].id) == logs[1:]

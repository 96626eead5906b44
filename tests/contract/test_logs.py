"""Step logs: what handlers log is stored with their attempt's completion (or not at all), read
back per run in order, tailed with ``after``, and never holds a secret's value."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from overture.core.state import TERMINAL_RUN
from overture.errors import NotFound
from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import StepContext
from overture.runtime.worker import Worker
from overture.store import Store
from overture.store.records import ClaimedJob, Completion, LogEntry

from .conftest import CHAIN, FAN_IN, ONE_STEP, boom, complete, register, start

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def line(second: int, message: str, level: str = "info", **fields: object) -> LogEntry:
    """A line logged ``second`` seconds after T0."""
    at = T0 + timedelta(seconds=second)
    return LogEntry(at=at, level=level, message=message, fields=fields)  # type: ignore[arg-type]


def finished(job: ClaimedJob, *logs: LogEntry, output: object = None) -> Completion:
    return Completion(job_id=job.id, token=job.token, output=output, logs=logs)


async def test_the_lines_of_a_completion_are_read_back_in_order(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=1)
    logged = [
        line(0, "starting", n=1),
        line(1, "halfway", level="debug", nested={"ok": [1, "two", None]}),
        line(2, "done", level="warning"),
    ]

    assert await store.complete([finished(job, *logged)]) == [True]

    stored = await store.logs(run.id)
    assert [(s.message, s.level, s.at, s.fields) for s in stored] == [
        (e.message, e.level, e.at, e.fields) for e in logged
    ]
    assert {(s.run_id, s.step_id, s.attempt, s.compensation) for s in stored} == {
        (run.id, "only", 1, False)
    }
    assert [s.id for s in stored] == sorted({s.id for s in stored})


async def test_a_run_whose_handlers_logged_nothing_has_no_lines(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=1)
    await complete(store, job, {"n": 1})

    assert await store.logs(run.id) == []


async def test_a_failed_attempt_keeps_its_lines(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=1)

    failed = Completion(job_id=job.id, token=job.token, error=boom(), logs=(line(0, "why"),))
    assert await store.complete([failed]) == [True]

    assert [s.message for s in await store.logs(run.id)] == ["why"]
    assert (await store.get_run(run.id)).status == "failed"


async def test_a_refused_completion_writes_no_lines(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=1)
    stolen = Completion(job_id=job.id, token="not-the-lease", logs=(line(0, "impostor"),))

    assert await store.complete([stolen]) == [False]
    assert await store.complete([finished(job, line(1, "holder"))]) == [True]
    assert await store.complete([finished(job, line(2, "again"))]) == [False]

    assert [s.message for s in await store.logs(run.id)] == ["holder"]


async def test_lines_are_tailed_with_after_and_limit(store: Store) -> None:
    await register(store, CHAIN)
    run = await start(store, "chain", {"x": 1})
    (a,) = await store.claim("worker-1", limit=1)
    await store.complete([finished(a, line(0, "a1"), line(1, "a2"), output={"x": 1})])

    first = await store.logs(run.id, limit=1)
    rest = await store.logs(run.id, after=first[-1].id)
    (b,) = await store.claim("worker-1", limit=1)
    await store.complete([finished(b, line(2, "b1"), output={"x": 2})])
    new = await store.logs(run.id, after=rest[-1].id)

    assert [s.message for s in first] == ["a1"]
    assert [s.message for s in rest] == ["a2"]
    assert [(s.message, s.step_id) for s in new] == [("b1", "b")]
    assert await store.logs(run.id, after=new[-1].id) == []


async def test_lines_of_completions_written_together_all_count_in_order(store: Store) -> None:
    await register(store, FAN_IN)
    run = await start(store, "fan_in")
    jobs = await store.claim("worker-1", limit=10)
    assert [j.step_id for j in jobs] == ["left", "right"]

    recorded = await store.complete(
        [finished(job, line(i, f"{job.step_id} {i}")) for i, job in enumerate(jobs)]
    )

    assert recorded == [True, True]
    assert [s.message for s in await store.logs(run.id)] == ["left 0", "right 1"]


async def test_each_run_has_its_own_lines_and_tenant(store: Store) -> None:
    await register(store, ONE_STEP)
    await register(store, ONE_STEP, tenant="acme")
    ours = await start(store, "one", {"n": 1})
    theirs = await start(store, "one", {"n": 2}, tenant="acme")
    jobs = {job.run_id: job for job in await store.claim("worker-1", limit=10)}
    await store.complete(
        [finished(jobs[ours.id], line(0, "ours")), finished(jobs[theirs.id], line(1, "theirs"))]
    )

    assert [s.message for s in await store.logs(ours.id)] == ["ours"]
    assert [s.message for s in await store.logs(theirs.id, tenant="acme")] == ["theirs"]
    assert [s.message for s in await store.logs(theirs.id, tenant=None)] == ["theirs"]
    with pytest.raises(NotFound):
        await store.logs(theirs.id)
    with pytest.raises(NotFound):
        await store.logs(ours.id, tenant="acme")
    with pytest.raises(NotFound):
        await store.logs("no-such-run")


# --- through a worker --------------------------------------------------------------------------

TALKY = """
name: talky
steps:
  - id: talk
    uses: talk
"""
SECRET = "hunter2-s3cr3t"


async def finishes(store: Store, run_id: str, within: float = 20.0) -> str:
    """The run's status once it has finished (polling)."""
    for _ in range(int(within / 0.02)):
        status = (await store.get_run(run_id)).status
        if status in TERMINAL_RUN:
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} did not finish within {within}s")


async def test_a_worker_stores_what_handlers_log_with_secret_values_masked(store: Store) -> None:
    registry = HandlerRegistry()

    @registry.handler()
    async def talk(ctx: StepContext) -> dict[str, str]:
        ctx.log(f"calling with {SECRET}", token=SECRET, nested={"args": [f"-p{SECRET}", 3]})
        ctx.log("odd field", level="debug", when=T0)  # type: ignore[arg-type]
        return {"ok": "yes"}

    await register(store, TALKY)
    run = await start(store, "talky")
    worker = Worker(store, registry, poll=0.05, secrets={"PASSWORD": SECRET})
    working = asyncio.create_task(worker.run())
    try:
        assert await finishes(store, run.id) == "succeeded"
    finally:
        worker.stop(grace=0)
        await working

    first, second = await store.logs(run.id)
    assert first.message == "calling with ***"
    assert first.fields == {"token": "***", "nested": {"args": ["-p***", 3]}}
    assert (first.step_id, first.attempt, first.level) == ("talk", 1, "info")
    assert (second.message, second.level, second.fields) == (
        "odd field",
        "debug",
        {"when": str(T0)},
    )
    assert SECRET not in repr(await store.logs(run.id))

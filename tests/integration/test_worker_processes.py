"""Workers as real processes that get killed, frozen and stopped, on both stores.

Each test starts ``python -m overture worker`` subprocesses with a short lease, drives runs
through them with ``overture.Client``, and checks what a user would check afterwards: every run
finished, each step recorded exactly once, nothing left leased, nothing lost.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.support.workers import LEASE, WorkerProcess, start_worker

from overture.cli.runs import replay_mismatches
from overture.client import Client
from overture.core import events as ev
from overture.core.loader import parse_workflow

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]

THREE_STEPS = parse_workflow(
    """
name: three
steps:
  - id: first
    uses: echo
    with: {n: "${input.n}"}
  - id: middle
    uses: slow
    depends_on: [first]
    with: {seconds: "${input.seconds}", marker: "${input.marker}"}
  - id: last
    uses: echo
    depends_on: [middle]
    with: {pid: "${steps.middle.output.pid}"}
"""
)


async def until(condition: object, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition() if callable(condition) else condition
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def marks(marker: Path, what: str) -> list[Path]:
    return sorted(marker.glob(f"*.{what}")) if marker.exists() else []


def succeeded_per_step(history: list[ev.Event]) -> Counter[str]:
    return Counter(e.step_id for e in history if isinstance(e, ev.StepSucceeded))


async def test_kill_9_mid_step_is_rerun_after_the_lease(
    database_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    marker = tmp_path / "marks"
    async with Client(database_url) as client:
        await client.register_workflow(THREE_STEPS)
        run = await client.start_run("three", {"n": 1, "seconds": 1.5, "marker": str(marker)})
        doomed = start_worker(spawn, database_url, tmp_path)
        await until(lambda: marks(marker, "started"), what="the slow step to start")
        doomed.signal(signal.SIGKILL)
        doomed.wait()
        survivor = start_worker(spawn, database_url, tmp_path)
        done = await client.wait(run.id, timeout=30)
        history = [s.event for s in await client.events(run.id)]

    assert done.status == "succeeded", survivor.output()
    assert succeeded_per_step(history) == {"first": 1, "middle": 1, "last": 1}
    expired = [e for e in history if isinstance(e, ev.StepLeaseExpired)]
    assert [(e.step_id, e.attempt) for e in expired] == [("middle", 1)]
    assert done.output == {"last": {"pid": survivor.pid}}


async def test_a_frozen_worker_cannot_commit_after_its_lease(
    database_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    marker = tmp_path / "marks"
    async with Client(database_url) as client:
        await client.register_workflow(THREE_STEPS)
        run = await client.start_run("three", {"n": 1, "seconds": 2.0, "marker": str(marker)})
        frozen = start_worker(spawn, database_url, tmp_path)
        await until(lambda: marks(marker, "started"), what="the slow step to start")
        frozen.signal(signal.SIGSTOP)
        other = start_worker(spawn, database_url, tmp_path)
        await until(
            lambda: [p for p in marks(marker, "started") if f".{other.pid}." in p.name],
            what="the second worker to take the step over",
        )
        frozen.signal(signal.SIGCONT)  # wakes up with a result it may no longer record
        done = await client.wait(run.id, timeout=30)
        await asyncio.sleep(LEASE)  # room for the late worker to try its commit
        history = [s.event for s in await client.events(run.id)]

    assert done.status == "succeeded", other.output() + frozen.output()
    assert succeeded_per_step(history) == {"first": 1, "middle": 1, "last": 1}
    middle = next(e for e in history if isinstance(e, ev.StepSucceeded) and e.step_id == "middle")
    assert middle.output == {"pid": other.pid}
    # The late worker noticed: its heartbeat found the lease gone, or its commit was refused.
    assert "lease is gone" in frozen.output() or "lease was lost" in frozen.output()
    assert done.output == {"last": {"pid": other.pid}}


async def test_sigterm_lets_the_running_step_finish_and_exits_0(
    database_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    marker = tmp_path / "marks"
    async with Client(database_url) as client:
        await client.register_workflow(THREE_STEPS)
        run = await client.start_run("three", {"n": 1, "seconds": 2.0, "marker": str(marker)})
        worker = start_worker(spawn, database_url, tmp_path, "--grace", "10")
        await until(lambda: marks(marker, "started"), what="the slow step to start")
        worker.signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 20)
        state = await client.run_state(run.id)
        assert code == 0, worker.output()
        assert marks(marker, "finished") and not marks(marker, "cancelled")
        assert state.step("middle").status == "succeeded"
        assert state.step("last").status == "scheduled"  # queued, not lost: the next worker runs it
        start_worker(spawn, database_url, tmp_path)
        done = await client.wait(run.id, timeout=30)
    assert done.status == "succeeded"


async def test_cancelling_a_run_stops_its_running_handler_within_a_heartbeat(
    database_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    marker = tmp_path / "marks"
    async with Client(database_url) as client:
        await client.register_workflow(THREE_STEPS)
        run = await client.start_run("three", {"n": 1, "seconds": 30, "marker": str(marker)})
        start_worker(spawn, database_url, tmp_path)
        await until(lambda: marks(marker, "started"), what="the slow step to start")
        cancelled = await client.cancel(run.id, reason="changed my mind")
        # A heartbeat every lease/3: the handler hears of it well within one lease.
        await until(
            lambda: marks(marker, "cancelled"), timeout=LEASE * 2, what="the handler to stop"
        )
        state = await client.run_state(run.id)
    assert cancelled.status == "cancelled"
    assert state.step("middle").status == "cancelled"
    assert state.step("last").status == "pending"


@pytest.mark.slow
async def test_two_workers_finish_a_thousand_runs_exactly_once(
    database_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    chain = parse_workflow(
        """
name: chain3
steps:
  - {id: a, uses: noop}
  - {id: b, uses: echo, depends_on: [a], with: {n: "${input.n}"}}
  - {id: c, uses: noop, depends_on: [b]}
"""
    )
    async with Client(database_url) as client:
        await client.register_workflow(chain)
        runs = [await client.start_run("chain3", {"n": n}) for n in range(1000)]
        for _ in range(2):
            start_worker(spawn, database_url, tmp_path, "--concurrency", "20")
        for run in runs:
            done = await client.wait(run.id, timeout=120)
            assert done.status == "succeeded", done
        for run in runs:
            stored = await client.events(run.id)
            history = [s.event for s in stored]
            assert succeeded_per_step(history) == {"a": 1, "b": 1, "c": 1}, run.id
            # Folding the stored history reproduces the stored run (overture runs replay-check).
            assert replay_mismatches(await client.get_run(run.id), stored) == [], run.id
        left = await client.list_runs(status="running", limit=10)
        queued = await client.store.queue_depth()
        workers = await client.store.list_workers()
    assert left.items == [] and queued == 0
    assert len({w.id for w in workers}) == 2

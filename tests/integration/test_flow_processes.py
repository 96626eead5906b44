"""Flow control across real worker processes, counted from outside by an HTTP service.

Every step here is an ``http`` call to ``tests.support.counter``, which sees what no single
worker can: how many calls were in flight at once, when each arrived, which it failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.counter import Counter, counting
from tests.support.workers import WorkerProcess, start_worker

from overture.core.loader import parse_workflow
from overture.store import create_store
from overture.store.base import Store
from overture.store.records import StartRun

pytestmark = pytest.mark.asyncio

ALLOW = ("--http-allowed-networks", "127.0.0.1")


def _workflow(counter: Counter, name: str, controls: str, key: str, hold: float = 0.0) -> str:
    return f"""
name: {name}
steps:
  - id: call
    uses: http
    with:
      method: POST
      url: "{counter.url}/call?key={key}&hold={hold}"
{controls}
"""


async def _start(store: Store, workflow: str, inputs: list[dict[str, object]]) -> list[str]:
    runs = []
    for data in inputs:
        record, _ = await store.start_run(StartRun(workflow=workflow, input=data))
        runs.append(record.id)
    return runs


async def _until(
    check: Callable[[], bool], what: str | Callable[[], str], timeout: float = 50.0
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what() if callable(what) else what
        await asyncio.sleep(0.05)


async def _statuses(store: Store, runs: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for run_id in runs:
        status = (await store.get_run(run_id)).status
        found[status] = found.get(status, 0) + 1
    return found


async def test_a_concurrency_key_of_one_is_never_exceeded_by_500_contending_steps(
    database_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    with counting() as counter:
        controls = '    concurrency: {key: "flight-${input.flight}", limit: 1}'
        definition = _workflow(counter, "book", controls, "flight-42", hold=0.002)
        store = create_store(database_url)
        await store.open()
        try:
            await store.register_workflow(parse_workflow(definition))
            runs = await _start(store, "book", [{"flight": 42}] * 500)
            for _ in range(2):
                start_worker(spawn, database_url, tmp_path, "--concurrency", "8", *ALLOW)
            await _until(
                lambda: len(counter.calls) >= 500, lambda: f"{len(counter.calls)} of 500 called"
            )
            await asyncio.sleep(0.3)  # the last completions commit
            assert counter.most["flight-42"] == 1, "two bookings of one flight overlapped"
            assert len(counter.calls) == 500, "a step was called twice"
            assert await _statuses(store, runs) == {"succeeded": 500}
        finally:
            await store.close()


async def test_a_rate_limit_of_20_per_second_holds_across_three_workers(
    database_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    with counting() as counter:
        controls = '    rate_limit: {key: "agent:clo", rate: "20/s", burst: 5}'
        store = create_store(database_url)
        await store.open()
        try:
            await store.register_workflow(parse_workflow(_workflow(counter, "ask", controls, "r")))
            await _start(store, "ask", [{"n": n} for n in range(260)])
            for _ in range(3):
                start_worker(spawn, database_url, tmp_path, "--concurrency", "10", *ALLOW)
            await _until(lambda: len(counter.calls) >= 230, "the calls stopped coming")
            times = [at for at, _, _ in counter.calls]
            # After the burst of 5, a 10 s window holds 200 calls at 20/s: within 10%.
            first = times[5]
            in_window = sum(1 for at in times if first <= at < first + 10.0)
            assert 180 <= in_window <= 220, f"{in_window} calls in 10 s at 20/s"
        finally:
            await store.close()


async def test_a_circuit_opens_parks_half_opens_and_closes_against_a_failing_server(
    database_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    with counting() as counter:
        counter.failing = True
        counter.healthy_hold = 0.5  # the probe takes a while: the half-open state is visible
        controls = (
            "    circuit: {key: agent, failure_threshold: 5, window: 30s, cooldown: 2s}\n"
            # Every first attempt fails before any retry is due: exactly 5 failures open it.
            "    retry: {max_attempts: 3, initial: 1s, max: 1s, jitter: false}"
        )
        store = create_store(database_url)
        await store.open()
        try:
            await store.register_workflow(
                parse_workflow(_workflow(counter, "flaky", controls, "f"))
            )
            runs = await _start(store, "flaky", [{"n": n} for n in range(5)])
            start_worker(spawn, database_url, tmp_path, "--concurrency", "5", *ALLOW)
            start_worker(spawn, database_url, tmp_path, "--concurrency", "5", *ALLOW)

            seen: list[str] = []

            async def status() -> str:
                found = {c.key: c for c in await store.list_circuits(tenant="default")}
                return found["agent"].status if "agent" in found else "none"

            deadline = time.monotonic() + 30
            while (now := await status()) != "open":
                assert time.monotonic() < deadline, f"the circuit never opened: {now}"
                await asyncio.sleep(0.02)
            opened_at = time.monotonic()
            counter.failing = False  # the server recovers; the circuit does not know yet
            failures = len(counter.calls)
            assert failures == 5, f"{failures} calls before the circuit opened, not 5"

            while (now := await status()) != "closed":
                if not seen or seen[-1] != now:
                    seen.append(now)
                assert time.monotonic() < deadline, f"the circuit never closed: {seen}"
                await asyncio.sleep(0.02)
            await _until(lambda: len(counter.calls) >= 10, "the parked jobs never ran")
            await _until_succeeded(store, runs)

            probe_at = counter.calls[5][0]
            assert probe_at - opened_at >= 1.5, "a call went through the open circuit"
            assert "half_open" in seen, f"no half-open probe was seen: {seen}"
            assert all(s == 200 for _, _, s in counter.calls[5:]), "a failing call after recovery"
            for run_id in runs:
                step = (await store.run_state(run_id)).steps["call"]
                assert step.attempt == 2, "parking spent an attempt"
        finally:
            await store.close()


async def _until_succeeded(store: Store, runs: list[str]) -> None:
    deadline = time.monotonic() + 30
    while (found := await _statuses(store, runs)) != {"succeeded": len(runs)}:
        assert time.monotonic() < deadline, f"runs did not all succeed: {found}"
        await asyncio.sleep(0.1)

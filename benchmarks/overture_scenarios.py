"""Overture's scenarios, on SQLite or PostgreSQL: every sample gets a fresh, empty database.

Workers run in this process (the RSS scenario's runs in its own, see ``sleep_worker``) with
concurrency 64 and the default 30 s lease. On SQLite the worker shares the client's store, so
the in-process wake-up reaches it; on PostgreSQL it opens its own store, so new jobs reach it
through LISTEN/NOTIFY as they would reach a worker on another machine.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterator,
)
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CHAIN,
    DRAIN,
    FAN_OUT,
    LATENCY,
    RSS,
    Measurement,
    Sizes,
    concurrently,
    measure,
    percentile,
    rss_mb,
    spawn,
    stop,
    temporary_database,
)
from overture.client import Client
from overture.handlers.basic import basic_registry
from overture.runtime.worker import Worker
from overture.store import create_store

SYSTEM = "Overture"
CONCURRENCY = 64
TIMEOUT = 120.0
Sample = Callable[[str, Sizes, Path], Coroutine[Any, Any, dict[str, float]]]


def chain(length: int) -> dict[str, Any]:
    """``length`` noop steps, each depending on the one before."""
    steps: list[dict[str, Any]] = [{"id": "s0", "uses": "noop"}]
    steps += [
        {"id": f"s{i}", "uses": "noop", "depends_on": [f"s{i - 1}"]} for i in range(1, length)
    ]
    return {"name": f"chain{length}", "steps": steps}


def fan_out(width: int) -> dict[str, Any]:
    """A root, ``width`` children depending on it, and a join depending on all of them."""
    children = [f"c{i}" for i in range(width)]
    return {
        "name": f"fan{width}",
        "steps": [
            {"id": "root", "uses": "noop"},
            *({"id": c, "uses": "noop", "depends_on": ["root"]} for c in children),
            {"id": "join", "uses": "noop", "depends_on": children},
        ],
    }


NAP = {"name": "nap", "steps": [{"id": "nap", "uses": "nap", "with": {"seconds": 600}}]}


# --- helpers -------------------------------------------------------------------------------
@contextmanager
def fresh_database(store: str, postgres: str, scratch: Path) -> Iterator[str]:
    if store == "PostgreSQL":
        with temporary_database(postgres, "overture") as url:
            yield url
    else:
        yield f"sqlite:///{tempfile.mkdtemp(dir=scratch)}/bench.db"


@asynccontextmanager
async def running_worker(client: Client, url: str) -> AsyncIterator[Worker]:
    own = None if url.startswith("sqlite") else create_store(url)
    if own is not None:
        await own.open()
    worker = Worker(
        client.store if own is None else own, basic_registry(), concurrency=CONCURRENCY, poll=0.05
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop(grace=5)
        await task
        if own is not None:
            await own.close()


async def completed(worker: Worker, attempts: int, what: str) -> None:
    """Return once ``worker`` has completed ``attempts`` attempts in all."""
    deadline = time.monotonic() + TIMEOUT
    while worker.completed < attempts:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {TIMEOUT:g}s")
        await asyncio.sleep(0.002)


# --- scenarios -----------------------------------------------------------------------------
async def drain(url: str, sizes: Sizes, logs: Path) -> dict[str, float]:
    n = sizes.drain_runs
    async with Client(url) as client:
        await client.register_workflow(chain(1))
        started = time.perf_counter()
        await concurrently(n, lambda: client.start_run("chain1"))
        enqueue = n / (time.perf_counter() - started)
        started = time.perf_counter()
        async with running_worker(client, url) as worker:
            await completed(worker, n, "drain")
            rate = n / (time.perf_counter() - started)
    return {"enqueue rate": enqueue, "drain rate": rate}


async def latency(url: str, sizes: Sizes, logs: Path) -> dict[str, float]:
    """Runs started at a steady rate; StepStarted minus RunStarted, both stamped by the store."""
    n, warm_up = int(sizes.latency_rate * sizes.latency_seconds), 10
    loop = asyncio.get_running_loop()
    async with Client(url) as client, running_worker(client, url) as worker:
        await client.register_workflow(chain(1))
        for _ in range(warm_up):
            await client.wait((await client.start_run("chain1")).id, timeout=TIMEOUT)
        began, starts = loop.time(), []
        for i in range(n):
            await asyncio.sleep(max(0.0, began + i / sizes.latency_rate - loop.time()))
            starts.append(asyncio.create_task(client.start_run("chain1")))
        runs = await asyncio.gather(*starts)
        await completed(worker, n + warm_up, "latency runs")
        gaps = []
        for run in runs:
            at = {e.event.type: e.event.at for e in await client.events(run.id)}
            gaps.append((at["StepStarted"] - at["RunStarted"]).total_seconds() * 1000)
    return {"p50": percentile(gaps, 50), "p99": percentile(gaps, 99)}


async def chains(url: str, sizes: Sizes, logs: Path) -> dict[str, float]:
    workflow, steps = chain(sizes.chain_length), sizes.chain_runs * sizes.chain_length
    async with Client(url) as client, running_worker(client, url) as worker:
        await client.register_workflow(workflow)
        started = time.perf_counter()
        await concurrently(sizes.chain_runs, lambda: client.start_run(workflow["name"]))
        await completed(worker, steps, "chains")
        return {"steps/s": steps / (time.perf_counter() - started)}


async def fan_outs(url: str, sizes: Sizes, logs: Path) -> dict[str, float]:
    """Runs one after the other (after one to warm up): finished_at minus created_at."""
    workflow, walls = fan_out(sizes.fan_width), []
    async with Client(url) as client, running_worker(client, url) as worker:
        await client.register_workflow(workflow)
        for i in range(sizes.fan_runs + 1):
            run = await client.start_run(workflow["name"])
            await completed(worker, (i + 1) * len(workflow["steps"]), "fan-out")
            done = await client.get_run(run.id)
            assert done.finished_at is not None, done
            walls.append((done.finished_at - done.created_at).total_seconds() * 1000)
    return {"wall time": statistics.median(walls[1:])}


async def worker_rss(url: str, sizes: Sizes, logs: Path) -> dict[str, float]:
    """A worker process running ``in_flight`` sleeping steps at once: its VmRSS, idle and busy."""
    n = sizes.in_flight
    async with Client(url) as client:
        await client.register_workflow(NAP)
        process = spawn(
            [sys.executable, "-m", "benchmarks.sleep_worker", url, str(n)],
            logs / "overture-rss-worker.log",
        )
        try:

            async def wait_for(what: str, done: Callable[[], Awaitable[bool]]) -> None:
                deadline = time.monotonic() + TIMEOUT
                while not await done():
                    if process.poll() is not None:
                        raise RuntimeError(f"the worker exited ({process.returncode}); see logs")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{what}: not done after {TIMEOUT:g}s")
                    await asyncio.sleep(0.05)

            async def registered() -> bool:
                return bool(await client.store.list_workers())

            async def all_claimed() -> bool:
                return await client.store.queue_depth() == 0

            await wait_for("worker start", registered)
            await asyncio.sleep(0.5)
            idle = rss_mb(process.pid)
            await concurrently(n, lambda: client.start_run("nap"))
            await wait_for("claiming every step", all_claimed)
            busy = 0.0
            for _ in range(10):  # the handlers start right after their claim: take the peak
                await asyncio.sleep(0.1)
                busy = max(busy, rss_mb(process.pid))
        finally:
            stop(process)
    return {"RSS, idle": idle, "RSS, all in flight": busy}


SCENARIOS: dict[str, Sample] = {
    DRAIN: drain,
    LATENCY: latency,
    CHAIN: chains,
    FAN_OUT: fan_outs,
    RSS: worker_rss,
}


def run(
    store: str, sizes: Sizes, repeat: int, postgres: str, logs: Path, only: Collection[str]
) -> list[Measurement]:
    """The scenarios in ``only`` on ``store`` ("SQLite" or "PostgreSQL")."""
    with tempfile.TemporaryDirectory(prefix="overture-bench-") as scratch:

        def sample(scenario: Sample) -> dict[str, float]:
            with fresh_database(store, postgres, Path(scratch)) as url:
                return asyncio.run(scenario(url, sizes, logs))

        samples = {name: partial(sample, scenario) for name, scenario in SCENARIOS.items()}
        return measure(SYSTEM, store, samples, repeat, only)

"""Procrastinate 3 on PostgreSQL: the app its worker loads, and the driver.

    python -m benchmarks.peers.procrastinate_app --out FILE --logs DIR [--quick] [--repeat 3]

Every sample gets a fresh database and worker. The app connects with libpq's environment
(``PGHOST``, ``PGDATABASE``...), which the driver sets and the worker inherits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import urlsplit

import procrastinate
from procrastinate import App, PsycopgConnector

from benchmarks.common import (
    CHAIN,
    DRAIN,
    FAN_OUT,
    LATENCY,
    Measurement,
    Sizes,
    concurrently,
    measure,
    peer_main,
    percentile,
    spawn,
    stop,
    temporary_database,
)

APP = "benchmarks.peers.procrastinate_app"
CONCURRENCY = 64
TIMEOUT = 300.0

app = App(connector=PsycopgConnector())


@app.task(name="noop")
async def noop() -> None:
    """Do nothing."""


@app.task(name="step")
async def step(*, left: int) -> None:
    """One link of a chain: defer the next while there are links left."""
    if left > 1:
        await step.defer_async(left=left - 1)


@app.task(name="root")
async def root(*, run: str, width: int) -> None:
    children: list[dict[str, Any]] = [{"run": run}] * width
    await child.batch_defer_async(*children)


@app.task(name="child")
async def child(*, run: str) -> None:
    """The last child to finish (the counter reaching 0) defers the join."""
    left = await app.connector.execute_query_one_async(
        "UPDATE bench_fan SET remaining = remaining - 1 WHERE run = %(run)s RETURNING remaining",
        run=run,
    )
    if left["remaining"] == 0:
        await join.defer_async(run=run)


@app.task(name="join")
async def join(*, run: str) -> None:
    """Do nothing: its ``succeeded`` event ends the fan-out."""


# --- scenarios (in the driver) ---------------------------------------------------------------
async def query(sql: LiteralString, **params: Any) -> Any:
    return await app.connector.execute_query_one_async(sql, **params)


async def until(sql: LiteralString, at_least: int, what: str, **params: Any) -> None:
    """Poll ``sql`` (one row, column ``n``) until it reaches ``at_least``."""
    deadline = time.monotonic() + TIMEOUT
    while (await query(sql, **params))["n"] < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {TIMEOUT:g}s")
        await asyncio.sleep(0.005)


async def succeeded(n: int, what: str, task: str = "%") -> None:
    sql: LiteralString = (
        "SELECT count(*) AS n FROM procrastinate_jobs"
        " WHERE status = 'succeeded' AND task_name LIKE %(task)s"
    )
    await until(sql, n, what, task=task)


async def span(first: str, last: str) -> float:
    """Seconds from the first event of type ``first`` to the last of type ``last``."""
    row = await query(
        "SELECT EXTRACT(EPOCH FROM max(at) FILTER (WHERE type = %(last)s)"
        " - min(at) FILTER (WHERE type = %(first)s)) AS seconds FROM procrastinate_events",
        first=first,
        last=last,
    )
    return float(row["seconds"])


@asynccontextmanager
async def worker(logs: Path) -> AsyncIterator[None]:
    command = [sys.executable, "-m", "procrastinate", "--app", f"{APP}.app"]
    command += ["--log-level", "warning", "worker", "--concurrency", str(CONCURRENCY)]
    process = spawn(command, logs / "procrastinate-worker.log")
    try:
        await until("SELECT count(*) AS n FROM procrastinate_workers", 1, "worker start")
        yield
    finally:
        stop(process)


async def drain(sizes: Sizes, logs: Path) -> dict[str, float]:
    n = sizes.drain_runs
    started = time.perf_counter()
    await concurrently(n, noop.defer_async)
    enqueue = n / (time.perf_counter() - started)
    async with worker(logs):
        await succeeded(n, "drain")
    return {"enqueue rate": enqueue, "drain rate": n / await span("started", "succeeded")}


async def latency(sizes: Sizes, logs: Path) -> dict[str, float]:
    n, warm_up = int(sizes.latency_rate * sizes.latency_seconds), 10
    loop = asyncio.get_running_loop()
    async with worker(logs):
        for i in range(warm_up):
            await noop.defer_async()
            await succeeded(i + 1, "warm-up")
        began, defers = loop.time(), []
        for i in range(n):
            await asyncio.sleep(max(0.0, began + i / sizes.latency_rate - loop.time()))
            defers.append(asyncio.create_task(noop.defer_async()))
        ids = await asyncio.gather(*defers)
        await succeeded(n + warm_up, "latency jobs")
    rows = await app.connector.execute_query_all_async(
        "SELECT EXTRACT(EPOCH FROM s.at - d.at) * 1000 AS ms"
        " FROM procrastinate_events d JOIN procrastinate_events s USING (job_id)"
        " WHERE d.type = 'deferred' AND s.type = 'started' AND job_id = ANY(%(ids)s)",
        ids=ids,
    )
    gaps = [float(row["ms"]) for row in rows]
    return {"p50": percentile(gaps, 50), "p99": percentile(gaps, 99)}


async def chains(sizes: Sizes, logs: Path) -> dict[str, float]:
    steps = sizes.chain_runs * sizes.chain_length
    async with worker(logs):
        started = time.perf_counter()
        await concurrently(sizes.chain_runs, lambda: step.defer_async(left=sizes.chain_length))
        await succeeded(steps, "chains")
        return {"steps/s": steps / (time.perf_counter() - started)}


async def fan_outs(sizes: Sizes, logs: Path) -> dict[str, float]:
    walls = []
    async with worker(logs):
        for i in range(sizes.fan_runs + 1):  # the first warms up
            run = f"run{i}"
            await app.connector.execute_query_async(
                "INSERT INTO bench_fan VALUES (%(run)s, %(width)s)", run=run, width=sizes.fan_width
            )
            await app.connector.execute_query_async("TRUNCATE procrastinate_events")
            await root.defer_async(run=run, width=sizes.fan_width)
            await succeeded(i + 1, "fan-out", task="join")
            walls.append(await span("deferred", "succeeded") * 1000)
    return {"wall time": statistics.median(walls[1:])}


SCENARIOS = {DRAIN: drain, LATENCY: latency, CHAIN: chains, FAN_OUT: fan_outs}


def main(args: argparse.Namespace) -> list[Measurement]:
    system = f"Procrastinate {procrastinate.__version__}"

    async def sample(
        scenario: Callable[[Sizes, Path], Awaitable[dict[str, float]]],
    ) -> dict[str, float]:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            await app.connector.execute_query_async(
                "CREATE TABLE bench_fan (run text PRIMARY KEY, remaining integer NOT NULL)"
            )
            return await scenario(args.sizes, args.logs)

    def fresh(scenario: Callable[[Sizes, Path], Awaitable[dict[str, float]]]) -> dict[str, float]:
        with temporary_database(args.postgres, "procrastinate") as url:
            parts = urlsplit(url)
            os.environ.update(
                PGHOST=parts.hostname or "127.0.0.1",
                PGPORT=str(parts.port or 5432),
                PGUSER=parts.username or "postgres",
                PGDATABASE=parts.path.lstrip("/"),
                PGPASSWORD=parts.password or "",
            )
            return asyncio.run(sample(scenario))

    samples = {name: partial(fresh, scenario) for name, scenario in SCENARIOS.items()}
    return measure(system, "PostgreSQL", samples, args.repeat, args.only)


if __name__ == "__main__":
    peer_main(main)

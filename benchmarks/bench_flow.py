"""What flow control costs: draining one-step runs with and without controls, on both stores.

Four workloads of ``noop`` steps, each drained by one in-process worker (concurrency 64), with a
fresh database per sample:

- **none**: no controls (the claim's fast path);
- **gated**: every step names a concurrency key, a rate limit and a circuit that never bind,
  so the claim loads, decides and writes flow state for every job;
- **critical**: every step shares one concurrency key with limit 1 (a critical section): each
  job waits for the one before it, so this measures the hand-off of a slot;
- **rated**: a rate limit of 200/s with a burst of 20 (a tenth of a second), which the drain
  must follow: 400 runs take about 1.9 s.

Medians of 3 samples; writes ``benchmarks/results/flow.md``.

    python -m benchmarks.bench_flow [--runs 2000] [--postgres SERVER_URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import concurrently
from benchmarks.overture_scenarios import completed, fresh_database, running_worker
from overture.client import Client

RESULTS = Path(__file__).resolve().parent / "results" / "flow.md"
REPEAT = 3
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def one_step(name: str, **controls: Any) -> dict[str, Any]:
    return {"name": name, "steps": [{"id": "s", "uses": "noop", **controls}]}


WORKLOADS: dict[str, tuple[dict[str, Any], Callable[[int], int]]] = {
    "none": (one_step("none"), lambda n: n),
    "gated": (
        one_step(
            "gated",
            concurrency={"key": "k-${input.n}", "limit": 1000},
            rate_limit={"key": "r", "rate": "100000/s", "burst": 100000},
            circuit="c",
        ),
        lambda n: n,
    ),
    "critical": (one_step("critical", concurrency={"key": "one", "limit": 1}), lambda n: n // 4),
    "rated": (
        one_step("rated", rate_limit={"key": "r", "rate": "200/s", "burst": 20}),
        lambda n: 400,
    ),
}


async def drain(url: str, workload: str, runs: int) -> float:
    """Steps per second while one worker drains ``runs`` queued runs of ``workload``."""
    definition, size = WORKLOADS[workload]
    n = size(runs)
    async with Client(url) as client:
        await client.register_workflow(definition)
        counter = iter(range(n))
        await concurrently(n, lambda: client.start_run(workload, {"n": next(counter)}))
        started = time.perf_counter()
        async with running_worker(client, url) as worker:
            await completed(worker, n, workload)
            return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_flow")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--only", action="append", choices=list(WORKLOADS), help="repeatable")
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    args = parser.parse_args()
    only = args.only or list(WORKLOADS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="overture-flow-") as scratch:
        for store in ("SQLite", "PostgreSQL"):
            for workload in only:
                samples = []
                for _ in range(REPEAT):
                    with fresh_database(store, args.postgres, Path(scratch)) as url:
                        samples.append(asyncio.run(drain(url, workload, args.runs)))
                rows.append((store, workload, statistics.median(samples), samples))
                print(store, workload, [round(s) for s in samples], flush=True)
    if not args.no_write:
        write(rows, args.runs)


def write(rows: list[tuple[str, str, float, list[float]]], runs: int) -> None:
    baseline = {store: rate for store, workload, rate, _ in rows if workload == "none"}
    lines = [
        "# Flow control: what a claim's controls cost",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} after the run. One in-process worker "
        f"(concurrency 64) drains {runs} queued one-step `noop` runs (critical: {runs // 4}; "
        f"rated: 400); medians of {REPEAT} samples. Produced by `python -m benchmarks.bench_flow`.",
        "",
        "| store | workload | steps/s | vs none | samples |",
        "|---|---|---|---|---|",
    ]
    for store, workload, rate, samples in rows:
        ratio = rate / baseline[store]
        shown = ", ".join(f"{s:,.0f}" for s in samples)
        lines.append(f"| {store} | {workload} | {rate:,.0f} | {ratio:.2f} | {shown} |")
    lines += [
        "",
        "- **none**: no controls; the claim takes its fast path.",
        "- **gated**: a concurrency key, a rate limit and a circuit on every step, none binding:",
        "  the cost of loading, deciding and writing flow state for every job.",
        "- **critical**: one key with limit 1 for every step: jobs run one at a time, each woken",
        "  by the release of the one before (the hand-off rate of a critical section).",
        "- **rated**: a 200/s token bucket with a burst of 20: the drain should follow the rate.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

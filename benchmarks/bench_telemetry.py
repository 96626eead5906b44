"""What observability costs: draining one-step runs with metrics and traces on and off, and how
long ``/metrics`` takes to read the shared gauges from a large database.

Drains: one in-process worker (concurrency 64) drains 2,000 queued one-step ``noop`` runs,
fresh database per sample, in three configurations:

- **off**: no store observers, no worker metrics (what the earlier benchmarks measured);
- **metrics**: the Prometheus ``Metrics`` observing the store and the worker, as ``overture
  serve`` and ``overture worker`` always run;
- **metrics + traces**: also a ``Tracing`` with a batch processor whose exporter drops the
  spans, so the cost is making them, not sending them.

Scrape: ``Store.observe()`` (queues, unfinished runs, dead letters) on a database holding 20,000
runs (half finished, half queued) and their jobs: the work a scrape adds to the database.

Medians of 3 samples (``--repeat``); writes ``benchmarks/results/telemetry.md``.

    python -m benchmarks.bench_telemetry [--runs 2000] [--postgres SERVER_URL] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from benchmarks.common import concurrently
from benchmarks.overture_scenarios import CONCURRENCY, completed, fresh_database
from overture.client import Client
from overture.handlers.basic import basic_registry
from overture.runtime.worker import Worker
from overture.store import Store, create_store
from overture.telemetry.metrics import Metrics
from overture.telemetry.spans import Tracing

RESULTS = Path(__file__).resolve().parent / "results" / "telemetry.md"
REPEAT = 3
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
MODES = ("off", "metrics", "metrics + traces")
SCRAPE_RUNS = 20_000


class Dropped(SpanExporter):
    """Takes every span and sends it nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def one_step(name: str) -> dict[str, object]:
    return {"name": name, "steps": [{"id": "s", "uses": "noop"}]}


@asynccontextmanager
async def worker_store(client: Client, url: str) -> AsyncIterator[Store]:
    """The store the worker uses: the client's on SQLite (one writer), its own on PostgreSQL."""
    if url.startswith("sqlite"):
        yield client.store
        return
    own = create_store(url)
    await own.open()
    try:
        yield own
    finally:
        await own.close()


async def drain(url: str, mode: str, runs: int) -> float:
    """Steps per second while one worker drains ``runs`` queued runs with ``mode`` on."""
    async with Client(url) as client:
        await client.register_workflow(one_step("bench"))
        await concurrently(runs, lambda: client.start_run("bench"))
        async with worker_store(client, url) as store:
            metrics = tracing = None
            if mode != "off":
                metrics = Metrics(worker="bench")
                store.observers.append(metrics)
            if mode == "metrics + traces":
                tracing = Tracing(BatchSpanProcessor(Dropped()))
                store.observers.append(tracing)
            worker = Worker(
                store,
                basic_registry(),
                concurrency=CONCURRENCY,
                poll=0.05,
                metrics=metrics,
                tracing=tracing,
            )
            started = time.perf_counter()
            task = asyncio.create_task(worker.run())
            try:
                await completed(worker, runs, mode)
                rate = runs / (time.perf_counter() - started)
            finally:
                worker.stop(grace=5)
                await task
                if tracing is not None:
                    tracing.shutdown()
            return rate


async def scrape(url: str) -> list[float]:
    """Milliseconds per ``observe()`` over a database of ``SCRAPE_RUNS`` runs."""
    async with Client(url) as client:
        await client.register_workflow(one_step("bench"))
        await concurrently(SCRAPE_RUNS, lambda: client.start_run("bench"))
        half = SCRAPE_RUNS // 2
        async with worker_store(client, url) as store:
            worker = Worker(store, basic_registry(), concurrency=CONCURRENCY, poll=0.05)
            task = asyncio.create_task(worker.run())
            try:
                await completed(worker, half, "fill")
            finally:
                worker.stop(grace=0)
                await task
        await client.store.observe()  # warm the caches once, as a running server has them
        timings = []
        for _ in range(9):
            started = time.perf_counter()
            await client.store.observe()
            timings.append((time.perf_counter() - started) * 1000)
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_telemetry")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--repeat", type=int, default=REPEAT, help="samples per mode")
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    args = parser.parse_args()
    drains: list[tuple[str, str, float, list[float]]] = []
    scrapes: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="overture-telemetry-") as scratch:
        for store in ("SQLite", "PostgreSQL"):
            samples: dict[str, list[float]] = {mode: [] for mode in MODES}
            for _ in range(args.repeat):  # interleaved: drift in the machine hits every mode
                for mode in MODES:
                    with fresh_database(store, args.postgres, Path(scratch)) as url:
                        samples[mode].append(asyncio.run(drain(url, mode, args.runs)))
            for mode in MODES:
                drains.append((store, mode, statistics.median(samples[mode]), samples[mode]))
                print(store, mode, [round(s) for s in samples[mode]], flush=True)
            with fresh_database(store, args.postgres, Path(scratch)) as url:
                timings = asyncio.run(scrape(url))
            scrapes.append((store, statistics.median(timings)))
            print(store, "observe ms", [round(t, 1) for t in timings], flush=True)
    if not args.no_write:
        write(drains, scrapes, args.runs, args.repeat)


def write(
    drains: list[tuple[str, str, float, list[float]]],
    scrapes: list[tuple[str, float]],
    runs: int,
    repeat: int,
) -> None:
    baseline = {store: rate for store, mode, rate, _ in drains if mode == "off"}
    lines = [
        "# Observability: what metrics and traces cost",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} after the run. One in-process worker "
        f"(concurrency {CONCURRENCY}) drains {runs} queued one-step `noop` runs; medians of "
        f"{repeat} samples, the modes interleaved. Produced by "
        "`python -m benchmarks.bench_telemetry`.",
        "",
        "| store | mode | steps/s | vs off | samples |",
        "|---|---|---|---|---|",
    ]
    for store, mode, rate, samples in drains:
        shown = ", ".join(f"{s:,.0f}" for s in samples)
        lines.append(f"| {store} | {mode} | {rate:,.0f} | {rate / baseline[store]:.2f} | {shown} |")
    lines += [
        "",
        "- **off**: no observers and no worker metrics.",
        "- **metrics**: the Prometheus counters and histograms every `serve` and `worker` keeps.",
        "- **metrics + traces**: also a span per attempt and per run, batched to an exporter that",
        "  drops them (the cost of making spans, not of sending them).",
        "",
        f"## Reading the shared gauges (`Store.observe()`, {SCRAPE_RUNS:,} runs, half queued)",
        "",
        "| store | median ms per scrape |",
        "|---|---|",
        *(f"| {store} | {ms:.1f} |" for store, ms in scrapes),
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

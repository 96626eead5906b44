"""Metrics across processes. Two ``overture serve --workers 0`` processes on one PostgreSQL
database report the same shared gauges: queues, unfinished runs and dead letters are read from
the database, not counted by the process that happened to do the work. An ``overture worker``
serves its own counts on its metrics port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.agent import free_port
from tests.support.prometheus import Sample, sample, samples
from tests.support.server import RunningServer, start_server
from tests.support.workers import WorkerProcess, start_worker

from overture.core.events import ErrorInfo
from overture.core.loader import parse_workflow
from overture.store import create_store
from overture.store.records import Completion, StartRun

pytestmark = pytest.mark.asyncio

SHARED = (
    "overture_queue_depth",
    "overture_queue_delayed",
    "overture_queue_running",
    "overture_queue_oldest_age_seconds",
    "overture_dead_letters",
    "overture_active_runs",
    "overture_workers_live",
)
ONE_STEP = """
name: one
steps:
  - {id: only, uses: echo, with: {n: "${input.n}"}}
"""
RUNS = 12
FAILED = 3


@pytest.fixture
def servers(postgres_url: str) -> Iterator[list[RunningServer]]:
    """Two API processes without workers (no key exists: development mode, on loopback)."""
    started: list[RunningServer] = []
    try:
        for _ in range(2):
            started.append(start_server(postgres_url, "--workers", "0", "--no-scheduler"))
        yield started
    finally:
        for server in started:
            assert server.stop() == 0, server.log


def scrape(server: RunningServer) -> dict[Sample, float]:
    response = httpx.get(f"{server.url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    # A process without a worker shows no worker's heartbeats, not a count of zero.
    assert "overture_worker_heartbeats_total{" not in response.text
    return samples(response.text, SHARED)


@pytest.mark.postgres
async def test_two_api_processes_report_the_same_queue_and_dead_letters(
    postgres_url: str, servers: list[RunningServer]
) -> None:
    store = create_store(postgres_url)
    await store.open()
    try:
        await store.register_workflow(parse_workflow(ONE_STEP), tenant="acme")
        for n in range(RUNS):
            await store.start_run(StartRun(workflow="one", input={"n": n}, tenant="acme"))
        # This test plays the worker for a few: their steps fail for good (dead letters).
        jobs = await store.claim("test-worker", limit=FAILED)
        broken = ErrorInfo(code="broke", message="for good", retryable=False)
        await store.complete([Completion(job_id=j.id, token=j.token, error=broken) for j in jobs])
    finally:
        await store.close()

    first, second = (scrape(server) for server in servers)

    queued = sample("overture_queue_depth", queue="echo", tenant="acme")
    assert first[queued] == RUNS - FAILED
    assert first[sample("overture_dead_letters", tenant="acme")] == FAILED
    active = sample("overture_active_runs", workflow="one", tenant="acme", status="queued")
    assert first[active] == RUNS - FAILED
    assert first[sample("overture_workers_live")] == 0
    age = ("overture_queue_oldest_age_seconds", queued[1])
    assert first.pop(age) >= 0 and second.pop(age) >= 0  # the only value that moves with time
    assert first == second


async def test_a_worker_serves_its_own_series_on_its_metrics_port(
    sqlite_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    store = create_store(sqlite_url)
    await store.open()
    try:
        await store.register_workflow(parse_workflow(ONE_STEP))
        run, _ = await store.start_run(StartRun(workflow="one", input={"n": 1}))
        port = free_port()
        start_worker(spawn, sqlite_url, tmp_path, "--metrics-port", str(port), "--worker-id", "w-7")
        deadline = time.monotonic() + 30
        while (await store.get_run(run.id)).status != "succeeded":
            assert time.monotonic() < deadline, spawn[0].output()
            await asyncio.sleep(0.05)
    finally:
        await store.close()

    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    seen = samples(response.text)
    ran = {"worker": "w-7", "handler": "echo", "tenant": "default"}
    assert seen[sample("overture_step_executions_total", **ran, status="succeeded")] == 1
    finished = {"worker": "w-7", "workflow": "one", "tenant": "default", "status": "succeeded"}
    assert seen[sample("overture_runs_finished_total", **finished)] == 1
    assert not [name for name, _ in seen if name == "overture_queue_depth"]  # API's only

"""The contract every ``Store`` keeps: each test here runs once per store (SQLite, PostgreSQL).

Fixtures: ``store`` (an opened store on a fresh database), ``open_store`` (to open one with
other options), ``store_url`` and ``artifacts_dir``. Helpers, imported by the test modules:
``register`` a workflow from YAML, ``start`` a run, ``drive`` runs by claiming and completing until
nothing is claimable, ``claim_when_due`` for jobs that back off, and raw access to the tables.
"""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from overture.core.events import ErrorInfo
from overture.core.loader import parse_workflow
from overture.serde import JSON
from overture.store import Store, create_store
from overture.store.records import (
    DEFAULT_TENANT,
    ClaimedJob,
    Completion,
    RunRecord,
    StartRun,
    WorkflowRecord,
)

Handler = Callable[[JSON], JSON | ErrorInfo]
"""What a step does in these tests: its input in, its output (or how it failed) out."""
OpenStore = Callable[..., Awaitable[Store]]

# --- workflows used across modules ---------------------------------------------------------

BOOKING = """
name: book
steps:
  - id: pay
    uses: echo
    with: {flight: "${input.flight}"}
    concurrency: {key: "flight-${input.flight}", limit: 1}
"""
"""One step holding a concurrency key per flight, limit 1: a second booking of a flight waits."""

ONE_STEP = """
name: one
steps:
  - id: only
    uses: echo
    with: {n: "${input.n}"}
"""

CHAIN = """
name: chain
steps:
  - id: a
    uses: echo
    with: {x: "${input.x}"}
  - id: b
    uses: double
    with: {x: "${steps.a.output.x}"}
output: {result: "${steps.b.output.x}"}
"""

FAN_IN = """
name: fan_in
steps:
  - {id: left, uses: echo}
  - {id: right, uses: echo}
  - {id: join, uses: echo, depends_on: [left, right]}
"""

BACKOFF = 0.8
"""Seconds a failed attempt of FLAKY waits before its retry is due."""

FLAKY = f"""
name: flaky
steps:
  - id: call
    uses: flaky
    with: {{n: "${{input.n}}"}}
    retry: {{max_attempts: 2, initial: {BACKOFF}s, jitter: 0}}
"""


def boom(code: str = "boom", *, retryable: bool = False) -> ErrorInfo:
    return ErrorInfo(code=code, message=f"step said {code}", retryable=retryable)


def fail_with(error: ErrorInfo) -> Handler:
    return lambda _: error


def double(data: JSON) -> JSON:
    assert isinstance(data, dict)
    return {"x": data["x"] * 2}


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of each dialect (PostgreSQL: already at the current schema)."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest) -> str:
    """A database of each dialect with no schema at all."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_empty_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def artifacts_dir(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest_asyncio.fixture
async def open_store(store_url: str, artifacts_dir: Path) -> AsyncIterator[OpenStore]:
    """Open stores on the test's database (``artifact_threshold=`` may be given); all are closed
    after the test."""
    opened: list[Store] = []

    async def open_(**options: Any) -> Store:
        store = create_store(store_url, artifacts_dir=str(artifacts_dir), **options)
        await store.open()
        opened.append(store)
        return store

    yield open_
    for store in reversed(opened):
        await store.close()


@pytest_asyncio.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()


# --- helpers -------------------------------------------------------------------------------


async def register(store: Store, yaml_text: str, *, tenant: str = DEFAULT_TENANT) -> WorkflowRecord:
    """Register the workflow a YAML document defines."""
    return await store.register_workflow(parse_workflow(textwrap.dedent(yaml_text)), tenant=tenant)


async def start(store: Store, workflow: str, input: JSON = None, **request: Any) -> RunRecord:
    """Start a run and return it (asserting it is a new one)."""
    run, created = await store.start_run(StartRun(workflow=workflow, input=input, **request))
    assert created
    return run


def completion(job: ClaimedJob, result: JSON | ErrorInfo) -> Completion:
    """How ``job`` ended: with ``result`` as its output, or failed with it."""
    if isinstance(result, ErrorInfo):
        return Completion(job_id=job.id, token=job.token, error=result)
    return Completion(job_id=job.id, token=job.token, output=result)


async def complete(store: Store, job: ClaimedJob, result: JSON | ErrorInfo = None) -> bool:
    """Complete one job; True if the store recorded it."""
    (recorded,) = await store.complete([completion(job, result)])
    return recorded


async def drive(
    store: Store, handlers: Mapping[str, Handler] | None = None, *, worker: str = "worker-1"
) -> list[ClaimedJob]:
    """Claim and complete jobs until none is claimable; returns every job run, in order.

    ``handlers`` map a handler name (``uses``) to what it does; by default a step echoes its
    input. A job that backs off (a retry in the future) is not waited for.
    """
    handlers = handlers or {}
    ran: list[ClaimedJob] = []
    for _ in range(100):
        jobs = await store.claim(worker, limit=10)
        if not jobs:
            return ran
        results = [handlers.get(job.uses, lambda data: data)(job.input) for job in jobs]
        recorded = await store.complete(
            [completion(job, result) for job, result in zip(jobs, results, strict=True)]
        )
        assert all(recorded), f"completions refused: {jobs}"
        ran += jobs
    raise AssertionError("runs kept producing jobs after 100 rounds")


async def claim_when_due(
    store: Store, *, within: float = 2.0, worker: str = "worker-1", lease: float = 30.0
) -> list[ClaimedJob]:
    """Claim as soon as something is claimable (polling), or [] after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        jobs = await store.claim(worker, limit=10, lease=lease)
        if jobs or loop.time() > deadline:
            return jobs
        await asyncio.sleep(0.02)


async def event_types(store: Store, run_id: str) -> list[str]:
    return [stored.event.type for stored in await store.events(run_id)]


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


async def table_rows_as_text(url: str, table: str) -> list[str]:
    """Every row of ``table``, each rendered as text: to look for what a row must not hold."""
    if is_sqlite(url):
        conn = sqlite3.connect(sqlite_path(url))
        try:
            return [repr(row) for row in conn.execute(f"SELECT * FROM {table}")]
        finally:
            conn.close()
    return [row[0] for row in await postgres_fetch(url, f"SELECT t::text FROM {table} t")]


async def postgres_fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(query)]
    finally:
        await conn.close()


async def execute_sql(url: str, sqlite_statement: str, postgres_statement: str) -> None:
    """Change the database behind the store's back (the statement for its dialect)."""
    if is_sqlite(url):
        conn = sqlite3.connect(sqlite_path(url))
        try:
            with conn:
                conn.execute(sqlite_statement)
        finally:
            conn.close()
        return
    import asyncpg

    pg = await asyncpg.connect(url)
    try:
        await pg.execute(postgres_statement)
    finally:
        await pg.close()

"""Schema: a fresh store is current, migrating again is harmless, and the migration files are
the schema (applying them to an empty database gives exactly what a store migrates to)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from overture.store import Store, create_store
from overture.store.sqlfiles import migrations

from .conftest import (
    ONE_STEP,
    OpenStore,
    is_sqlite,
    postgres_fetch,
    register,
    sqlite_path,
    start,
)

pytestmark = pytest.mark.asyncio


def dialect(url: str) -> str:
    return "sqlite" if is_sqlite(url) else "postgres"


def without_bookkeeping(objects: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """Leave out the table recording applied migrations: the store adds it, not the files."""
    return {o for o in objects if not any("migrations" in str(part) for part in o[:3])}


async def test_a_fresh_store_has_every_migration_applied(store: Store, store_url: str) -> None:
    status = await store.schema_status()

    assert status.current
    assert status.pending == ()
    assert status.applied == tuple(m.version for m in migrations(dialect(store_url)))


async def test_a_store_opened_without_migrating_migrates_on_demand(
    empty_url: str, artifacts_dir: Path
) -> None:
    store = create_store(empty_url, artifacts_dir=str(artifacts_dir), migrate=False)
    await store.open()
    try:
        everything = tuple(m.version for m in migrations(dialect(empty_url)))
        before = await store.schema_status()
        after = await store.migrate()

        assert (before.applied, before.pending, before.current) == ((), everything, False)
        assert (after.applied, after.pending, after.current) == (everything, (), True)
        assert (await register(store, ONE_STEP)).name == "one"
    finally:
        await store.close()


async def test_migrating_again_changes_nothing(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})

    first = await store.migrate()
    second = await store.migrate()

    assert first == second
    assert second.current
    assert (await store.get_run(run.id)).status == "queued"
    assert await store.queue_depth() == 1


async def test_a_store_reopened_on_the_same_database_sees_what_was_written(
    store_url: str, artifacts_dir: Path, open_store: OpenStore
) -> None:
    first = create_store(store_url, artifacts_dir=str(artifacts_dir))
    await first.open()
    try:
        await register(first, ONE_STEP)
        run = await start(first, "one", {"n": 1})
    finally:
        await first.close()

    reopened = await open_store()

    assert (await reopened.schema_status()).current
    assert (await reopened.get_run(run.id)).input == {"n": 1}
    (job,) = await reopened.claim("worker-1", limit=10)
    assert job.run_id == run.id


# --- the migration files are the schema ---------------------------------------------------


def sqlite_schema(conn: sqlite3.Connection) -> set[tuple[Any, ...]]:
    """Every table and index, with the statement that defines it (as altered since)."""
    found = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    )
    return without_bookkeeping(set(found))


async def test_sqlite_migrations_from_empty_give_the_current_schema(sqlite_url: str) -> None:
    store = create_store(sqlite_url)
    await store.open()
    await store.close()
    with closing(sqlite3.connect(":memory:")) as replayed:
        for migration in migrations("sqlite"):
            replayed.executescript(migration.sql)
        expected = sqlite_schema(replayed)
    with closing(sqlite3.connect(sqlite_path(sqlite_url))) as migrated:
        actual = sqlite_schema(migrated)

    assert {name for kind, name, *_ in expected if kind == "table"}, "no tables declared"
    assert actual == expected


async def postgres_schema(url: str) -> set[tuple[Any, ...]]:
    """Every column (type, nullability, default) and every index definition."""
    columns = await postgres_fetch(
        url,
        "SELECT 'column', table_schema, table_name, column_name, data_type, is_nullable, "
        "column_default FROM information_schema.columns "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    indexes = await postgres_fetch(
        url,
        "SELECT 'index', schemaname, tablename, indexname, indexdef FROM pg_indexes "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    return without_bookkeeping({*columns, *indexes})


@pytest.mark.postgres
async def test_postgres_migrations_from_empty_give_the_current_schema(
    postgres_empty_url: str, postgres_url: str
) -> None:
    import asyncpg

    conn = await asyncpg.connect(postgres_empty_url)
    try:
        for migration in migrations("postgres"):
            await conn.execute(migration.sql)
    finally:
        await conn.close()
    expected = await postgres_schema(postgres_empty_url)

    assert expected, "the PostgreSQL migrations declare no tables"
    assert await postgres_schema(postgres_url) == expected


async def test_runs_delayed_before_the_triggers_migration_are_listed_as_scheduled() -> None:
    """003 gives runs that were waiting for their start time that start time (SQLite; the
    PostgreSQL statement is the same SQL)."""
    with closing(sqlite3.connect(":memory:")) as db:
        before, (triggers, *_) = migrations("sqlite")[:2], migrations("sqlite")[2:]
        for migration in before:
            db.executescript(migration.sql)
        run = "INSERT INTO runs (id, tenant, workflow, version, status, created_at, updated_at, "
        run += "last_seq) VALUES (?, 't', 'w', 1, ?, 100, 100, 1)"
        job = "INSERT INTO jobs (run_id, tenant, workflow, step_id, compensation, attempt, uses, "
        job += "input, priority, run_at, state, created_at) VALUES (?, 't', 'w', 's', 0, 1, 'u', "
        job += "'{}', 0, ?, ?, 100)"
        for run_id, status, run_at, state in [
            ("delayed", "queued", 5000, "queued"),
            ("now", "queued", 100, "queued"),
            ("started", "running", 5000, "leased"),
        ]:
            db.execute(run, (run_id, status))
            db.execute(job, (run_id, run_at, state))

        db.executescript(triggers.sql)

        found = dict(db.execute("SELECT id, not_before FROM runs"))
    assert found == {"delayed": 5000, "now": None, "started": None}


async def test_jobs_that_may_still_run_are_due_from_their_run_at_after_005() -> None:
    """005 gives queued and leased jobs a due_at (SQLite; the PostgreSQL statement is the same
    SQL); finished ones are left alone."""
    with closing(sqlite3.connect(":memory:")) as db:
        before = [m for m in migrations("sqlite") if m.version < 5]
        (due,) = [m for m in migrations("sqlite") if m.version == 5]
        for migration in before:
            db.executescript(migration.sql)
        job = "INSERT INTO jobs (run_id, tenant, workflow, step_id, compensation, attempt, uses, "
        job += "input, priority, run_at, state, created_at) VALUES (?, 't', 'w', 's', 0, 1, 'u', "
        job += "'{}', 0, ?, ?, 100)"
        for run_id, run_at, state in [
            ("q", 5000, "queued"),
            ("l", 200, "leased"),
            ("d", 1, "done"),
        ]:
            db.execute(job, (run_id, run_at, state))

        db.executescript(due.sql)

        found = dict(db.execute("SELECT run_id, due_at FROM jobs"))
    assert found == {"q": 5000, "l": 200, "d": None}

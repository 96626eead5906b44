"""Shared test helpers: paths, and fresh SQLite and PostgreSQL databases.

PostgreSQL tests are marked ``postgres`` and run against the server named by
``OVERTURE_TEST_POSTGRES_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``). Without
it they are skipped, except under ``CI=true``, where a skipped store would be a silent hole.

Isolation follows procrastinate: once per session a template database is migrated to the current
schema by opening a store on it; every test then gets its own ``CREATE DATABASE ... TEMPLATE``
copy (a file copy, far quicker than migrating), dropped after the test.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from overture.store import create_store

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
POSTGRES_ENV = "OVERTURE_TEST_POSTGRES_URL"

T = TypeVar("T")


@pytest.fixture
def corpus() -> Path:
    return CORPUS


@pytest.fixture
def examples() -> Path:
    return ROOT / "examples"


# --- SQLite ----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file that does not exist yet (the store creates it)."""
    return f"sqlite:///{tmp_path / 'overture.db'}"


# --- PostgreSQL ------------------------------------------------------------------------------


def _in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private event loop in another thread.

    Sync fixtures may run while the test's loop exists; ``asyncio.run`` here would replace and
    then clear that thread's current loop, so the admin work gets a thread of its own.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class PostgresServer:
    """Administration of the test server: databases are created and dropped by name."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._names = itertools.count(1)

    def database_url(self, name: str) -> str:
        return urlsplit(self.url)._replace(path=f"/{name}").geturl()

    def execute(self, statement: str) -> None:
        _in_own_loop(self._execute(statement))

    async def _execute(self, statement: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def create_database(self, name: str, *, template: str = "template0") -> str:
        self.drop_database(name)  # a leftover of a killed session with the same pid
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextmanager
    def fresh_database(self, *, template: str = "template0") -> Iterator[str]:
        """A new database (a copy of ``template``) for the duration of the block."""
        name = f"overture_t_{os.getpid()}_{next(self._names)}"
        url = self.create_database(name, template=template)
        try:
            yield url
        finally:
            self.drop_database(name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if {"postgres_server", "postgres_url", "postgres_empty_url"} & set(item.fixturenames):
            item.add_marker(pytest.mark.postgres)
    if os.environ.get(POSTGRES_ENV):
        return
    needing = [item for item in items if item.get_closest_marker("postgres")]
    if not needing:
        return
    if os.environ.get("CI") == "true":
        raise pytest.UsageError(
            f"CI=true but {POSTGRES_ENV} is not set: {len(needing)} PostgreSQL tests would be "
            f"skipped. CI must run them: set {POSTGRES_ENV}=postgresql://user@host:port/dbname"
        )
    skip = pytest.mark.skip(reason=f"PostgreSQL tests need {POSTGRES_ENV}")
    for item in needing:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The PostgreSQL server under test (skipped without one; an error under ``CI=true``)."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {POSTGRES_ENV} is not set", pytrace=False)
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}")
    return PostgresServer(url)


@pytest.fixture(scope="session")
def postgres_template(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The name of a database migrated to the current schema, to copy for each test."""
    name = f"overture_tpl_{os.getpid()}"
    url = postgres_server.create_database(name)
    artifacts = str(tmp_path_factory.mktemp("template-artifacts"))

    async def migrate() -> None:
        store = create_store(url, artifacts_dir=artifacts)
        await store.open()
        try:
            await store.migrate()  # open() migrates by default; say it anyway
        finally:
            await store.close()

    try:
        _in_own_loop(migrate())
        # CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template.
        postgres_server.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        yield name
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """The URL of a fresh database at the current schema, dropped after the test."""
    with postgres_server.fresh_database(template=postgres_template) as url:
        yield url


@pytest.fixture
def postgres_empty_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database with no schema at all, dropped after the test."""
    with postgres_server.fresh_database() as url:
        yield url

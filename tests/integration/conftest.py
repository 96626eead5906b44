"""Integration tests run against both stores: ``database_url`` is a fresh database of each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.workers import WorkerProcess


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def spawn() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test started (``start_worker``), killed when it ends."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()

"""Large payloads: kept in the artifact directory, not in the database, and handed back whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from overture.core import events as ev
from overture.serde import JSON

from .conftest import ONE_STEP, OpenStore, drive, register, start, table_rows_as_text

pytestmark = pytest.mark.asyncio

THRESHOLD = 1024
CANARY = "canary-5f0e2b"


def large(tag: str) -> JSON:
    """About 10 KB of JSON, recognisable by ``CANARY`` and ``tag``."""
    return {"text": f"{CANARY}-{tag} " + "x" * 10_000}


def artifact_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]


async def test_a_large_step_output_round_trips_through_the_artifact_directory(
    open_store: OpenStore, store_url: str, artifacts_dir: Path
) -> None:
    store = await open_store(artifact_threshold=THRESHOLD)
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})

    await drive(store, {"echo": lambda _: large("output")})

    outputs = [
        s.event.output for s in await store.events(run.id) if isinstance(s.event, ev.StepSucceeded)
    ]
    assert outputs == [large("output")]
    assert (await store.get_run(run.id)).output == {"only": large("output")}
    assert any(f"{CANARY}-output" in f.read_text() for f in artifact_files(artifacts_dir))
    for table in ("events", "runs"):
        rows = await table_rows_as_text(store_url, table)
        assert rows, f"no rows in {table}"
        assert not any(CANARY in row for row in rows), f"the payload is stored in {table}"


async def test_a_large_run_input_reaches_the_step_whole(
    open_store: OpenStore, store_url: str, artifacts_dir: Path
) -> None:
    store = await open_store(artifact_threshold=THRESHOLD)
    await register(store, ONE_STEP)

    run = await start(store, "one", {"n": large("input")})

    assert (await store.get_run(run.id)).input == {"n": large("input")}
    (job,) = await store.claim("worker-1", limit=10)
    assert job.input == {"n": large("input")}
    assert artifact_files(artifacts_dir)
    for table in ("events", "runs", "jobs"):
        rows = await table_rows_as_text(store_url, table)
        assert not any(CANARY in row for row in rows), f"the payload is stored in {table}"

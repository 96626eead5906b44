"""The commit hook (``Store.observers``), on both stores: an observer hears what committed,
once, before the write's caller resumes, and never what rolled back."""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from overture.core import events as ev
from overture.core.advance import Transition, advance
from overture.core.loader import parse_workflow
from overture.errors import NotFound
from overture.store import Store
from overture.store.records import StartRun

from .conftest import BOOKING, ONE_STEP, is_sqlite, register, start

pytestmark = pytest.mark.asyncio


class Recorder:
    """A ``StoreObserver`` that keeps what it is told, one list per call."""

    def __init__(self) -> None:
        self.recorded: list[list[Transition]] = []
        self.deferred: list[list[tuple[str, str]]] = []

    def recorded_runs(self) -> list[str]:
        """The run id of every transition, in the order told."""
        return [t.state.run_id for call in self.recorded for t in call]

    def started_runs(self) -> list[str]:
        return [
            t.state.run_id
            for call in self.recorded
            for t in call
            if any(isinstance(e, ev.RunStarted) for e in t.events)
        ]


class Observer:
    """Routes the protocol's calls to a ``Recorder`` (whose attributes share their names)."""

    def __init__(self, into: Recorder) -> None:
        self.into = into

    def recorded(self, transitions: Sequence[Transition]) -> None:
        self.into.recorded.append(list(transitions))

    def deferred(self, deferrals: Sequence[tuple[str, str]]) -> None:
        self.into.deferred.append(list(deferrals))


def observed(store: Store) -> Recorder:
    found = Recorder()
    store.observers.append(Observer(found))
    return found


def transition(run_id: str) -> Transition:
    """A run's first transition, made by the pure engine (as a store makes it)."""
    workflow = parse_workflow(textwrap.dedent(ONE_STEP))
    started = ev.RunStarted(
        at=datetime.now(UTC), run_id=run_id, workflow="one", version=1, input={"n": 1}
    )
    return advance(workflow, None, [started], datetime.now(UTC))


async def write(store: Store, fn: Any, store_url: str) -> Any:
    """Run ``fn(tx)`` as one of the store's own writes (a coroutine function on PostgreSQL)."""
    if is_sqlite(store_url):
        return await store._write(fn)  # type: ignore[attr-defined]

    async def run(tx: Any) -> Any:
        return fn(tx)

    return await store._write(run)  # type: ignore[attr-defined]


async def test_a_run_start_is_reported_once_before_the_caller_resumes(store: Store) -> None:
    await register(store, ONE_STEP)
    seen = observed(store)

    run = await start(store, "one", {"n": 1})

    # No waiting: the observers are told before the write's result is handed back.
    assert seen.started_runs() == [run.id]
    assert seen.recorded_runs() == [run.id]
    assert seen.deferred == []


async def test_a_write_that_fails_reports_nothing(store: Store, store_url: str) -> None:
    seen = observed(store)

    def fails(tx: Any) -> None:
        tx.transitions.append(transition("doomed"))
        raise ValueError("rolled back")

    with pytest.raises(ValueError, match="rolled back"):
        await write(store, fails, store_url)
    with pytest.raises(NotFound):
        await store.start_run(StartRun(workflow="missing", input={}))

    assert (seen.recorded, seen.deferred) == ([], [])


async def test_a_failing_write_in_a_batch_takes_none_of_its_neighbours_reports(
    store: Store, store_url: str
) -> None:
    """SQLite commits the writes queued together at once, each in its own savepoint: the one
    that raises is rolled back alone, and only what committed is reported."""
    if not is_sqlite(store_url):
        pytest.skip("group commit is the embedded store's")
    seen = observed(store)
    busy, release = threading.Event(), threading.Event()

    def hold(tx: Any) -> None:  # keeps the writer busy while the next two are queued
        busy.set()
        release.wait(10)

    def succeeds(tx: Any) -> None:
        tx.transitions.append(transition("kept"))
        tx.deferred.append(("acme", "slot"))

    def fails(tx: Any) -> None:
        tx.transitions.append(transition("dropped"))
        tx.deferred.append(("acme", "rate"))
        raise ValueError("rolled back")

    holding = asyncio.ensure_future(write(store, hold, store_url))
    await asyncio.to_thread(busy.wait, 10)
    first = asyncio.ensure_future(write(store, succeeds, store_url))
    second = asyncio.ensure_future(write(store, fails, store_url))
    await asyncio.sleep(0)  # both submitted: queued behind the held write, one batch
    release.set()
    results = await asyncio.gather(holding, first, second, return_exceptions=True)

    assert isinstance(results[2], ValueError)
    assert seen.recorded_runs() == ["kept"]
    assert seen.deferred == [[("acme", "slot")]]


async def test_a_claim_held_by_a_slot_reports_the_deferral_with_its_tenant(store: Store) -> None:
    await register(store, BOOKING, tenant="acme")
    for _ in range(2):
        await start(store, "book", {"flight": 7}, tenant="acme")
    seen = observed(store)

    (job,) = await store.claim("w", limit=2)

    assert job.tenant == "acme"
    assert seen.deferred == [[("acme", "slot")]]

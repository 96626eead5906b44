"""Reading runs back: per tenant, filtered, paged newest first, and with a history that replays to
exactly the state the store reports."""

from __future__ import annotations

from typing import Any

import pytest

from overture.core.state import fold
from overture.errors import InvalidCursor, NotFound
from overture.store import Store
from overture.store.records import RunRecord

from .conftest import CHAIN, ONE_STEP, boom, drive, fail_with, register, start

pytestmark = pytest.mark.asyncio


async def all_pages(store: Store, *, limit: int) -> list[list[RunRecord]]:
    pages = []
    cursor = None
    while True:
        page = await store.list_runs(limit=limit, cursor=cursor)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


async def test_a_run_is_visible_to_its_tenant_only(store: Store) -> None:
    await register(store, ONE_STEP, tenant="acme")
    run = await start(store, "one", {"n": 1}, tenant="acme")

    for read in (store.get_run, store.events, store.run_state):
        with pytest.raises(NotFound):
            await read(run.id)
        with pytest.raises(NotFound):
            await read(run.id, tenant="globex")
    assert (await store.get_run(run.id, tenant="acme")).id == run.id
    assert (await store.get_run(run.id, tenant=None)).tenant == "acme"


async def test_an_unknown_run_is_not_found(store: Store) -> None:
    for read in (store.get_run, store.events, store.run_state):
        with pytest.raises(NotFound):
            await read("no-such-run", tenant=None)


async def test_list_runs_filters_by_status_workflow_and_tenant(store: Store) -> None:
    await register(store, ONE_STEP)
    await register(store, CHAIN)
    await register(store, ONE_STEP, tenant="acme")
    finished = await start(store, "one", {"n": 1})
    await drive(store)
    queued = await start(store, "one", {"n": 2})
    chain = await start(store, "chain", {"x": 1})
    foreign = await start(store, "one", {"n": 3}, tenant="acme")

    async def ids(**filters: Any) -> set[str]:
        return {run.id for run in (await store.list_runs(**filters)).items}

    assert await ids() == {finished.id, queued.id, chain.id}
    assert await ids(status="succeeded") == {finished.id}
    assert await ids(status="queued") == {queued.id, chain.id}
    assert await ids(workflow="chain") == {chain.id}
    assert await ids(workflow="one", status="queued") == {queued.id}
    assert await ids(tenant="acme") == {foreign.id}
    assert await ids(tenant=None) == {finished.id, queued.id, chain.id, foreign.id}
    assert await ids(status="failed") == set()


async def test_list_runs_since_a_time_lists_the_runs_started_from_then_on(store: Store) -> None:
    await register(store, ONE_STEP)
    # Many runs: a time rounded on its way into or out of the store would drop about half.
    runs = [await start(store, "one", {"n": n}) for n in range(20)]

    for i, run in enumerate(runs):
        page = await store.list_runs(since=run.created_at)
        assert [listed.id for listed in page.items] == [r.id for r in reversed(runs[i:])]


async def test_list_runs_pages_through_every_run_newest_first(store: Store) -> None:
    await register(store, ONE_STEP)
    started = [(await start(store, "one", {"n": n})).id for n in range(7)]

    pages = await all_pages(store, limit=3)

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [run.id for page in pages for run in page] == started[::-1]


async def test_list_runs_orders_by_start_whatever_the_run_ids(store: Store) -> None:
    await register(store, ONE_STEP)
    for run_id in ("run-m", "run-z", "run-a"):
        await start(store, "one", {"n": 1}, run_id=run_id)

    pages = await all_pages(store, limit=2)

    assert [run.id for page in pages for run in page] == ["run-a", "run-z", "run-m"]


async def test_a_cursor_no_listing_returned_is_refused(store: Store) -> None:
    with pytest.raises(InvalidCursor):
        await store.list_runs(cursor="not-a-cursor")


async def test_events_are_numbered_from_one_without_gaps_and_read_after_a_position(
    store: Store,
) -> None:
    await register(store, CHAIN)
    run = await start(store, "chain", {"x": 1})
    await drive(store)
    history = await store.events(run.id)
    count = (await store.get_run(run.id)).events

    assert [e.seq for e in history] == list(range(1, count + 1))
    assert {e.run_id for e in history} == {run.id}
    assert await store.events(run.id, after=3) == history[3:]
    assert await store.events(run.id, after=3, limit=2) == history[3:5]
    assert await store.events(run.id, after=count) == []


async def test_the_stored_history_replays_to_the_reported_state(store: Store) -> None:
    await register(store, CHAIN)
    succeeded = await start(store, "chain", {"x": 1})
    await drive(store)
    failed = await start(store, "chain", {"x": 2})
    await drive(store, {"double": fail_with(boom("bad_request"))})
    cancelled = await start(store, "chain", {"x": 3})
    await store.claim("worker-1", limit=10)
    await store.cancel_run(cancelled.id)

    for run_id, status in (
        (succeeded.id, "succeeded"),
        (failed.id, "failed"),
        (cancelled.id, "cancelled"),
    ):
        state = await store.run_state(run_id)
        record = await store.get_run(run_id)
        assert state == fold(stored.event for stored in await store.events(run_id))
        assert (state.status, record.status) == (status, status)
        assert (state.output, state.error, state.events) == (
            record.output,
            record.error,
            record.events,
        )

"""The dead-letter queue: a step that failed for good waits there, per tenant, until it is
requeued (its run reopens) or its run is retried."""

from __future__ import annotations

import pytest

from overture.core.state import TERMINAL_RUN
from overture.errors import NotFound
from overture.store import Store
from overture.store.records import DeadLetter, RunRecord

from .conftest import CHAIN, boom, double, drive, fail_with, register, start

pytestmark = pytest.mark.asyncio


async def failed_run(store: Store, *, tenant: str = "default") -> tuple[RunRecord, DeadLetter]:
    """A CHAIN run whose step ``b`` failed for good, and its dead letter."""
    await register(store, CHAIN, tenant=tenant)
    run = await start(store, "chain", {"x": 5}, tenant=tenant)
    await drive(store, {"double": fail_with(boom("bad_request"))})
    (letter,) = await store.dead_letters(tenant=tenant)
    return run, letter


async def test_requeueing_a_letter_reopens_its_run(store: Store) -> None:
    run, letter = await failed_run(store)

    (reopened,) = await store.requeue([letter.id])

    assert reopened.id == run.id
    assert reopened.status not in TERMINAL_RUN
    assert await store.dead_letters() == []
    (requeued,) = await store.dead_letters(include_requeued=True)
    assert (requeued.id, requeued.step_id) == (letter.id, "b")
    assert requeued.requeued_at is not None
    assert [job.step_id for job in await drive(store, {"double": double})] == ["b"]
    done = await store.get_run(run.id)
    assert (done.status, done.output) == ("succeeded", {"result": 10})


async def test_retrying_a_run_resolves_its_dead_letters(store: Store) -> None:
    run, _ = await failed_run(store)

    await store.retry_run(run.id)

    assert await store.dead_letters() == []
    assert len(await store.dead_letters(include_requeued=True)) == 1


async def test_dead_letters_are_per_tenant(store: Store) -> None:
    _, letter = await failed_run(store, tenant="acme")

    assert await store.dead_letters() == []
    assert await store.dead_letters(tenant="globex") == []
    assert await store.dead_letters(tenant=None) == [letter]
    with pytest.raises(NotFound):
        await store.requeue([letter.id])
    with pytest.raises(NotFound):
        await store.requeue([letter.id], tenant="globex")
    assert await store.dead_letters(tenant="acme") == [letter]


async def test_requeueing_an_unknown_letter_is_not_found_and_requeues_nothing(
    store: Store,
) -> None:
    run, letter = await failed_run(store)

    with pytest.raises(NotFound):
        await store.requeue([letter.id, letter.id + 1000])

    assert await store.dead_letters() == [letter]
    assert (await store.get_run(run.id)).status == "failed"

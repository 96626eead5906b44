"""Retrying runs: a failed or cancelled run is reopened and only what did not succeed runs again;
a run that succeeded, is still going, or was compensated is not retryable."""

from __future__ import annotations

import pytest

from overture.core import events as ev
from overture.core.state import TERMINAL_RUN
from overture.errors import NotFound, NotRetryable
from overture.store import Store

from .conftest import CHAIN, ONE_STEP, boom, double, drive, fail_with, register, start

pytestmark = pytest.mark.asyncio

SAGA = """
name: saga
steps:
  - id: book
    uses: echo
    compensate: {uses: unbook}
  - id: charge
    uses: charge
    depends_on: [book]
"""


async def test_a_failed_run_is_reopened_and_runs_its_failed_step_again(store: Store) -> None:
    await register(store, CHAIN)
    run = await start(store, "chain", {"x": 3})
    await drive(store, {"double": fail_with(boom("bad_request"))})

    reopened = await store.retry_run(run.id)

    assert reopened.status not in TERMINAL_RUN
    assert (reopened.finished_at, reopened.error) == (None, None)
    retried = [s.event for s in await store.events(run.id) if isinstance(s.event, ev.RunRetried)]
    assert [e.steps for e in retried] == [("b",)]
    ran = await drive(store, {"double": double})
    assert [job.step_id for job in ran] == ["b"]
    done = await store.get_run(run.id)
    assert (done.status, done.output) == ("succeeded", {"result": 6})


async def test_a_cancelled_run_can_be_retried(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    await store.cancel_run(run.id)

    await store.retry_run(run.id)

    assert [job.step_id for job in await drive(store)] == ["only"]
    assert (await store.get_run(run.id)).status == "succeeded"


async def test_a_succeeded_or_unfinished_run_is_not_retryable(store: Store) -> None:
    await register(store, ONE_STEP)
    unfinished = await start(store, "one", {"n": 1})
    with pytest.raises(NotRetryable):
        await store.retry_run(unfinished.id)

    await drive(store)
    with pytest.raises(NotRetryable):
        await store.retry_run(unfinished.id)
    assert (await store.get_run(unfinished.id)).status == "succeeded"


async def test_only_steps_that_failed_can_be_named_for_a_retry(store: Store) -> None:
    await register(store, CHAIN)
    run = await start(store, "chain", {"x": 3})
    await drive(store, {"double": fail_with(boom("bad_request"))})

    with pytest.raises(NotRetryable):
        await store.retry_run(run.id, steps=["a"])

    assert (await store.get_run(run.id)).status == "failed"
    assert (await store.retry_run(run.id, steps=["b"])).status not in TERMINAL_RUN


async def test_a_compensated_run_is_not_retryable(store: Store) -> None:
    await register(store, SAGA)
    run = await start(store, "saga")
    ran = await drive(store, {"charge": fail_with(boom("card_declined"))})
    assert [(job.step_id, job.compensation) for job in ran] == [
        ("book", False),
        ("charge", False),
        ("book", True),
    ]
    assert (await store.get_run(run.id)).status == "compensated"

    with pytest.raises(NotRetryable):
        await store.retry_run(run.id)

    assert (await store.get_run(run.id)).status == "compensated"


async def test_retrying_an_unknown_or_foreign_run_is_not_found(store: Store) -> None:
    await register(store, ONE_STEP, tenant="acme")
    run = await start(store, "one", {"n": 1}, tenant="acme")
    await store.cancel_run(run.id, tenant="acme")

    with pytest.raises(NotFound):
        await store.retry_run("no-such-run")
    with pytest.raises(NotFound):
        await store.retry_run(run.id)
    assert (await store.get_run(run.id, tenant="acme")).status == "cancelled"

"""Starting runs: one transaction that records the start and queues the root steps; a repeated
idempotency key returns the existing run, however many requests race."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from overture.core import events as ev
from overture.errors import Conflict, InputInvalid
from overture.store import Store
from overture.store.records import StartRun

from .conftest import FAN_IN, ONE_STEP, event_types, register, start

pytestmark = pytest.mark.asyncio

TYPED_INPUT = """
name: typed
input:
  type: object
  required: [n]
  properties:
    n: {type: integer}
    mode: {type: string, default: fast}
steps:
  - id: only
    uses: echo
    with: {n: "${input.n}", mode: "${input.mode}"}
"""


async def test_a_run_starts_queued_with_its_root_steps_scheduled(store: Store) -> None:
    await register(store, FAN_IN)

    run = await start(store, "fan_in", {"k": "v"}, correlation_id="c-1")

    assert (run.status, run.workflow, run.version, run.tenant) == ("queued", "fan_in", 1, "default")
    assert (run.input, run.correlation_id, run.output, run.error) == ({"k": "v"}, "c-1", None, None)
    history = await store.events(run.id)
    assert [e.event.type for e in history] == ["RunStarted", "StepScheduled", "StepScheduled"]
    assert {e.event.step_id for e in history[1:] if isinstance(e.event, ev.StepScheduled)} == {
        "left",
        "right",
    }
    assert run.events == 3
    assert await store.queue_depth() == 2
    assert await store.get_run(run.id) == run


async def test_a_repeated_idempotency_key_returns_the_existing_run(store: Store) -> None:
    await register(store, ONE_STEP)
    request = StartRun(workflow="one", input={"n": 1}, idempotency_key="order-42")

    first, created = await store.start_run(request)
    again, created_again = await store.start_run(request)

    assert (created, created_again) == (True, False)
    assert again == first
    assert await event_types(store, first.id) == ["RunStarted", "StepScheduled"]
    assert await store.queue_depth() == 1


async def test_racing_starts_with_one_key_make_one_run(store: Store) -> None:
    await register(store, ONE_STEP)
    request = StartRun(workflow="one", input={"n": 1}, idempotency_key="order-42")

    results = await asyncio.gather(*(store.start_run(request) for _ in range(50)))

    assert len({run.id for run, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1
    assert len((await store.list_runs()).items) == 1
    assert await store.queue_depth() == 1


async def test_an_idempotency_key_is_per_tenant(store: Store) -> None:
    await register(store, ONE_STEP)
    await register(store, ONE_STEP, tenant="acme")

    ours = await start(store, "one", {"n": 1}, idempotency_key="k")
    theirs = await start(store, "one", {"n": 1}, idempotency_key="k", tenant="acme")

    assert ours.id != theirs.id
    assert theirs.tenant == "acme"


async def test_input_is_validated_and_completed_with_defaults(store: Store) -> None:
    await register(store, TYPED_INPUT)

    run = await start(store, "typed", {"n": 3})

    assert run.input == {"n": 3, "mode": "fast"}
    (job,) = await store.claim("worker-1", limit=1)
    assert job.input == {"n": 3, "mode": "fast"}


async def test_invalid_input_is_refused_and_nothing_is_written(store: Store) -> None:
    await register(store, TYPED_INPUT)

    with pytest.raises(InputInvalid) as caught:
        await start(store, "typed", {"n": "three"}, idempotency_key="k")

    assert caught.value.workflow == "typed"
    assert (await store.list_runs()).items == []
    assert await store.queue_depth() == 0
    # The key was not used up by the refused request.
    accepted = await start(store, "typed", {"n": 3}, idempotency_key="k")
    assert accepted.input == {"n": 3, "mode": "fast"}


async def test_a_run_id_can_be_chosen_by_the_caller(store: Store) -> None:
    await register(store, ONE_STEP)

    run = await start(store, "one", {"n": 1}, run_id="my-run-1")

    assert run.id == "my-run-1"
    assert (await store.get_run("my-run-1")).status == "queued"


async def test_a_delayed_run_is_not_claimable_before_its_start_time(store: Store) -> None:
    await register(store, ONE_STEP)

    await start(store, "one", {"n": 1}, run_at=datetime.now(UTC) + timedelta(seconds=30))

    assert await store.claim("worker-1", limit=10) == []


async def test_a_chosen_run_id_cannot_be_used_twice(store: Store) -> None:
    await register(store, ONE_STEP)
    first = await start(store, "one", {"n": 1}, run_id="order-7")

    with pytest.raises(Conflict) as refused:
        await start(store, "one", {"n": 2}, run_id="order-7")

    assert refused.value.code == "run_exists"
    assert first.id == "order-7"
    assert (await store.get_run("order-7")).input == {"n": 1}


async def test_racing_starts_with_one_chosen_run_id_make_one_run_and_refuse_the_rest(
    store: Store,
) -> None:
    await register(store, ONE_STEP)
    requests = [StartRun(workflow="one", input={"n": n}, run_id="order-9") for n in range(10)]

    results = await asyncio.gather(
        *(store.start_run(request) for request in requests), return_exceptions=True
    )

    started = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(started) == 1
    assert all(isinstance(r, Conflict) and r.code == "run_exists" for r in refused), refused
    (run, created) = started[0]
    assert (run.id, created) == ("order-9", True)
    assert await store.get_run("order-9") == run
    assert await store.queue_depth() == 1


async def test_racing_starts_with_one_key_and_run_id_all_get_the_one_run(store: Store) -> None:
    await register(store, ONE_STEP)
    request = StartRun(workflow="one", input={"n": 1}, run_id="order-10", idempotency_key="k-10")

    results = await asyncio.gather(*(store.start_run(request) for _ in range(10)))

    assert {run.id for run, _ in results} == {"order-10"}
    assert [created for _, created in results].count(True) == 1
    assert await store.queue_depth() == 1

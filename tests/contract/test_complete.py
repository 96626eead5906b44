"""Completing attempts: a result is recorded once, only by the lease holder, and moves the run on:
to the next step, to a retry after its backoff, or to failure and the dead-letter queue."""

from __future__ import annotations

import asyncio

import pytest

from overture.core import events as ev
from overture.store import Store
from overture.store.records import Completion

from .conftest import (
    BACKOFF,
    CHAIN,
    FAN_IN,
    FLAKY,
    ONE_STEP,
    boom,
    claim_when_due,
    complete,
    double,
    drive,
    event_types,
    fail_with,
    register,
    start,
)

pytestmark = pytest.mark.asyncio


async def test_successful_steps_carry_the_run_to_its_output(store: Store) -> None:
    await register(store, CHAIN)
    run = await start(store, "chain", {"x": 2})

    ran = await drive(store, {"double": double})

    assert [(job.step_id, job.input) for job in ran] == [("a", {"x": 2}), ("b", {"x": 2})]
    done = await store.get_run(run.id)
    assert (done.status, done.output, done.error) == ("succeeded", {"result": 4}, None)
    assert done.finished_at is not None
    assert await event_types(store, run.id) == [
        "RunStarted",
        "StepScheduled",
        "StepStarted",
        "StepSucceeded",
        "StepScheduled",
        "StepStarted",
        "StepSucceeded",
        "RunSucceeded",
    ]


async def test_siblings_completed_at_once_both_count_and_their_join_runs_once(
    store: Store,
) -> None:
    await register(store, FAN_IN)
    run = await start(store, "fan_in")
    (left,) = await store.claim("worker-1", limit=1)
    (right,) = await store.claim("worker-2", limit=1)

    answers = await asyncio.gather(
        complete(store, left, {"side": "left"}), complete(store, right, {"side": "right"})
    )

    assert answers == [True, True]
    (join,) = await store.claim("worker-1", limit=10)
    assert join.step_id == "join"
    assert await complete(store, join, {"joined": True})
    assert await store.claim("worker-1", limit=10) == []
    done = await store.get_run(run.id)
    assert (done.status, done.output) == ("succeeded", {"join": {"joined": True}})
    assert (await event_types(store, run.id)).count("StepScheduled") == 3


async def test_a_completion_with_the_wrong_token_is_refused_and_records_nothing(
    store: Store,
) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=10)
    before = await store.events(run.id)

    refused = await store.complete([Completion(job_id=job.id, token="not-the-token", output=1)])
    unknown = await store.complete([Completion(job_id=job.id + 1000, token=job.token, output=1)])

    assert (refused, unknown) == ([False], [False])
    assert await store.events(run.id) == before
    assert (await store.get_run(run.id)).status == "running"
    assert await complete(store, job, {"n": 1})
    assert (await store.get_run(run.id)).status == "succeeded"


async def test_an_attempt_is_recorded_once_however_often_it_is_completed(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=10)

    assert await complete(store, job, {"first": True})
    after_first = await store.events(run.id)
    assert not await complete(store, job, {"second": True})

    assert await store.events(run.id) == after_first
    assert (await store.get_run(run.id)).output == {"only": {"first": True}}


async def test_completions_in_one_call_are_answered_in_order(store: Store) -> None:
    await register(store, ONE_STEP)
    for n in range(3):
        await start(store, "one", {"n": n})
    first, second, third = await store.claim("worker-1", limit=10)

    answers = await store.complete(
        [
            Completion(job_id=first.id, token=first.token, output=1),
            Completion(job_id=second.id, token="stale", output=2),
            Completion(job_id=third.id, token=third.token, output=3),
        ]
    )

    assert answers == [True, False, True]
    assert (await store.get_run(second.run_id)).status == "running"


async def test_a_retryable_failure_schedules_another_attempt_after_the_backoff(
    store: Store,
) -> None:
    await register(store, FLAKY)
    run = await start(store, "flaky", {"n": 1})
    (first,) = await store.claim("worker-1", limit=10)

    assert await complete(store, first, boom("http_503", retryable=True))

    failed, retry = [stored.event for stored in (await store.events(run.id))[-2:]]
    assert isinstance(failed, ev.StepFailed)
    assert (failed.attempt, failed.error.code) == (1, "http_503")
    assert isinstance(retry, ev.StepRetryScheduled)
    assert (retry.attempt, retry.reason, retry.delay) == (2, "error", pytest.approx(BACKOFF))
    assert (await store.get_run(run.id)).status == "waiting"
    (second,) = await claim_when_due(store)
    assert second.attempt == 2
    assert await complete(store, second, {"ok": True})
    done = await store.get_run(run.id)
    assert (done.status, done.output) == ("succeeded", {"call": {"ok": True}})


async def test_a_step_out_of_attempts_fails_the_run_into_the_dead_letter_queue(
    store: Store,
) -> None:
    await register(store, FLAKY)
    run = await start(store, "flaky", {"n": 1})
    unavailable = boom("http_503", retryable=True)
    (first,) = await store.claim("worker-1", limit=10)
    assert await complete(store, first, unavailable)
    (second,) = await claim_when_due(store)

    assert await complete(store, second, unavailable)

    failed = await store.get_run(run.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "http_503"
    (letter,) = await store.dead_letters()
    assert (letter.run_id, letter.step_id, letter.attempts) == (run.id, "call", 2)
    assert await store.claim("worker-1", limit=10) == []


async def test_a_non_retryable_failure_fails_the_run_at_once(store: Store) -> None:
    await register(store, CHAIN)
    run = await start(store, "chain", {"x": 1})

    ran = await drive(store, {"double": fail_with(boom("bad_request"))})

    assert [job.step_id for job in ran] == ["a", "b"]
    failed = await store.get_run(run.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.code, failed.error.retryable) == ("bad_request", False)
    assert failed.finished_at is not None
    (letter,) = await store.dead_letters()
    assert (letter.run_id, letter.workflow, letter.step_id) == (run.id, "chain", "b")
    assert (letter.attempts, letter.compensation, letter.requeued_at) == (1, False, None)
    assert (letter.error.code, letter.error.message) == ("bad_request", "step said bad_request")
    assert letter.tenant == "default"

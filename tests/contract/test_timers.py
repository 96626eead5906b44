"""The engine's timers: ``sleep`` is a job queued for its end, ``wait`` a job queued for its
deadline that a signal makes unnecessary (the step ends and the job is dropped in the same
transaction as the signal); every store does it the same way."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest

from overture.core import events as ev
from overture.core.builtin_steps import timeout_outcome
from overture.core.events import ErrorInfo
from overture.store import Store
from overture.store.records import ClaimedJob

from .conftest import (
    claim_when_due,
    complete,
    drive,
    is_sqlite,
    postgres_fetch,
    register,
    sqlite_path,
    start,
)

pytestmark = pytest.mark.asyncio

NAP = """
name: nap
steps:
  - {id: nap, uses: sleep, with: {seconds: "${input.seconds}"}}
  - {id: after, uses: echo, depends_on: [nap], with: {done: true}}
"""

GATE = """
name: gate
steps:
  - id: hold
    uses: wait
    with:
      signal: go
      timeout: "${input.timeout}"
      on_timeout: "${input.on_timeout}"
      default: {fallback: true}
  - {id: after, uses: echo, with: {got: "${steps.hold.output}"}}
"""

APPROVAL = """
name: approval
steps:
  - id: review
    uses: wait
    with: {approval: true, timeout: 1h}
  - {id: ship, uses: echo, depends_on: [review], with: {ok: true}}
"""

TWO_WAITS = """
name: two_waits
steps:
  - {id: first, uses: wait, with: {signal: go}}
  - {id: second, uses: wait, depends_on: [first], with: {signal: go}}
"""

LATE_WAIT = """
name: late_wait
steps:
  - {id: before, uses: echo}
  - {id: hold, uses: wait, depends_on: [before], with: {signal: go, timeout: 1h}}
"""


async def jobs_of(url: str, run_id: str) -> list[tuple[str, str, str]]:
    """``(step, handler, state)`` of every job of a run, in the order they were queued."""
    if is_sqlite(url):
        conn = sqlite3.connect(sqlite_path(url))
        try:
            query = "SELECT step_id, uses, state FROM jobs WHERE run_id = ? ORDER BY id"
            return [tuple(row) for row in conn.execute(query, (run_id,))]
        finally:
            conn.close()
    query = f"SELECT step_id, uses, state FROM jobs WHERE run_id = '{run_id}' ORDER BY id"
    return [tuple(row) for row in await postgres_fetch(url, query)]  # type: ignore[misc]


def timed_out(job: ClaimedJob) -> object:
    """What the built-in ``wait`` handler answers when its deadline comes."""
    assert isinstance(job.input, dict)
    output, error = timeout_outcome(job.input)
    return output if error is None else error


async def test_a_sleep_is_a_job_due_when_it_ends(store: Store) -> None:
    await register(store, NAP)
    began = time.monotonic()
    run = await start(store, "nap", {"seconds": 0.6})
    state = await store.run_state(run.id)

    assert await store.claim("worker-1", limit=10) == []
    assert (await store.get_run(run.id)).status == "waiting"
    nap = state.step("nap")
    assert nap.run_at is not None and nap.scheduled_at is not None
    assert nap.run_at - nap.scheduled_at == timedelta(seconds=0.6)
    (job,) = await claim_when_due(store, within=5)
    assert time.monotonic() - began >= 0.6
    assert job.uses == "sleep"
    assert await complete(store, job, {"slept_until": "now"})
    await drive(store)
    assert (await store.get_run(run.id)).status == "succeeded"


@pytest.mark.parametrize(
    "inputs",
    [{"seconds": -1}, {"seconds": "soon"}, {"duration": "2 fortnights"}, {}, {"until": "tuesday"}],
)
async def test_a_sleep_with_bad_inputs_fails_before_anything_waits(
    store: Store, inputs: dict[str, object]
) -> None:
    await register(store, 'name: bad_nap\nsteps:\n  - {id: nap, uses: sleep, with: "${input}"}\n')
    run = await start(store, "bad_nap", inputs)

    done = await store.get_run(run.id)
    assert done.status == "failed"
    assert done.error is not None and done.error.code == "bad_input"
    assert await store.queue_depth() == 0


async def test_a_sleep_until_a_time_passed_is_due_at_once(store: Store) -> None:
    await register(store, 'name: until\nsteps:\n  - {id: nap, uses: sleep, with: "${input}"}\n')
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    run = await start(store, "until", {"until": past})

    (job,) = await store.claim("worker-1", limit=10)
    assert job.run_id == run.id and job.uses == "sleep"


async def test_a_signal_resolves_a_wait_and_drops_its_timer(store: Store, store_url: str) -> None:
    await register(store, GATE)
    run = await start(store, "gate", {"timeout": "1h", "on_timeout": "fail"})
    assert (await store.get_run(run.id)).status == "waiting"
    assert await jobs_of(store_url, run.id) == [("hold", "wait", "queued")]

    sent = await store.signal_run(run.id, "go", {"by": "ana"})

    state = await store.run_state(run.id)
    hold = state.step("hold")
    assert hold.status == "succeeded"
    assert hold.output == {
        "signal": "go",
        "payload": {"by": "ana"},
        "received_at": sent.event.at.isoformat(),
    }
    assert state.signals_taken == frozenset({0})
    assert await jobs_of(store_url, run.id) == [
        ("hold", "wait", "cancelled"),
        ("after", "echo", "queued"),
    ]
    history = [e.event for e in await store.events(run.id)]
    ended = [e for e in history if isinstance(e, ev.StepSucceeded) and e.step_id == "hold"]
    assert [e.signal for e in ended] == [0]
    await drive(store)
    done = await store.get_run(run.id)
    assert done.status == "succeeded"
    assert done.output == {"after": {"got": hold.output}}


async def test_a_signal_of_another_name_leaves_the_wait_waiting(store: Store) -> None:
    await register(store, GATE)
    run = await start(store, "gate", {"timeout": "1h", "on_timeout": "fail"})

    await store.signal_run(run.id, "stop")

    state = await store.run_state(run.id)
    assert state.step("hold").status == "scheduled"
    assert state.signals_taken == frozenset()
    assert (await store.get_run(run.id)).status == "waiting"


@pytest.mark.parametrize("on_timeout", ["fail", "succeed"])
async def test_a_wait_whose_deadline_comes_first_takes_its_on_timeout_outcome(
    store: Store, on_timeout: str
) -> None:
    await register(store, GATE)
    run = await start(store, "gate", {"timeout": "0.3s", "on_timeout": on_timeout})

    (job,) = await claim_when_due(store, within=5)
    assert job.uses == "wait"
    await store.signal_run(run.id, "go")  # its timer is running: too late for it
    assert await complete(store, job, timed_out(job))  # type: ignore[arg-type]
    await drive(store)

    done = await store.get_run(run.id)
    state = await store.run_state(run.id)
    assert [s.name for s in state.signals] == ["go"] and state.signals_taken == frozenset()
    if on_timeout == "succeed":
        assert done.status == "succeeded"
        expected = {"timed_out": True, "value": {"fallback": True}}
        assert state.step("hold").output == expected
    else:
        assert done.status == "failed"
        assert done.error is not None
        assert (done.error.code, done.error.retryable) == ("wait_timeout", False)
        assert state.step("hold").attempt == 1  # not retried
        assert state.step("after").status == "pending"


async def test_a_signal_sent_before_the_wait_is_kept_for_it(store: Store) -> None:
    await register(store, LATE_WAIT)
    run = await start(store, "late_wait")

    await store.signal_run(run.id, "go", 1)
    assert (await store.run_state(run.id)).step("hold").status == "pending"
    await drive(store)

    done = await store.get_run(run.id)
    assert done.status == "succeeded"
    state = await store.run_state(run.id)
    assert state.step("hold").output["payload"] == 1  # type: ignore[index]
    assert await store.queue_depth() == 0


async def test_each_signal_ends_one_wait_only(store: Store) -> None:
    await register(store, TWO_WAITS)
    run = await start(store, "two_waits")

    await store.signal_run(run.id, "go", "one")
    state = await store.run_state(run.id)
    assert state.step("first").output["payload"] == "one"  # type: ignore[index]
    assert state.step("second").status == "scheduled"
    assert (await store.get_run(run.id)).status == "waiting"

    await store.signal_run(run.id, "go", "two")
    state = await store.run_state(run.id)
    assert state.step("second").output["payload"] == "two"  # type: ignore[index]
    assert state.signals_taken == frozenset({0, 1})
    assert (await store.get_run(run.id)).status == "succeeded"


async def test_a_wait_without_timeout_has_no_job(store: Store) -> None:
    await register(store, TWO_WAITS)
    run = await start(store, "two_waits")

    assert await store.queue_depth() == 0
    assert (await store.get_run(run.id)).status == "waiting"


@pytest.mark.parametrize("approved", [True, False])
async def test_an_approval_resolves_or_fails_the_wait(
    store: Store, store_url: str, approved: bool
) -> None:
    await register(store, APPROVAL)
    run = await start(store, "approval")

    await store.signal_run(run.id, "approval", {"approved": approved, "comment": "looks odd"})

    state = await store.run_state(run.id)
    assert await jobs_of(store_url, run.id) == [("review", "wait", "cancelled")] + (
        [("ship", "echo", "queued")] if approved else []
    )
    if approved:
        assert state.step("review").output["approved"] is True  # type: ignore[index]
        await drive(store)
        assert (await store.get_run(run.id)).status == "succeeded"
        return
    review = state.step("review")
    assert review.error == ErrorInfo(
        code="not_approved",
        message="not approved: looks odd",
        retryable=False,
        details={"signal": "approval", "payload": {"approved": False, "comment": "looks odd"}},
    )
    done = await store.get_run(run.id)
    assert done.status == "failed"
    assert done.error is not None and done.error.code == "not_approved"
    assert state.signals_taken == frozenset({0})


async def test_a_retried_run_waits_for_a_new_signal(store: Store) -> None:
    await register(store, APPROVAL)
    run = await start(store, "approval")
    await store.signal_run(run.id, "approval", {"approved": False})
    assert (await store.get_run(run.id)).status == "failed"

    reopened = await store.retry_run(run.id)

    assert reopened.status == "waiting"
    await store.signal_run(run.id, "approval", {"approved": True})
    await drive(store)
    assert (await store.get_run(run.id)).status == "succeeded"


async def test_a_retried_wait_takes_the_signal_that_came_too_late_for_it(store: Store) -> None:
    await register(store, GATE)
    run = await start(store, "gate", {"timeout": "0.3s", "on_timeout": "fail"})
    (job,) = await claim_when_due(store, within=5)
    await store.signal_run(run.id, "go", "late")  # its timer is running: too late for it
    assert await complete(store, job, timed_out(job))  # type: ignore[arg-type]
    assert (await store.get_run(run.id)).status == "failed"

    reopened = await store.retry_run(run.id)

    # No step took the late signal, so it is kept, like any signal no step waited for yet.
    assert reopened.status == "running"
    state = await store.run_state(run.id)
    assert state.step("hold").output["payload"] == "late"  # type: ignore[index]
    assert state.signals_taken == frozenset({0})
    await drive(store)
    assert (await store.get_run(run.id)).status == "succeeded"

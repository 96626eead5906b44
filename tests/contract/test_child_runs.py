"""Child runs: a ``workflow`` step starts a run in the transaction that schedules it (no job, no
worker held), ends with that run, and stops it when the step stops; every store does it the
same way."""

from __future__ import annotations

import asyncio

import pytest

from overture.api.problems import for_error
from overture.core import events as ev
from overture.core.events import ErrorInfo
from overture.errors import RequestInvalid
from overture.serde import loads
from overture.store import Store
from overture.store.records import RunRecord, StartRun

from .conftest import boom, drive, event_types, fail_with, register, start

pytestmark = pytest.mark.asyncio

PARENT = """
name: parent
steps:
  - id: call
    uses: workflow
    with: {workflow: child, input: {n: "${input.n}"}}
  - {id: after, uses: echo, with: {got: "${steps.call.output}"}}
"""

CHILD = """
name: child
input:
  type: object
  properties: {n: {type: integer}}
  required: [n]
steps:
  - {id: work, uses: echo, with: {n: "${input.n}"}}
  - {id: check, uses: check, depends_on: [work]}
output: {n: "${steps.work.output.n}"}
"""

GRANDPARENT = """
name: grandparent
steps:
  - {id: call, uses: workflow, with: {workflow: parent, input: {n: 1}}}
"""

DETACHED = """
name: detached
steps:
  - {id: fire, uses: workflow, with: {workflow: child, input: {n: 5}, wait: false}}
"""

INSTANT = """
name: instant
steps:
  - {id: skipped, uses: echo, when: false}
output: {done: true}
"""

LATER_CALL = """
name: later_call
steps:
  - {id: first, uses: echo}
  - {id: call, uses: workflow, depends_on: [first], with: {workflow: child, input: {n: 3}}}
"""

TIMED = """
name: timed
steps:
  - id: call
    uses: workflow
    with: {workflow: child, input: {n: 1}}
    timeout: 0.2s
    retry: {max_attempts: 1}
"""

TWO_CALLS = """
name: two_calls
steps:
  - {id: a, uses: workflow, with: {workflow: missing}}
  - {id: b, uses: workflow, with: {workflow: child, input: {n: 1}, wait: "${input.wait}"}}
"""

LOOP = """
name: loop
steps:
  - {id: again, uses: workflow, with: {workflow: loop}}
"""


async def family(store: Store) -> None:
    for text in (CHILD, PARENT, GRANDPARENT):
        await register(store, text)


async def child_of(store: Store, run_id: str, step: str = "call") -> RunRecord:
    state = await store.run_state(run_id)
    child = state.step(step).child_run_id
    assert child is not None, state.step(step)
    return await store.get_run(child)


async def test_a_workflow_step_starts_its_child_run_at_once(store: Store) -> None:
    await family(store)
    parent = await start(store, "parent", {"n": 2})

    assert parent.status == "running"
    child = await child_of(store, parent.id)
    assert (child.parent_run_id, child.workflow, child.input) == (parent.id, "child", {"n": 2})
    assert child.idempotency_key is not None
    first = (await store.events(child.id))[0].event
    assert isinstance(first, ev.RunStarted) and first.parent_step == "call"
    assert (await store.run_state(child.id)).parent_step == "call"
    # The parent's step holds no job: the only claimable work is the child's.
    jobs = await store.claim("worker-1", limit=10)
    assert [(j.run_id, j.step_id) for j in jobs] == [(child.id, "work")]


async def test_the_child_output_becomes_the_step_output(store: Store) -> None:
    await family(store)
    parent = await start(store, "parent", {"n": 2})

    ran = await drive(store)

    assert [j.uses for j in ran] == ["echo", "check", "echo"]
    done = await store.get_run(parent.id)
    assert done.status == "succeeded"
    assert done.output == {"after": {"got": {"n": 2}}}
    state = await store.run_state(parent.id)
    assert state.step("call").output == {"n": 2}
    assert (await child_of(store, parent.id)).status == "succeeded"


async def test_a_failed_child_fails_the_step_for_good(store: Store) -> None:
    await family(store)
    parent = await start(store, "parent", {"n": 2})

    await drive(store, {"check": fail_with(boom("nope"))})

    child = await child_of(store, parent.id)
    assert child.status == "failed"
    state = await store.run_state(parent.id)
    error = state.step("call").error
    assert error is not None
    assert (error.code, error.retryable) == ("child_failed", False)
    assert error.details["run_id"] == child.id
    assert error.details["error"]["code"] == "nope"  # type: ignore[index]
    assert child.id in error.message and "nope" in error.message
    assert (await store.get_run(parent.id)).status == "failed"
    assert state.step("call").attempt == 1


async def test_cancelling_a_parent_cancels_its_children_down_the_tree(store: Store) -> None:
    await family(store)
    top = await start(store, "grandparent")
    middle = await child_of(store, top.id)
    bottom = await child_of(store, middle.id)

    cancelled = await store.cancel_run(top.id, reason="changed my mind")

    assert cancelled.status == "cancelled"
    for run, parent in ((middle, top), (bottom, middle)):
        after = await store.get_run(run.id)
        assert after.status == "cancelled", run.workflow
        assert after.error is not None and f"parent run {parent.id}" in after.error.message
    assert (await store.run_state(bottom.id)).step("work").status == "cancelled"
    assert await store.claim("worker-1", limit=10) == []
    assert await store.queue_depth() == 0
    # The parents' steps were stopped first: the children's ends change nothing on them.
    assert (await event_types(store, top.id))[-2:] == ["RunCancelled", "StepCancelled"]


async def test_cancelling_a_child_fails_its_parents_step(store: Store) -> None:
    await family(store)
    parent = await start(store, "parent", {"n": 1})
    child = await child_of(store, parent.id)

    await store.cancel_run(child.id, reason="not needed")

    state = await store.run_state(parent.id)
    error = state.step("call").error
    assert error is not None and (error.code, error.retryable) == ("child_cancelled", False)
    assert (await store.get_run(parent.id)).status == "failed"


async def test_no_caller_can_take_the_key_of_a_child_run(store: Store) -> None:
    await family(store)
    await register(store, LATER_CALL)
    parent = await start(store, "later_call")
    # The key of the child to come is predictable: the parent's id, the step, a small seq.
    for key in [f"overture:child:{parent.id}:call:{seq}" for seq in range(1, 12)]:
        with pytest.raises(RequestInvalid):
            await store.start_run(StartRun(workflow="child", input={"n": 3}, idempotency_key=key))

    await drive(store)

    child = await child_of(store, parent.id)
    assert (await store.run_state(child.id)).parent_step == "call"
    assert (await store.get_run(parent.id)).status == "succeeded"
    with pytest.raises(RequestInvalid):  # nor find the child by its key
        await store.start_run(
            StartRun(workflow="child", input={"n": 3}, idempotency_key=child.idempotency_key)
        )
    assert [r.id for r in (await store.list_runs()).items if r.workflow == "child"] == [child.id]


async def test_a_retried_parent_starts_a_new_child(store: Store) -> None:
    await family(store)
    parent = await start(store, "parent", {"n": 3})
    await drive(store, {"check": fail_with(boom())})
    first = await child_of(store, parent.id)

    await store.retry_run(parent.id)

    second = await child_of(store, parent.id)
    assert second.id != first.id and second.idempotency_key != first.idempotency_key
    await drive(store)
    assert (await store.get_run(parent.id)).status == "succeeded"


@pytest.mark.parametrize(
    ("step_input", "code"),
    [
        ({"workflow": "missing"}, "workflow_not_found"),
        ({"workflow": "child", "input": {"n": "two"}}, "input_invalid"),
        ({"workflow": "child", "version": 9}, "workflow_not_found"),
        ({"workflow": "child", "later": True}, "bad_input"),
    ],
)
async def test_a_child_that_cannot_start_fails_the_step_for_good(
    store: Store, step_input: dict[str, object], code: str
) -> None:
    await register(store, CHILD)
    await register(
        store, 'name: caller\nsteps:\n  - {id: call, uses: workflow, with: "${input}"}\n'
    )

    run = await start(store, "caller", step_input)

    assert run.status == "failed"
    state = await store.run_state(run.id)
    error = state.step("call").error
    assert error is not None and (error.code, error.retryable) == (code, False)
    assert state.step("call").child_run_id is None
    assert (await store.list_runs()).items == [run]


async def test_a_disabled_child_workflow_fails_the_step(store: Store) -> None:
    await family(store)
    await store.set_workflow_disabled("child", True)

    run = await start(store, "parent", {"n": 1})

    error = (await store.run_state(run.id)).step("call").error
    assert error is not None and error.code == "workflow_disabled"
    assert "'child'" in error.message


async def test_a_detached_child_ends_the_step_as_soon_as_it_starts(store: Store) -> None:
    await family(store)
    await register(store, DETACHED)

    run = await start(store, "detached")

    assert run.status == "succeeded"
    child = await child_of(store, run.id, "fire")
    assert run.output == {"fire": {"run_id": child.id, "workflow": "child"}}
    assert child.status == "queued"
    await drive(store)
    assert (await store.get_run(child.id)).status == "succeeded"


async def test_a_child_that_finishes_as_it_starts_ends_the_step_at_once(store: Store) -> None:
    await register(store, INSTANT)
    await register(
        store, "name: caller\nsteps:\n  - {id: call, uses: workflow, with: {workflow: instant}}\n"
    )

    run = await start(store, "caller")

    assert run.status == "succeeded"
    assert run.output == {"call": {"done": True}}


async def test_a_workflow_that_starts_itself_at_once_is_stopped(store: Store) -> None:
    await register(store, LOOP)

    run = await start(store, "loop")

    assert run.status == "failed"
    found = (await store.list_runs(limit=100)).items
    assert 10 < len(found) < 100
    assert {r.status for r in found} == {"failed"}
    codes = set()
    for r in found:
        error = (await store.run_state(r.id)).step("again").error
        assert isinstance(error, ErrorInfo)
        codes.add(error.code)
    assert codes == {"child_depth_exceeded", "child_failed"}


@pytest.mark.parametrize("wait", [True, False])
async def test_a_step_cancelled_by_a_refused_start_starts_no_child(
    store: Store, wait: bool
) -> None:
    await family(store)
    await register(store, TWO_CALLS)

    run = await start(store, "two_calls", {"wait": wait})

    assert run.status == "failed"
    state = await store.run_state(run.id)
    error = state.step("a").error
    assert error is not None and error.code == "workflow_not_found"
    assert (state.step("b").status, state.step("b").child_run_id) == ("cancelled", None)
    assert (await event_types(store, run.id))[-1] == "RunFailed"
    assert (await store.list_runs()).items == [run]
    assert await store.claim("worker-1", limit=10) == []


@pytest.mark.parametrize("key", ["overture:child:run_1:call:2", "overture:mine"])
async def test_callers_cannot_take_a_key_of_the_engine(store: Store, key: str) -> None:
    await family(store)

    with pytest.raises(RequestInvalid) as refused:
        await store.start_run(StartRun(workflow="child", input={"n": 1}, idempotency_key=key))

    assert refused.value.code == "reserved_idempotency_key"
    assert repr(key) in str(refused.value) and "'overture:'" in str(refused.value)
    assert (await store.list_runs()).items == []
    response = for_error(refused.value)
    assert response.status_code == 422
    assert loads(bytes(response.body))["code"] == "reserved_idempotency_key"


async def test_a_child_step_timeout_is_checked_only_when_the_parent_moves(store: Store) -> None:
    await family(store)
    await register(store, TIMED)
    parent = await start(store, "timed")
    child = await child_of(store, parent.id)
    await asyncio.sleep(0.3)

    # No timer: nothing moved the parent, so its step still waits past its timeout.
    assert (await store.run_state(parent.id)).step("call").status == "running"
    await store.signal_run(parent.id, "any name")  # anything that moves the parent checks it

    error = (await store.run_state(parent.id)).step("call").error
    assert error is not None and error.code == "timeout"
    assert (await store.get_run(parent.id)).status == "failed"
    assert (await store.get_run(child.id)).status == "cancelled"

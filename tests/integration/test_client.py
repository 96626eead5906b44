"""``overture.Client`` on both stores: registering workflows, then starting, waiting for,
cancelling, retrying and requeueing runs that in-process workers execute."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from overture.cli.runs import replay_mismatches
from overture.client import Client
from overture.core import events as ev
from overture.core.document import Document
from overture.core.loader import from_document
from overture.core.model import Workflow
from overture.errors import Conflict, InvalidCursor, NonRetryable, NotFound, NotRetryable
from overture.handlers.basic import basic_registry
from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import StepContext
from overture.runtime.worker import Worker
from overture.store import create_store
from overture.store.records import DeadLetter, RunRecord

pytestmark = pytest.mark.asyncio

WAIT = 20.0
"""Seconds a run may take before a test gives up on it (never reached when all is well)."""


def hello(**changes: Any) -> dict[str, Any]:
    """A one-step echo workflow as data; ``changes`` replace its top-level fields."""
    return {
        "name": "hello",
        "input": {"type": "object", "required": ["text"]},
        "steps": [{"id": "say", "uses": "echo", "with": {"text": "${input.text}"}}],
        "output": "${steps.say.output.text}",
        **changes,
    }


def with_step(uses: str, **step_inputs: Any) -> dict[str, Any]:
    """A one-step workflow named after its handler."""
    return {"name": uses, "steps": [{"id": "only", "uses": uses, "with": step_inputs}]}


def workflow(data: dict[str, Any]) -> Workflow:
    return from_document(Document(data=data, positions={}, source=None))


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest_asyncio.fixture
async def client(database_url: str) -> AsyncIterator[Client]:
    async with Client(database_url) as opened:
        yield opened


@asynccontextmanager
async def working(client: Client, registry: HandlerRegistry | None = None) -> AsyncIterator[None]:
    """An in-process worker on the client's store for the duration of the block."""
    worker = Worker(client.store, registry or basic_registry(), poll=0.05)
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop(grace=0)
        await task


def fails_the_first_time() -> HandlerRegistry:
    """The basic handlers and ``once``: its first call in a run fails non-retryably (the step
    goes to the dead-letter queue); later calls succeed with how many calls there were."""
    registry = basic_registry()
    calls: Counter[str] = Counter()

    @registry.handler()
    async def once(ctx: StepContext) -> dict[str, int]:
        calls[ctx.run_id] += 1
        if calls[ctx.run_id] == 1:
            raise NonRetryable("the first call fails", code="first_call")
        return {"calls": calls[ctx.run_id]}

    return registry


async def failed_run(client: Client, registry: HandlerRegistry) -> RunRecord:
    """A run of the ``once`` step, failed by its first attempt."""
    run = await client.start_run(workflow(with_step("once")))
    async with working(client, registry):
        failed = await client.wait(run.id, timeout=WAIT)
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.code == "first_call"
    return failed


async def history(client: Client, run_id: str) -> list[ev.Event]:
    return [stored.event for stored in await client.events(run_id)]


def first(events: list[ev.Event], kind: type[ev.Event]) -> Any:
    return next(e for e in events if isinstance(e, kind))


async def assert_replays(client: Client, run_id: str) -> None:
    """The stored run is what its stored history folds to (``overture runs replay-check``)."""
    record = await client.get_run(run_id)
    assert replay_mismatches(record, await client.events(run_id)) == []


# --- registering workflows ------------------------------------------------------------------------


def write_yaml(directory: Path, data: dict[str, Any]) -> Path:
    path = directory / "hello.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


DEFINITION_FORMS: dict[str, Callable[[Path], Any]] = {
    "path": lambda directory: write_yaml(directory, hello()),
    "path_as_str": lambda directory: str(write_yaml(directory, hello())),
    "mapping": lambda _: hello(),
    "workflow": lambda _: workflow(hello()),
}


@pytest.mark.parametrize("form", DEFINITION_FORMS)
async def test_registers_a_definition_given_as(client: Client, tmp_path: Path, form: str) -> None:
    record = await client.register_workflow(DEFINITION_FORMS[form](tmp_path))
    assert (record.name, record.version) == ("hello", 1)
    assert [step.id for step in record.workflow.steps] == ["say"]
    stored = await client.get_workflow("hello")
    assert (stored.version, stored.digest) == (1, record.digest)


async def test_the_same_definition_again_keeps_its_version(client: Client, tmp_path: Path) -> None:
    records = [await client.register_workflow(make(tmp_path)) for make in DEFINITION_FORMS.values()]
    assert {(r.version, r.digest) for r in records} == {(1, records[0].digest)}
    assert [w.version for w in await client.store.list_workflows()] == [1]


async def test_concurrent_registrations_of_one_definition_make_one_version(
    client: Client,
) -> None:
    records = await asyncio.gather(*(client.register_workflow(hello()) for _ in range(8)))
    assert {r.version for r in records} == {1}
    assert len(await client.store.list_workflows()) == 1


async def test_an_edited_definition_gets_the_next_version_and_earlier_runs_keep_theirs(
    client: Client, tmp_path: Path
) -> None:
    path = write_yaml(tmp_path, hello())
    await client.register_workflow(path)
    before = await client.start_run("hello", {"text": "hi"})

    write_yaml(tmp_path, hello(output={"loud": "${steps.say.output.text}"}))
    edited = await client.register_workflow(path)
    after = await client.start_run("hello", {"text": "hi"})

    assert edited.version == 2
    assert (await client.get_run(before.id)).version == 1
    assert (await client.get_run(after.id)).version == 2
    async with working(client):
        old = await client.wait(before.id, timeout=WAIT)
        new = await client.wait(after.id, timeout=WAIT)
    assert (old.version, old.output) == (1, "hi")
    assert (new.version, new.output) == (2, {"loud": "hi"})


async def test_an_explicit_version_taken_by_another_definition_is_a_conflict(
    client: Client,
) -> None:
    await client.register_workflow(hello(version=1))
    with pytest.raises(Conflict) as raised:
        await client.register_workflow(hello(version=1, output="changed"))
    assert raised.value.code == "workflow_version_conflict"
    assert (await client.get_workflow("hello")).workflow.output == "${steps.say.output.text}"


# --- runs ---------------------------------------------------------------------------------------


async def test_start_and_wait_returns_the_succeeded_run_with_its_output(client: Client) -> None:
    await client.register_workflow(hello())
    async with working(client):
        run = await client.start_run("hello", {"text": "hi"})
        done = await client.wait(run.id, timeout=WAIT)
    assert (done.id, done.status, done.output) == (run.id, "succeeded", "hi")
    assert done.finished_at is not None
    state = await client.run_state(run.id)
    assert state.step("say").output == {"text": "hi"}
    await assert_replays(client, run.id)


async def test_wait_raises_timeout_error_while_no_worker_runs_the_run(client: Client) -> None:
    run = await client.start_run(workflow(hello()), {"text": "hi"})
    with pytest.raises(TimeoutError, match="still queued"):
        await client.wait(run.id, timeout=0.2)
    assert (await client.get_run(run.id)).status == "queued"


async def test_a_delayed_run_starts_no_step_before_its_delay(client: Client) -> None:
    await client.register_workflow(hello())
    async with working(client):
        run = await client.start_run("hello", {"text": "later"}, delay=0.5)
        await asyncio.sleep(0.2)
        early = await history(client, run.id)
        done = await client.wait(run.id, timeout=WAIT)

    assert not any(isinstance(e, ev.StepStarted) for e in early)
    assert done.status == "succeeded"
    events = await history(client, run.id)
    started = first(events, ev.RunStarted)
    step_started = first(events, ev.StepStarted)
    assert step_started.at >= started.at + timedelta(seconds=0.4)


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"delay": -1}, "delay must be >= 0"),
        ({"delay": 1, "run_at": datetime.now(UTC)}, "not both"),
        ({"run_at": datetime.now()}, "timezone-aware"),  # naive on purpose
    ],
)
async def test_a_bad_start_time_is_refused_before_anything_is_stored(
    client: Client, when: dict[str, Any], message: str
) -> None:
    await client.register_workflow(hello())
    with pytest.raises(ValueError, match=message):
        await client.start_run("hello", {"text": "hi"}, **when)
    assert (await client.list_runs()).items == []


async def test_a_repeated_idempotency_key_returns_the_first_run(client: Client) -> None:
    await client.register_workflow(hello())
    first_run = await client.start_run("hello", {"text": "one"}, idempotency_key="order-17")
    again = await client.start_run("hello", {"text": "two"}, idempotency_key="order-17")
    other = await client.start_run("hello", {"text": "one"}, idempotency_key="order-18")
    assert again.id == first_run.id
    assert again.input == {"text": "one"}
    assert other.id != first_run.id
    assert len((await client.list_runs()).items) == 2

    elsewhere = Client(store=client.store, tenant="someone-else")
    await elsewhere.register_workflow(hello())
    theirs = await elsewhere.start_run("hello", {"text": "one"}, idempotency_key="order-17")
    assert theirs.id != first_run.id


async def test_cancel_a_queued_run(client: Client) -> None:
    run = await client.start_run(workflow(hello()), {"text": "hi"})
    cancelled = await client.cancel(run.id, reason="not needed")
    assert cancelled.status == "cancelled"
    assert (await client.wait(run.id, timeout=WAIT)).status == "cancelled"
    assert (await client.run_state(run.id)).step("say").status == "cancelled"
    assert first(await history(client, run.id), ev.RunCancelled).reason == "not needed"
    assert await client.store.queue_depth() == 0
    await assert_replays(client, run.id)


async def test_retry_reruns_the_failed_step_and_the_run_succeeds(client: Client) -> None:
    registry = fails_the_first_time()
    failed = await failed_run(client, registry)

    reopened = await client.retry(failed.id)
    assert reopened.status == "queued"
    async with working(client, registry):
        done = await client.wait(failed.id, timeout=WAIT)

    assert done.status == "succeeded"
    assert done.error is None
    assert (await client.run_state(done.id)).step("only").output == {"calls": 2}
    await assert_replays(client, done.id)


async def test_retry_of_a_cancelled_run_runs_it_to_success(client: Client) -> None:
    run = await client.start_run(workflow(hello()), {"text": "again"})
    await client.cancel(run.id)
    assert (await client.retry(run.id)).status == "queued"
    async with working(client):
        done = await client.wait(run.id, timeout=WAIT)
    assert (done.status, done.output) == ("succeeded", "again")
    await assert_replays(client, run.id)


async def test_retry_of_a_succeeded_run_is_not_retryable(client: Client) -> None:
    run = await client.start_run(workflow(hello()), {"text": "hi"})
    async with working(client):
        await client.wait(run.id, timeout=WAIT)
    with pytest.raises(NotRetryable, match="only failed or cancelled runs can be retried"):
        await client.retry(run.id)
    assert (await client.get_run(run.id)).status == "succeeded"


async def test_requeue_reruns_the_dead_letters_step_and_the_run_succeeds(client: Client) -> None:
    registry = fails_the_first_time()
    failed = await failed_run(client, registry)
    (letter,) = await client.dead_letters()
    assert (letter.run_id, letter.step_id, letter.attempts) == (failed.id, "only", 1)
    assert letter.error.code == "first_call"

    (reopened,) = await client.requeue([letter.id])
    assert (reopened.id, reopened.status) == (failed.id, "queued")
    async with working(client, registry):
        done = await client.wait(failed.id, timeout=WAIT)

    assert done.status == "succeeded"
    assert await client.dead_letters() == []
    (requeued,) = await client.dead_letters(include_requeued=True)
    assert requeued.id == letter.id and requeued.requeued_at is not None
    await assert_replays(client, done.id)


TWO_FAILING = {
    "name": "two_failing",
    "steps": [
        {"id": "a", "uses": "fail", "with": {"code": "a_broke"}},
        {"id": "b", "uses": "fail", "with": {"code": "b_broke"}},
    ],
}


async def failed_twice(client: Client) -> tuple[RunRecord, dict[str, DeadLetter]]:
    """A run whose two independent steps both failed for good (claimed together, so both ran:
    a failure lets running siblings finish), and its dead letters by step."""
    run = await client.start_run(workflow(TWO_FAILING))
    async with working(client):
        failed = await client.wait(run.id, timeout=WAIT)
    letters = {letter.step_id: letter for letter in await client.dead_letters()}
    assert failed.status == "failed" and set(letters) == {"a", "b"}
    return failed, letters


async def reopened_steps(client: Client, run_id: str) -> tuple[str, ...]:
    """The steps the run's last ``RunRetried`` reopened."""
    retried = [e for e in await history(client, run_id) if isinstance(e, ev.RunRetried)]
    return retried[-1].steps


async def test_retry_naming_one_failed_step_reopens_every_failed_step(client: Client) -> None:
    # A run cannot succeed while any step stays failed, so naming one reopens them all.
    failed, _ = await failed_twice(client)
    await client.retry(failed.id, steps=["a"])
    assert sorted(await reopened_steps(client, failed.id)) == ["a", "b"]


async def test_retry_naming_a_step_that_did_not_fail_is_refused(client: Client) -> None:
    failed, _ = await failed_twice(client)
    with pytest.raises(NotRetryable, match="'nope'"):
        await client.retry(failed.id, steps=["nope"])


async def test_requeue_of_one_dead_letter_reopens_the_run_and_settles_its_letters(
    client: Client,
) -> None:
    failed, letters = await failed_twice(client)
    await client.requeue([letters["a"].id])
    assert sorted(await reopened_steps(client, failed.id)) == ["a", "b"]
    assert await client.dead_letters() == []
    assert len(await client.dead_letters(include_requeued=True)) == 2


async def test_requeue_of_every_dead_letter_of_a_run_reopens_every_step(client: Client) -> None:
    failed, letters = await failed_twice(client)
    (reopened,) = await client.requeue([letters["a"].id, letters["b"].id])
    assert reopened.id == failed.id
    assert sorted(await reopened_steps(client, failed.id)) == ["a", "b"]
    assert await client.dead_letters() == []


async def test_another_tenant_cannot_see_or_touch_the_run(client: Client) -> None:
    failed = await failed_run(client, fails_the_first_time())
    (letter,) = await client.dead_letters()
    other = Client(store=client.store, tenant="someone-else")

    for act in (other.get_run, other.run_state, other.events, other.cancel, other.retry):
        with pytest.raises(NotFound):
            await act(failed.id)
    with pytest.raises(NotFound):
        await other.requeue([letter.id])
    with pytest.raises(NotFound):
        await other.start_run("once")
    assert (await other.list_runs()).items == []
    assert await other.dead_letters() == []
    assert (await client.get_run(failed.id)).status == "failed"
    assert (await client.dead_letters()) == [letter]


async def test_list_runs_pages_through_every_run_newest_first(client: Client) -> None:
    await client.register_workflow(hello())
    started = {(await client.start_run("hello", {"text": str(n)})).id for n in range(5)}
    paged: list[RunRecord] = []
    cursor = None
    while True:
        page = await client.list_runs(limit=2, cursor=cursor)
        paged += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    whole = (await client.list_runs(limit=10)).items
    assert [r.id for r in paged] == [r.id for r in whole]
    assert {r.id for r in paged} == started and len(paged) == 5
    assert [r.created_at for r in paged] == sorted((r.created_at for r in paged), reverse=True)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "WzFlMzAwLCJ4Il0",  # base64 of [1e300,"x"]: well-formed, its time out of range
    ],
)
async def test_a_cursor_no_listing_returned_is_invalid_cursor(client: Client, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        await client.list_runs(cursor=cursor)


async def test_a_large_output_round_trips_through_the_artifact_store(
    database_url: str, tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    store = create_store(database_url, artifacts_dir=str(artifacts), artifact_threshold=1024)
    await store.open()
    try:
        client = Client(store=store)
        big: list[Any] = [{"n": n, "text": f"item {n} " * 5} for n in range(200)]
        async with working(client):
            run = await client.start_run(workflow(hello()), {"text": big})
            done = await client.wait(run.id, timeout=WAIT)
        events = await history(client, run.id)
    finally:
        await store.close()

    assert done.status == "succeeded"
    assert done.output == big
    assert first(events, ev.StepSucceeded).output == {"text": big}
    assert list(artifacts.rglob("*.json")), "nothing was offloaded: the test proves nothing"


async def test_circuits_are_read_and_reset_through_the_client(client: Client) -> None:
    down = with_step("fail", code="agent_down", retryable=True)
    down["steps"][0]["circuit"] = {"key": "agent", "failure_threshold": 1, "cooldown": "1h"}
    down["steps"][0]["retry"] = {"max_attempts": 3, "initial": 0.01, "jitter": False}
    await client.register_workflow(workflow(down))
    async with working(client):
        run = await client.start_run("fail")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not [c for c in await client.circuits() if c.status == "open"]:
            assert loop.time() < deadline, "the circuit never opened"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # the retry was due after 0.01 s: it is parked instead
        step = (await client.run_state(run.id)).steps["only"]
        assert (step.status, step.attempt) == ("scheduled", 2), "the retry waits, unspent"
        assert (await client.reset_circuit("agent")).status == "closed"
        with pytest.raises(NotFound):
            await client.reset_circuit("nothing")

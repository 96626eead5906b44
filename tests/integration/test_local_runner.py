"""The in-process runner: real async handlers driven by the pure engine."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from overture import serde
from overture.core import events as ev
from overture.core.model import Workflow
from overture.errors import InputInvalid, NonRetryable, Retry, WorkflowInvalid
from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import StepContext
from overture.runtime.local import LocalRunner
from overture.testing import FakeClock

pytestmark = pytest.mark.asyncio

CANARY = "sk-canary-7d1f0c9e"


def workflow(*steps: dict[str, Any], **extra: Any) -> Workflow:
    return Workflow.model_validate({"name": "wf", "steps": list(steps), **extra})


def runner(registry: HandlerRegistry, **kw: Any) -> tuple[LocalRunner, FakeClock]:
    clock = FakeClock()
    return LocalRunner(registry, clock=clock, sleep=clock.sleep, **kw), clock


async def test_outputs_flow_into_later_inputs() -> None:
    reg = HandlerRegistry()

    @reg.handler("fetch")
    async def fetch(ctx: StepContext, *, user: str) -> dict[str, Any]:
        return {"user": user, "items": [1, 2, 3]}

    @reg.handler("count")
    async def count(ctx: StepContext, *, items: list[int]) -> int:
        return len(items)

    wf = workflow(
        {"id": "fetch", "uses": "fetch", "with": {"user": "${input.user}"}},
        {"id": "count", "uses": "count", "with": {"items": "${steps.fetch.output.items}"}},
        output="${steps.count.output}",
    )
    result = await runner(reg)[0].run(wf, {"user": "ana"})
    assert result.status == "succeeded"
    assert result.output == 3


async def test_ready_steps_run_at_the_same_time() -> None:
    """Two siblings that each wait for the other would deadlock if run one after the other."""
    reg = HandlerRegistry()
    arrived = {"left": asyncio.Event(), "right": asyncio.Event()}

    @reg.handler("meet")
    async def meet(ctx: StepContext, *, me: str, other: str) -> str:
        arrived[me].set()
        await asyncio.wait_for(arrived[other].wait(), timeout=5)
        return me

    wf = workflow(
        {"id": "left", "uses": "meet", "with": {"me": "left", "other": "right"}},
        {"id": "right", "uses": "meet", "with": {"me": "right", "other": "left"}},
    )
    result = await LocalRunner(reg).run(wf)
    assert result.output == {"left": "left", "right": "right"}


async def test_flaky_step_is_retried_with_backoff_on_the_fake_clock() -> None:
    reg = HandlerRegistry()
    keys: list[str] = []

    @reg.handler("flaky")
    async def flaky(ctx: StepContext) -> str:
        keys.append(ctx.idempotency_key)
        if ctx.attempt < 3:
            raise ConnectionError("connection reset")
        return "ok"

    wf = workflow(
        {"id": "f", "uses": "flaky", "retry": {"max_attempts": 5, "initial": "10s", "jitter": 0}}
    )
    run, clock = runner(reg, tenant="acme")
    result = await run.run(wf, run_id="run-1")
    assert result.status == "succeeded"
    assert (clock.now() - result.state.created_at).total_seconds() == 30  # type: ignore[operator]
    assert keys == ["acme:run-1:f"] * 3  # the same key on every attempt
    failures = [e.error for e in result.events if isinstance(e, ev.StepFailed)]
    assert [(f.code, f.message) for f in failures] == [("ConnectionError", "connection reset")] * 2


async def test_retry_delay_from_the_handler_is_honoured() -> None:
    reg = HandlerRegistry()

    @reg.handler("limited")
    async def limited(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            raise Retry("rate limited", delay=42)
        return "done"

    run, clock = runner(reg)
    result = await run.run(workflow({"id": "l", "uses": "limited"}))
    assert result.status == "succeeded"
    assert (clock.now() - result.state.created_at).total_seconds() == 42  # type: ignore[operator]


async def test_non_retryable_error_fails_at_once() -> None:
    reg = HandlerRegistry()
    calls = 0

    @reg.handler("reject")
    async def reject(ctx: StepContext) -> None:
        nonlocal calls
        calls += 1
        raise NonRetryable("invalid card", code="card_declined")

    result = await runner(reg)[0].run(workflow({"id": "r", "uses": "reject"}))
    assert (result.status, calls) == ("failed", 1)
    assert result.state.error is not None and result.state.error.code == "card_declined"


async def test_step_timeout_cancels_the_handler() -> None:
    reg = HandlerRegistry()
    cancelled = asyncio.Event()

    @reg.handler("hang")
    async def hang(ctx: StepContext) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    wf = workflow({"id": "h", "uses": "hang", "timeout": "50ms", "retry": {"max_attempts": 1}})
    result = await LocalRunner(reg).run(wf)
    assert result.status == "failed"
    assert result.state.error is not None and result.state.error.code == "timeout"
    assert cancelled.is_set()


async def test_secret_reaches_the_handler_but_no_event_and_no_error() -> None:
    reg = HandlerRegistry()
    seen: list[str] = []

    @reg.handler("call")
    async def call(ctx: StepContext, *, auth: str) -> dict[str, str]:
        seen.append(auth)
        if ctx.attempt == 1:
            raise RuntimeError(f"server rejected {auth}")
        return {"echo": "${secrets.TOKEN}"}  # data that looks like a template stays data

    wf = workflow(
        {"id": "c", "uses": "call", "with": {"auth": "Bearer ${secrets.TOKEN}"}},
        {"id": "after", "uses": "call", "with": {"auth": "${steps.c.output.echo}"}},
        defaults={"retry": {"initial": 0}},
    )
    result = await runner(reg, secrets={"TOKEN": CANARY})[0].run(wf)
    assert result.status == "succeeded"
    assert seen[:2] == [f"Bearer {CANARY}"] * 2
    assert seen[-1] == "${secrets.TOKEN}"  # never re-parsed as a template
    history = serde.dumps_text([ev.to_data(e) for e in result.events])
    assert CANARY not in history
    assert "server rejected Bearer ***" in history


async def test_missing_secret_fails_without_retrying() -> None:
    reg = HandlerRegistry()

    @reg.handler("call")
    async def call(ctx: StepContext, *, auth: str) -> None:
        raise AssertionError("must not be called")

    wf = workflow({"id": "c", "uses": "call", "with": {"auth": "${secrets.NOPE}"}})
    result = await runner(reg)[0].run(wf)
    assert result.state.error is not None
    assert result.state.error.code == "secret_missing"
    assert len([e for e in result.events if isinstance(e, ev.StepStarted)]) == 1


async def test_compensation_undoes_completed_steps_in_reverse_order() -> None:
    reg = HandlerRegistry()
    log: list[str] = []

    @reg.handler("book")
    async def book(ctx: StepContext, *, what: str) -> dict[str, str]:
        if what == "car":
            raise NonRetryable("no cars left")
        log.append(f"book {what}")
        return {"ref": f"{what}-123"}

    @reg.handler("cancel")
    async def cancel(ctx: StepContext, *, ref: str) -> None:
        log.append(f"cancel {ref}")

    def booking(what: str, after: list[str]) -> dict[str, Any]:
        return {
            "id": what,
            "uses": "book",
            "with": {"what": what},
            "depends_on": after,
            "compensate": {"uses": "cancel", "with": {"ref": f"${{steps.{what}.output.ref}}"}},
        }

    wf = workflow(booking("flight", []), booking("hotel", ["flight"]), booking("car", ["hotel"]))
    result = await runner(reg)[0].run(wf)
    assert result.status == "compensated"
    assert log == ["book flight", "book hotel", "cancel hotel-123", "cancel flight-123"]


async def test_handler_schemas_and_json_outputs_are_enforced() -> None:
    reg = HandlerRegistry()

    @reg.handler("typed", input_schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    async def typed(ctx: StepContext, *, n: Any) -> object:
        return object()

    bad_input = await LocalRunner(reg).run(
        workflow({"id": "t", "uses": "typed", "with": {"n": "x"}})
    )
    assert bad_input.state.error is not None and bad_input.state.error.code == "bad_input"
    bad_output = await LocalRunner(reg).run(
        workflow({"id": "t", "uses": "typed", "with": {"n": 1}})
    )
    assert bad_output.state.error is not None and bad_output.state.error.code == "bad_output"


async def test_run_refuses_input_that_breaks_the_schema() -> None:
    reg = HandlerRegistry()

    @reg.handler("x")
    async def x(ctx: StepContext) -> None:
        return None

    wf = workflow(
        {"id": "a", "uses": "x"},
        input={
            "type": "object",
            "required": ["user_id"],
            "properties": {"user_id": {"type": "string"}},
        },
    )
    with pytest.raises(InputInvalid, match="'user_id' is a required property"):
        await LocalRunner(reg).run(wf, {})
    with pytest.raises(WorkflowInvalid, match="unknown handler 'nope'"):
        await LocalRunner(reg).run(workflow({"id": "a", "uses": "nope"}))
    assert (await LocalRunner(reg).run(wf, {"user_id": "u"})).status == "succeeded"


async def test_listener_sees_every_event_in_order() -> None:
    reg = HandlerRegistry()

    @reg.handler("x")
    async def x(ctx: StepContext) -> int:
        ctx.log("working", items=3)
        return 1

    seen: list[str] = []
    result = await LocalRunner(reg).run(
        workflow({"id": "a", "uses": "x"}), listener=lambda e: seen.append(e.type)
    )
    assert seen == [e.type for e in result.events]
    assert seen == ["RunStarted", "StepScheduled", "StepStarted", "StepSucceeded", "RunSucceeded"]


async def test_handler_logs_are_kept_per_attempt_and_levels_are_checked() -> None:
    reg = HandlerRegistry()
    contexts: list[StepContext] = []

    @reg.handler("x")
    async def x(ctx: StepContext) -> None:
        contexts.append(ctx)
        ctx.log("fetched", level="warning", rows=2)
        ctx.log("oops", level="loud")  # type: ignore[arg-type]

    result = await runner(reg)[0].run(
        workflow({"id": "a", "uses": "x", "retry": {"max_attempts": 1}})
    )
    assert result.state.error is not None
    assert "log level must be one of debug, info, warning, error" in result.state.error.message
    (ctx,) = contexts
    assert [(line.level, line.message, line.fields) for line in ctx.logs] == [
        ("warning", "fetched", {"rows": 2})
    ]

"""The in-process runner with the engine's own steps: sleeps and wait timeouts on its clock,
signals through ``LocalRunner.signal``, child runs of the workflows it was given."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from overture.core import events as ev
from overture.core.loader import parse_workflow
from overture.errors import NotFound
from overture.handlers.basic import basic_registry
from overture.runtime.local import LocalRunner, RunResult
from overture.testing import EPOCH, FakeClock, echo_registry

pytestmark = pytest.mark.asyncio

NAP = parse_workflow("""
name: nap
steps:
  - {id: nap, uses: sleep, with: {duration: 90s}}
  - {id: after, uses: echo, depends_on: [nap]}
""")

GATE = parse_workflow("""
name: gate
steps:
  - id: hold
    uses: wait
    with: {signal: go, timeout: "${input.timeout}", on_timeout: "${input.on_timeout}"}
""")

PARENT = parse_workflow("""
name: parent
steps:
  - {id: call, uses: workflow, with: {workflow: child, input: {n: 4}}}
""")

CHILD = parse_workflow("""
name: child
steps:
  - {id: double, uses: echo, with: {n: "${input.n}"}}
output: "${steps.double.output.n}"
""")


def runner(**options: Any) -> tuple[LocalRunner, FakeClock]:
    clock = FakeClock()
    return LocalRunner(basic_registry(), clock=clock, sleep=clock.sleep, **options), clock


async def test_a_sleep_passes_on_the_runners_clock() -> None:
    local, clock = runner()

    result = await local.run(NAP)

    assert result.status == "succeeded"
    assert clock.now() == EPOCH + timedelta(seconds=90)


async def test_a_dry_run_sleeps_too_whatever_stands_in_for_the_handlers() -> None:
    clock = FakeClock()
    local = LocalRunner(echo_registry({"sleep", "echo"}), clock=clock, sleep=clock.sleep)

    result = await local.run(NAP)

    assert result.state.step("nap").output == {
        "slept_until": (EPOCH + timedelta(seconds=90)).isoformat()
    }


@pytest.mark.parametrize("on_timeout", ["fail", "succeed"])
async def test_a_wait_times_out_on_the_runners_clock(on_timeout: str) -> None:
    local, clock = runner()

    result = await local.run(GATE, {"timeout": "10m", "on_timeout": on_timeout})

    assert clock.now() == EPOCH + timedelta(minutes=10)
    if on_timeout == "fail":
        assert result.status == "failed"
        assert result.state.error is not None and result.state.error.code == "wait_timeout"
    else:
        assert result.output == {"hold": {"timed_out": True, "value": None}}


async def test_a_signal_resumes_a_wait_in_process() -> None:
    local = LocalRunner(basic_registry())
    waiting = asyncio.Event()

    def listen(event: ev.Event) -> None:
        if isinstance(event, ev.StepScheduled) and event.step_id == "hold":
            waiting.set()

    running = asyncio.create_task(
        local.run(GATE, {"timeout": "1h", "on_timeout": "fail"}, run_id="r1", listener=listen)
    )
    await asyncio.wait_for(waiting.wait(), 5)

    await local.signal("r1", "go", {"n": 1})
    result: RunResult = await asyncio.wait_for(running, 5)

    assert result.status == "succeeded"
    assert result.output["hold"]["payload"] == {"n": 1}  # type: ignore[index,call-overload]
    with pytest.raises(NotFound):
        await local.signal("r1", "go")


async def test_a_child_workflow_runs_in_process_when_the_runner_knows_it() -> None:
    local, _ = runner(workflows=[CHILD])

    result = await local.run(PARENT)

    assert result.status == "succeeded"
    assert result.output == {"call": 4}
    assert result.state.step("call").child_run_id is not None


async def test_a_child_workflow_the_runner_does_not_know_fails_clearly() -> None:
    local, _ = runner()

    result = await local.run(PARENT)

    assert result.status == "failed"
    error = result.state.step("call").error
    assert error is not None and error.code == "workflow_not_found" and not error.retryable
    assert "need a store" in error.message

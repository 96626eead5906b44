"""The engine's own steps, decided without I/O: a sleep is due when it ends, a wait at its
deadline unless a signal ends it first; inputs are checked when the step is scheduled."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overture.core import commands as cmd
from overture.core import events as ev
from overture.core.advance import advance
from overture.core.builtin_steps import (
    NEVER,
    ChildSpec,
    WaitSpec,
    due_at,
    parse_child,
    parse_wait,
    sleep_until,
    timeout_outcome,
)
from overture.core.decide import decide
from overture.core.events import ErrorInfo
from overture.core.loader import parse_workflow
from overture.core.model import Workflow
from overture.core.state import RunState, fold
from overture.errors import WorkflowInvalid
from overture.testing import EPOCH

LATER = EPOCH + timedelta(seconds=5)


def workflow(*steps: dict[str, Any]) -> Workflow:
    return Workflow.model_validate({"name": "wf", "steps": list(steps)})


def started(wf: Workflow, input: Any = None) -> list[ev.Event]:
    """The history of a run just started, and what the engine decided at once."""
    first = ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input=input or {})
    return advance(wf, None, [first], EPOCH).events


def signal(name: str, payload: Any = None, at: datetime = LATER) -> ev.SignalReceived:
    return ev.SignalReceived(at=at, name=name, payload=payload)


def then(wf: Workflow, history: list[ev.Event], *incoming: ev.Event) -> list[cmd.Command]:
    """What the engine decides once ``incoming`` is recorded (appended to ``history``)."""
    history += incoming
    commands = decide(wf, fold(history), LATER)
    history += [cmd.to_event(c, LATER) for c in commands]
    return commands


# --- sleep ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "seconds"),
    [
        ({"seconds": 2}, 2.0),
        ({"seconds": 0.25}, 0.25),
        ({"duration": "1h30m"}, 5400.0),
        ({"duration": 3}, 3.0),
        ({"until": "2026-01-01T00:01:00Z"}, 60.0),
        ({"until": "2026-01-01T00:01:00"}, 60.0),  # no offset: UTC
        ({"until": "2025-12-31T00:00:00+00:00"}, 0.0),  # passed already: at once
    ],
)
def test_a_sleep_ends_after_its_duration_or_at_its_time(
    inputs: dict[str, Any], seconds: float
) -> None:
    assert sleep_until(inputs, EPOCH) == EPOCH + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ({}, "one of seconds"),
        ({"seconds": 1, "duration": "1s"}, "got seconds, duration"),
        ({"seconds": "1s"}, "must be a number"),
        ({"seconds": -1}, "negative"),
        ({"duration": "soon"}, "bad duration"),
        ({"duration": "400d"}, "longer than a year"),
        ({"until": 17}, "ISO-8601"),
        ({"until": "next tuesday"}, "ISO-8601"),
        ({"until": "2030-01-01T00:00:00Z"}, "more than a year away"),
        ({"seconds": 1, "unit": "s"}, "does not take 'unit'"),
    ],
)
def test_a_sleep_with_wrong_inputs_says_what_is_wrong(inputs: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        sleep_until(inputs, EPOCH)


def test_a_sleep_step_is_queued_for_when_it_ends() -> None:
    wf = workflow({"id": "nap", "uses": "sleep", "with": {"duration": "${input.d}"}})

    history = started(wf, {"d": "2s"})

    (scheduled,) = [e for e in history if isinstance(e, ev.StepScheduled)]
    assert scheduled.run_at == EPOCH + timedelta(seconds=2)
    assert fold(history).status == "waiting"


def test_a_delayed_run_sleeps_from_its_start() -> None:
    wf = workflow({"id": "nap", "uses": "sleep", "with": {"seconds": 10}})
    start = EPOCH + timedelta(hours=1)
    first = ev.RunStarted(
        at=EPOCH, run_id="r", workflow="wf", version=1, input={}, not_before=start
    )

    t = advance(wf, None, [first], EPOCH)

    assert [job.run_at for job in t.schedule] == [start + timedelta(seconds=10)]


def test_a_sleep_with_wrong_inputs_fails_without_a_job() -> None:
    wf = workflow({"id": "nap", "uses": "sleep", "with": {"seconds": "a while"}})
    first = ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={})

    t = advance(wf, None, [first], EPOCH)

    assert t.schedule == []
    assert t.state.status == "failed"
    assert t.state.step("nap").error == ErrorInfo(
        code="bad_input", message="sleep seconds must be a number, got 'a while'", retryable=False
    )


# --- wait ----------------------------------------------------------------------------------


def test_wait_inputs_have_defaults_and_an_approval_signal() -> None:
    assert parse_wait({"signal": "go"}) == WaitSpec(signal="go")
    assert parse_wait({"approval": True, "timeout": "1m"}) == WaitSpec(
        signal="approval", timeout=60.0, approval=True
    )
    spec = parse_wait({"signal": "s", "on_timeout": "succeed", "default": [1]})
    assert (spec.on_timeout, spec.default) == ("succeed", [1])


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ({}, "needs the name of the signal"),
        ({"signal": ""}, "needs the name of the signal"),
        ({"signal": "s", "on_timeout": "retry"}, "'fail' or 'succeed'"),
        ({"signal": "s", "timeout": "later"}, "bad duration"),
        ({"signal": "s", "approval": "yes"}, "true or false"),
        ({"signal": "s", "timout": "1h"}, "does not take 'timout'"),
    ],
)
def test_a_wait_with_wrong_inputs_says_what_is_wrong(inputs: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_wait(inputs)


def test_a_wait_is_due_at_its_deadline_and_never_without_one() -> None:
    assert due_at("wait", {"signal": "s", "timeout": 30}, EPOCH) == EPOCH + timedelta(seconds=30)
    assert due_at("wait", {"signal": "s"}, EPOCH) == NEVER
    assert due_at("echo", {"anything": 1}, EPOCH) == EPOCH


def test_a_wait_without_timeout_is_scheduled_without_a_job() -> None:
    wf = workflow({"id": "hold", "uses": "wait", "with": {"signal": "go"}})
    first = ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={})

    t = advance(wf, None, [first], EPOCH)

    assert t.schedule == []
    assert t.state.step("hold").status == "scheduled"
    assert t.state.status == "waiting"


def test_the_deadline_outcome_fails_or_succeeds_with_the_default() -> None:
    assert timeout_outcome({"signal": "go", "timeout": 5}) == (
        None,
        ErrorInfo(code="wait_timeout", message="no 'go' signal came within 5s", retryable=False),
    )
    assert timeout_outcome({"signal": "go", "on_timeout": "succeed", "default": 3}) == (
        {"timed_out": True, "value": 3},
        None,
    )


def test_a_signal_ends_the_wait_and_stops_its_timer() -> None:
    wf = workflow(
        {"id": "hold", "uses": "wait", "with": {"signal": "go", "timeout": "1h"}},
        {"id": "next", "uses": "echo", "depends_on": ["hold"]},
    )
    history = started(wf)
    first = fold(history)

    t = advance(wf, first, [signal("go", {"n": 1})], LATER)

    resolved = t.events[1]
    assert resolved == ev.StepSucceeded(
        at=LATER,
        step_id="hold",
        attempt=1,
        output={"signal": "go", "payload": {"n": 1}, "received_at": LATER.isoformat()},
        signal=0,
    )
    assert t.stop == [("hold", False)]
    assert [job.step_id for job in t.schedule] == ["next"]
    assert t.state.signals_taken == frozenset({0})
    assert t.state.step("hold").started_at == LATER


def test_signals_are_kept_until_a_wait_takes_them_one_each() -> None:
    wf = workflow(
        {"id": "a", "uses": "echo"},
        {"id": "w1", "uses": "wait", "depends_on": ["a"], "with": {"signal": "go"}},
        {"id": "w2", "uses": "wait", "depends_on": ["a"], "with": {"signal": "go"}},
        {"id": "other", "uses": "wait", "depends_on": ["a"], "with": {"signal": "stop"}},
    )
    history = started(wf)
    assert then(wf, history, signal("go", 1), signal("go", 2)) == []  # nobody waits yet

    commands = then(
        wf,
        history,
        ev.StepStarted(at=LATER, step_id="a", attempt=1),
        ev.StepSucceeded(at=LATER, step_id="a", attempt=1, output=None),
    )

    ended = [c for c in commands if isinstance(c, cmd.CompleteStep)]
    assert [(c.step_id, c.signal) for c in ended] == [("w1", 0), ("w2", 1)]
    state = fold(history)
    assert state.step("other").status == "scheduled"
    assert then(wf, history, signal("go", 3)) == []  # no one left waiting for "go"
    assert fold(history).signals_taken == frozenset({0, 1})


def test_a_signal_while_the_timer_runs_is_too_late() -> None:
    wf = workflow({"id": "hold", "uses": "wait", "with": {"signal": "go", "timeout": "1s"}})
    history = started(wf)

    assert then(wf, history, ev.StepStarted(at=LATER, step_id="hold", attempt=1)) == []
    assert then(wf, history, signal("go")) == []
    assert fold(history).signals_taken == frozenset()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"approved": False}, "not approved"),
        ({"approved": False, "comment": "too risky"}, "not approved: too risky"),
        ({"approved": "yes"}, "not approved: the 'approval' signal did not say \"approved\": true"),
        (None, "not approved: the 'approval' signal did not say \"approved\": true"),
    ],
)
def test_an_approval_that_is_not_a_yes_fails_the_step_for_good(payload: Any, message: str) -> None:
    wf = workflow({"id": "ok", "uses": "wait", "with": {"approval": True}})
    history = started(wf)

    then(wf, history, signal("approval", payload))

    state = fold(history)
    assert state.status == "failed"
    error = state.step("ok").error
    assert error == ErrorInfo(
        code="not_approved",
        message=message,
        retryable=False,
        details={"signal": "approval", "payload": payload},
    )
    assert state.signals_taken == frozenset({0})


def test_an_approval_yes_succeeds() -> None:
    wf = workflow({"id": "ok", "uses": "wait", "with": {"approval": True}})
    history = started(wf)

    then(wf, history, signal("approval", {"approved": True, "by": "ana"}))

    state = fold(history)
    assert state.status == "succeeded"
    assert state.step("ok").output["approved"] is True  # type: ignore[index]


@given(st.lists(st.sampled_from(["go", "stop", "other"]), max_size=12))
def test_no_signal_is_ever_taken_twice(names: list[str]) -> None:
    wf = workflow(
        *({"id": f"w{i}", "uses": "wait", "with": {"signal": n}} for i, n in enumerate(["go"] * 3)),
        {"id": "s", "uses": "wait", "with": {"signal": "stop"}},
    )
    history = started(wf)
    for name in names:
        then(wf, history, signal(name))
    state: RunState = fold(history)
    taken = [e.signal for e in history if isinstance(e, ev.StepSucceeded)]
    assert len(taken) == len(set(taken)) == len(state.signals_taken)
    assert len(taken) == min(names.count("go"), 3) + min(names.count("stop"), 1)


# --- workflow ------------------------------------------------------------------------------


def test_child_inputs_are_checked() -> None:
    assert parse_child({"workflow": "w"}) == ChildSpec(workflow="w", input={})
    assert parse_child({"workflow": "w", "version": 2, "input": {"a": 1}, "wait": False}) == (
        ChildSpec(workflow="w", version=2, input={"a": 1}, wait=False)
    )
    for wrong, says in (
        ({}, "needs the name of the workflow"),
        ({"workflow": 3}, "needs the name of the workflow"),
        ({"workflow": "w", "version": 0}, "whole number from 1"),
        ({"workflow": "w", "input": []}, "must be a mapping"),
    ):
        with pytest.raises(ValueError, match=says):
            parse_child(wrong)


def test_a_workflow_step_has_no_job_but_a_child_to_start() -> None:
    wf = workflow({"id": "call", "uses": "workflow", "with": {"workflow": "child"}})
    first = ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={})

    t = advance(wf, None, [first], EPOCH)

    assert t.schedule == []
    assert [job.step_id for job in t.children] == ["call"]


# --- as compensation -----------------------------------------------------------------------


@pytest.mark.parametrize("uses", ["sleep", "wait", "workflow"])
def test_an_engine_step_cannot_be_a_compensation(uses: str) -> None:
    text = f"""\
name: undo
steps:
  - id: book
    uses: echo
  - id: charge
    uses: echo
    compensate:
      uses: {uses}
      with: {{}}
"""
    with pytest.raises(WorkflowInvalid) as raised:
        parse_workflow(text, source="undo.yaml")

    (problem,) = raised.value.problems
    assert (problem.code, problem.step, problem.line) == ("unsupported_compensation", "charge", 8)
    assert problem.path == ("steps", 1, "compensate", "uses")
    assert f"{uses!r} cannot undo a step" in problem.message
    # As a step it is fine.
    parse_workflow(text.replace(f"uses: {uses}", "uses: echo"))

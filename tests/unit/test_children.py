"""Child runs, decided without I/O: which to start, what the parent records when they start or
end, and which to cancel when their step stops."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from overture.core import children
from overture.core import events as ev
from overture.core.advance import Transition, advance
from overture.core.children import ChildRun
from overture.core.events import ErrorInfo
from overture.core.model import Workflow
from overture.core.state import RunState, fold
from overture.errors import Conflict, InputInvalid, NotFound, RequestInvalid
from overture.testing import EPOCH

LATER = EPOCH + timedelta(seconds=1)
PARENT = Workflow.model_validate(
    {
        "name": "parent",
        "steps": [
            {"id": "call", "uses": "workflow", "with": {"workflow": "kid", "input": {"n": 1}}},
            {"id": "after", "uses": "echo", "depends_on": ["call"]},
        ],
    }
)
BOOM = ErrorInfo(code="boom", message="it broke", retryable=False)


def start_parent(**run: Any) -> Transition:
    first = ev.RunStarted(
        at=EPOCH, run_id="p", workflow="parent", version=1, input={}, tenant="acme", **run
    )
    return advance(PARENT, None, [first], EPOCH)


def parent_waiting(child: str = "c1") -> RunState:
    """The parent once its step started the child run ``child``."""
    t = start_parent()
    (start,) = children.starts(t)
    kid = ChildRun(run_id=child, workflow="kid", status="queued")
    return fold(children.started(start, kid, EPOCH), t.state)


def test_a_scheduled_workflow_step_asks_for_one_child_with_a_stable_key() -> None:
    t = start_parent(priority=3, correlation_id="order-9")

    (start,) = children.starts(t)

    assert (start.step_id, start.attempt, start.run_at) == ("call", 1, None)
    assert start.spec is not None and start.spec.workflow == "kid"
    assert start.spec.input == {"n": 1}
    assert start.key == "overture:child:p:call:2"  # StepScheduled is the run's second event
    assert start.parent.tenant == "acme" and start.parent.correlation_id == "order-9"
    assert children.starts(t) == [start]  # the same transition, the same key


def test_a_delayed_parent_starts_its_child_late_too() -> None:
    later = EPOCH + timedelta(minutes=5)

    (start,) = children.starts(start_parent(not_before=later))

    assert start.run_at == later


def test_the_parent_records_the_child_it_started() -> None:
    state = parent_waiting("c1")

    call = state.step("call")
    assert (call.status, call.child_run_id) == ("running", "c1")
    assert state.status == "running"


def test_a_detached_child_ends_the_step_with_its_id() -> None:
    wf = Workflow.model_validate(
        {
            "name": "p",
            "steps": [{"id": "go", "uses": "workflow", "with": {"workflow": "k", "wait": False}}],
        }
    )
    first = ev.RunStarted(at=EPOCH, run_id="p", workflow="p", version=1, input={})
    (start,) = children.starts(advance(wf, None, [first], EPOCH))

    events = children.started(start, ChildRun(run_id="c", workflow="k", status="queued"), EPOCH)

    assert [e.type for e in events] == ["StepStarted", "StepSucceeded"]
    assert events[1].output == {"run_id": "c", "workflow": "k"}  # type: ignore[attr-defined]


def test_a_child_that_already_finished_ends_the_step_at_once() -> None:
    (start,) = children.starts(start_parent())
    done = ChildRun(run_id="c", workflow="kid", status="succeeded", output={"ok": 1})

    events = children.started(start, done, EPOCH)

    assert [e.type for e in events] == ["StepStarted", "StepSucceeded"]


def test_a_finished_child_ends_the_step_that_waits_for_it() -> None:
    state = parent_waiting("c1")

    ok = children.ended(
        state, "call", ChildRun(run_id="c1", workflow="kid", status="succeeded", output=7), LATER
    )
    failed = children.ended(
        state, "call", ChildRun(run_id="c1", workflow="kid", status="failed", error=BOOM), LATER
    )
    stopped = children.ended(
        state,
        "call",
        ChildRun(
            run_id="c1",
            workflow="kid",
            status="cancelled",
            error=ErrorInfo(code="cancelled", message="by hand", retryable=False),
        ),
        LATER,
    )

    assert ok == [ev.StepSucceeded(at=LATER, step_id="call", attempt=1, output=7)]
    (failure,) = failed
    assert isinstance(failure, ev.StepFailed)
    assert failure.error.code == "child_failed" and not failure.error.retryable
    assert failure.error.message == "child run c1 failed: it broke"
    assert failure.error.details["run_id"] == "c1"
    assert failure.error.details["error"] == {
        "code": "boom",
        "message": "it broke",
        "retryable": False,
        "retry_after": None,
        "details": {},
    }
    (cancelled,) = stopped
    assert isinstance(cancelled, ev.StepFailed)
    assert cancelled.error.code == "child_cancelled"
    assert cancelled.error.message == "child run c1 was cancelled: by hand"


def test_a_child_the_step_no_longer_waits_for_changes_nothing() -> None:
    state = parent_waiting("c1")
    other = ChildRun(run_id="c0", workflow="kid", status="succeeded")
    cancelled = fold(
        [ev.RunCancelled(at=LATER), ev.StepCancelled(at=LATER, step_id="call", reason="x")], state
    )
    mine = ChildRun(run_id="c1", workflow="kid", status="succeeded")

    assert children.ended(state, "call", other, LATER) == []
    assert children.ended(cancelled, "call", mine, LATER) == []


def test_a_stopped_workflow_step_cancels_its_child() -> None:
    state = parent_waiting("c1")

    t = advance(PARENT, state, [ev.RunCancelled(at=LATER, reason="not now")], LATER)

    assert t.stop == [("call", False)]
    assert t.orphans == [("c1", "parent run p stopped step 'call': run cancelled")]
    incoming = children.stopping("why", LATER)
    assert incoming(
        fold([ev.RunStarted(at=EPOCH, run_id="c1", workflow="kid", version=1, input={})])
    ) == [ev.RunCancelled(at=LATER, reason="why")]
    assert incoming(t.state) == []  # a child that ended already is left as it is


def test_a_child_run_that_ends_names_its_parent_once() -> None:
    first = ev.RunStarted(
        at=EPOCH,
        run_id="c1",
        workflow="parent",
        version=1,
        input={},
        parent_run_id="p",
        parent_step="call",
    )
    born = advance(PARENT, None, [first], EPOCH)
    ended = advance(PARENT, born.state, [ev.RunCancelled(at=LATER)], LATER)
    after = advance(PARENT, ended.state, [ev.SignalReceived(at=LATER, name="x")], LATER)

    assert children.parent_of(born) is None
    assert children.parent_of(ended) == ("p", "call")
    assert children.parent_of(after) is None
    assert ended.state.parent_step == "call"


def test_refusals_say_why_the_child_did_not_start() -> None:
    (start,) = children.starts(start_parent())

    missing = children.refused(start, NotFound("workflow", "kid"))
    disabled = children.refused(
        start, Conflict("workflow 'kid' is disabled", code="workflow_disabled")
    )
    invalid = children.refused(start, InputInvalid("kid", ["n: 'x' is not an integer"]))

    assert missing == ErrorInfo(
        code="workflow_not_found",
        message="could not start a run of workflow 'kid': no such workflow is registered",
        retryable=False,
        details={"workflow": "kid"},
    )
    assert disabled.code == "workflow_disabled"
    assert (invalid.code, invalid.message) == (
        "input_invalid",
        "could not start a run of workflow 'kid': n: 'x' is not an integer",
    )
    assert children.cannot_start(start, 0) is None
    too_deep = children.cannot_start(start, children.MAX_DEPTH)
    assert too_deep is not None and too_deep.code == "child_depth_exceeded"
    (failed,) = children.not_started(start, missing, EPOCH)
    assert fold([failed], start.parent).step("call").status == "failed"


def test_a_workflow_step_past_its_own_timeout_stops_its_child_and_starts_another() -> None:
    wf = Workflow.model_validate(
        {
            "name": "parent",
            "steps": [
                {
                    "id": "call",
                    "uses": "workflow",
                    "timeout": "10s",
                    "retry": {"max_attempts": 2, "initial": 1, "jitter": 0},
                    "with": {"workflow": "kid"},
                },
                {"id": "other", "uses": "echo"},
            ],
        }
    )
    first = ev.RunStarted(at=EPOCH, run_id="p", workflow="parent", version=1, input={})
    t = advance(wf, None, [first], EPOCH)
    (start,) = children.starts(t)
    state = fold(
        children.started(start, ChildRun(run_id="c1", workflow="kid", status="running"), EPOCH),
        t.state,
    )
    late = EPOCH + timedelta(seconds=11)

    moved = advance(wf, state, [ev.StepStarted(at=late, step_id="other", attempt=1)], late)

    assert moved.orphans == [("c1", "parent run p stopped step 'call': did not finish within 10s")]
    assert [job.step_id for job in moved.children] == ["call"]  # the retry: a new child
    assert moved.state.step("call").child_run_id is None


def test_the_default_timeout_of_handlers_does_not_bound_a_child_run() -> None:
    wf = Workflow.model_validate(
        {
            "name": "parent",
            "defaults": {"timeout": "10s"},
            "steps": [
                {"id": "call", "uses": "workflow", "with": {"workflow": "kid"}},
                {"id": "other", "uses": "echo"},
            ],
        }
    )
    first = ev.RunStarted(at=EPOCH, run_id="p", workflow="parent", version=1, input={})
    t = advance(wf, None, [first], EPOCH)
    (start,) = children.starts(t)
    state = fold(
        children.started(start, ChildRun(run_id="c1", workflow="kid", status="running"), EPOCH),
        t.state,
    )
    late = EPOCH + timedelta(hours=1)

    moved = advance(wf, state, [ev.StepStarted(at=late, step_id="other", attempt=1)], late)

    assert moved.orphans == [] and moved.stop == []
    assert moved.state.step("call").status == "running"


def test_a_start_is_skipped_once_its_parent_no_longer_waits_for_it() -> None:
    t = start_parent()
    (start,) = children.starts(t)
    cancel = ev.StepCancelled(at=EPOCH, step_id="call", reason="step 'other' failed")
    retried = ev.StepRetryScheduled(at=EPOCH, step_id="call", attempt=2, run_at=EPOCH, delay=0)

    assert children.still_due(start, t.state)
    assert not children.still_due(start, fold([cancel], t.state))
    assert not children.still_due(start, fold([ev.RunCancelled(at=EPOCH, reason="no")], t.state))
    assert not children.still_due(start, parent_waiting())  # already started
    assert not children.still_due(start, fold([retried], t.state))  # another attempt


def test_only_the_engine_gives_keys_in_its_namespace() -> None:
    for key in (None, "order-17", "event:acme:e1:wf", "schedule:acme:s:t", "Overture:x"):
        children.check_key(key)
    with pytest.raises(RequestInvalid, match="reserved") as refused:
        children.check_key("overture:child:p:call:2")
    assert refused.value.code == "reserved_idempotency_key"

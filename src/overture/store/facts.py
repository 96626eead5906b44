"""The events a store records for what happens outside the engine, built one way for both."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from overture.core import events as ev
from overture.core.children import ChildRun, ChildStart
from overture.core.events import ErrorInfo
from overture.core.model import Workflow
from overture.core.state import RunState
from overture.serde import JSON
from overture.store.records import RunRecord, StartRun
from overture.telemetry import tracecontext


def given(*events: ev.Event) -> Callable[[RunState], list[ev.Event]]:
    """Incoming events that do not depend on the run's state."""
    return lambda _: list(events)


def run_started(
    request: StartRun, workflow: Workflow, data: JSON, run_id: str, at: datetime
) -> ev.RunStarted:
    trace, parent_span = tracecontext.run_context(request.traceparent)
    return ev.RunStarted(
        at=at,
        run_id=run_id,
        workflow=workflow.name,
        version=workflow.version,
        input=data,
        tenant=request.tenant,
        priority=request.priority,
        correlation_id=request.correlation_id,
        idempotency_key=request.idempotency_key,
        parent_run_id=request.parent_run_id,
        not_before=request.run_at,
        parent_step=request.parent_step,
        traceparent=trace.header(),
        parent_span_id=parent_span,
    )


def reopened_trace(state: RunState) -> dict[str, str | None]:
    """A reopened run's span: new in the run's trace, a child of the run's span so far (span
    ids are unique in a trace, and the first span was exported when the run ended)."""
    current = tracecontext.parse_traceparent(state.traceparent)
    if current is None:
        return {"traceparent": None, "parent_span_id": None}
    return {"traceparent": current.child().header(), "parent_span_id": current.span_id}


def child_request(start: ChildStart) -> StartRun:
    """The start of a ``workflow`` step's child run: the parent's tenant, priority and
    correlation id, and a key that finds the child again."""
    assert start.spec is not None
    parent = start.parent
    return StartRun(
        workflow=start.spec.workflow,
        input=start.spec.input,
        version=start.spec.version,
        tenant=parent.tenant,
        idempotency_key=start.key,
        priority=parent.priority,
        correlation_id=parent.correlation_id,
        parent_run_id=parent.run_id,
        parent_step=start.step_id,
        run_at=start.run_at,
        traceparent=parent.traceparent,  # the child's run span is a child of its parent's
    )


def child_run(record: RunRecord) -> ChildRun:
    """A child run as the step that started it sees it."""
    return ChildRun(
        run_id=record.id,
        workflow=record.workflow,
        status=record.status,
        output=record.output,
        error=record.error,
    )


class Ended(Protocol):
    """How an attempt ended: a worker's ``Completion`` or the local runner's ``Outcome``."""

    @property
    def output(self) -> JSON: ...

    @property
    def error(self) -> ErrorInfo | None: ...


def attempt_ended(
    done: Ended, step_id: str, attempt: int, compensation: bool, at: datetime
) -> ev.StepSucceeded | ev.StepFailed:
    """What a worker's completion records: the output, or the error."""
    if done.error is None:
        return ev.StepSucceeded(
            at=at, step_id=step_id, attempt=attempt, output=done.output, compensation=compensation
        )
    return ev.StepFailed(
        at=at, step_id=step_id, attempt=attempt, error=done.error, compensation=compensation
    )


def attempt_released(
    step_id: str, attempt: int, compensation: bool, at: datetime
) -> ev.StepRetryScheduled:
    """A job given back unrun (graceful shutdown): queued again at once, no budget spent."""
    return ev.StepRetryScheduled(
        at=at,
        step_id=step_id,
        attempt=attempt,
        run_at=at,
        delay=0.0,
        reason="released",
        compensation=compensation,
    )

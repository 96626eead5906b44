"""A run's state, derived from its history: ``fold(events) -> RunState``.

``apply`` is total: it never raises for events in an order the engine can produce, so replaying
a stored history always yields the state the engine saw when it wrote that history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

from overture.core import events as ev
from overture.core.events import ErrorInfo
from overture.serde import JSON

StepStatus = Literal[
    "pending", "scheduled", "running", "succeeded", "failed", "skipped", "cancelled"
]
RunStatus = Literal[
    "queued",
    "running",
    "waiting",
    "succeeded",
    "failed",
    "cancelled",
    "compensating",
    "compensated",
]

TERMINAL_RUN: frozenset[RunStatus] = frozenset({"succeeded", "failed", "cancelled", "compensated"})
RUN_ENDINGS: frozenset[type[ev.Event]] = frozenset(
    {
        ev.RunSucceeded,
        ev.RunFailed,
        ev.RunCancelled,
        ev.CompensationSucceeded,
        ev.CompensationFailed,
    }
)
"""The events that end a run (in a ``TERMINAL_RUN`` status): a run that compensated ends with
its compensation's event, never ``RunFailed``."""
ACTIVE_STEP: frozenset[StepStatus] = frozenset({"scheduled", "running"})


@dataclass(frozen=True, kw_only=True, slots=True)
class StepState:
    """Where one step (or one compensation action) stands."""

    id: str
    status: StepStatus = "pending"
    attempt: int = 0
    """Number of the current or last attempt; 0 before the first is scheduled."""
    crashes: int = 0
    """Times a worker died while running this step (the crash budget, apart from attempts)."""
    input: JSON = None
    output: JSON = None
    error: ErrorInfo | None = None
    reason: str | None = None
    """Why the step was skipped or cancelled."""
    run_at: datetime | None = None
    """When the queued attempt may start (later than ``scheduled_at`` while backing off)."""
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    child_run_id: str | None = None
    """A ``workflow`` step: the child run of its current (or last started) attempt."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunState:
    """Where a run stands, as far as its history says."""

    run_id: str
    workflow: str
    version: int
    input: JSON
    tenant: str = "default"
    priority: int | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    parent_step: str | None = None
    """A child run: the step of ``parent_run_id`` that waits for it."""
    not_before: datetime | None = None
    """A delayed run's start time: no step is queued to start earlier."""
    traceparent: str | None = None
    """The run's own span context (W3C ``traceparent``): its trace, and its span's id."""
    parent_span_id: str | None = None
    """The span of whoever started the run (an inbound ``traceparent``), if any."""
    status: RunStatus = "queued"
    steps: Mapping[str, StepState] = field(default_factory=lambda: MappingProxyType({}))
    completed: tuple[str, ...] = ()
    """Steps that succeeded, in the order they did: compensation runs in reverse."""
    compensation_plan: tuple[str, ...] = ()
    compensations: Mapping[str, StepState] = field(default_factory=lambda: MappingProxyType({}))
    signals: tuple[ev.SignalReceived, ...] = ()
    signals_taken: frozenset[int] = frozenset()
    """Indexes into ``signals`` of those a ``wait`` step consumed: each ends one step at most."""
    output: JSON = None
    error: ErrorInfo | None = None
    failed_step: str | None = None
    created_at: datetime | None = None
    reopened_at: datetime | None = None
    """When the run was last reopened (``RunRetried``): where its current span starts."""
    finished_at: datetime | None = None
    events: int = 0
    """How many events were folded into this state."""

    def step(self, step_id: str) -> StepState:
        """The state of a step; a step with no events yet is ``pending``."""
        return self.steps.get(step_id) or StepState(id=step_id)

    def compensation(self, step_id: str) -> StepState:
        """The state of a step's compensation action."""
        return self.compensations.get(step_id) or StepState(id=step_id)

    @property
    def finished(self) -> bool:
        """True once the run reached a status it never leaves."""
        return self.status in TERMINAL_RUN


def fold(events: Iterable[ev.Event], state: RunState | None = None) -> RunState:
    """The state after ``events``, starting from ``state`` (or from nothing)."""
    for event in events:
        state = apply(state, event)
    if state is None:
        raise ValueError("a run's history starts with RunStarted; no events were given")
    return state


def apply(state: RunState | None, event: ev.Event) -> RunState:
    """The state after one more event."""
    if state is None:
        if not isinstance(event, ev.RunStarted):
            raise ValueError(f"a run's history starts with RunStarted, not {event.type}")
        return RunState(
            run_id=event.run_id,
            workflow=event.workflow,
            version=event.version,
            input=event.input,
            tenant=event.tenant,
            priority=event.priority,
            correlation_id=event.correlation_id,
            idempotency_key=event.idempotency_key,
            parent_run_id=event.parent_run_id,
            parent_step=event.parent_step,
            not_before=event.not_before,
            traceparent=event.traceparent,
            parent_span_id=event.parent_span_id,
            created_at=event.at,
            events=1,
        )
    changes = _run_changes(state, event) | _step_changes(state, event)
    status = changes.get("status", state.status)
    if status not in TERMINAL_RUN and status != "compensating":
        changes["status"] = _status_from_steps(changes.get("steps", state.steps), state.not_before)
    changes["events"] = state.events + 1
    # One replace per event: it is the most expensive thing fold does.
    return dataclasses.replace(state, **changes)


def _run_changes(state: RunState, event: ev.Event) -> dict[str, Any]:
    match event:
        case ev.RunSucceeded(output=output):
            return {"status": "succeeded", "output": output, "finished_at": event.at}
        case ev.RunFailed(error=error, failed_step=failed):
            return {
                "status": "failed",
                "error": error,
                "failed_step": failed,
                "finished_at": event.at,
            }
        case ev.RunCancelled(reason=reason):
            error = ErrorInfo(code="cancelled", message=reason, retryable=False)
            return {"status": "cancelled", "error": error, "finished_at": event.at}
        case ev.CompensationStarted(steps=plan, error=error, failed_step=failed):
            return {
                "status": "compensating",
                "compensation_plan": plan,
                "error": error,
                "failed_step": failed,
            }
        case ev.CompensationSucceeded():
            return {"status": "compensated", "finished_at": event.at}
        case ev.CompensationFailed(error=error):
            return {"status": "failed", "error": error, "finished_at": event.at}
        case ev.SignalReceived():
            return {"signals": (*state.signals, event)}
        case ev.StepSucceeded(signal=int(index)) | ev.StepFailed(signal=int(index)):
            return {"signals_taken": state.signals_taken | {index}}
        case ev.RunRetried(steps=reopened):
            # The reopened steps become pending again, so the engine schedules them afresh.
            steps = {sid: s for sid, s in state.steps.items() if sid not in reopened}
            changes: dict[str, Any] = {
                "status": "queued",
                "steps": MappingProxyType(steps),
                "output": None,
                "error": None,
                "failed_step": None,
                "finished_at": None,
                "reopened_at": event.at,
            }
            if event.traceparent is not None:
                changes["traceparent"] = event.traceparent
                changes["parent_span_id"] = event.parent_span_id
            return changes
    return {}


def _step_changes(state: RunState, event: ev.Event) -> dict[str, Any]:
    step_id = getattr(event, "step_id", None)
    if step_id is None or isinstance(event, ev.PlanGenerated | ev.PlanCacheHit | ev.PlanCacheMiss):
        return {}
    compensation = bool(getattr(event, "compensation", False))
    table = state.compensations if compensation else state.steps
    before = table.get(step_id) or StepState(id=step_id)
    updated = MappingProxyType({**table, step_id: _next_step_state(before, event)})
    if compensation:
        return {"compensations": updated}
    if isinstance(event, ev.StepSucceeded):
        return {"steps": updated, "completed": (*state.completed, step_id)}
    return {"steps": updated}


def _next_step_state(step: StepState, event: ev.Event) -> StepState:
    replace = dataclasses.replace
    match event:
        case ev.StepScheduled(attempt=attempt, input=data, run_at=run_at):
            return replace(
                step,
                status="scheduled",
                attempt=attempt,
                input=data,
                run_at=run_at,
                scheduled_at=event.at,
                error=None,
                child_run_id=None,
            )
        case ev.StepRetryScheduled(attempt=attempt, run_at=run_at):
            return replace(
                step, status="scheduled", attempt=attempt, run_at=run_at, child_run_id=None
            )
        case ev.StepStarted(attempt=attempt, child_run_id=child):
            return replace(
                step, status="running", attempt=attempt, started_at=event.at, child_run_id=child
            )
        case ev.StepSucceeded(output=output, signal=signal):
            return replace(
                step,
                status="succeeded",
                output=output,
                error=None,
                started_at=_started(step, signal, event.at),
                finished_at=event.at,
            )
        case ev.StepFailed(error=error, attempt=attempt, signal=signal):
            started = _started(step, signal, event.at)
            return replace(
                step,
                status="failed",
                attempt=attempt,
                error=error,
                started_at=started,
                finished_at=event.at,
            )
        case ev.StepLeaseExpired():
            lost = ErrorInfo(
                code="lease_expired",
                message="the worker running this step stopped heartbeating",
                retryable=True,
            )
            return replace(
                step, status="failed", error=lost, crashes=step.crashes + 1, finished_at=event.at
            )
        case ev.StepSkipped(reason=reason):
            return replace(step, status="skipped", reason=reason, finished_at=event.at)
        case ev.StepCancelled(reason=reason):
            return replace(step, status="cancelled", reason=reason, finished_at=event.at)
    return step  # StepHeartbeat changes nothing a decision depends on


def _started(step: StepState, signal: int | None, at: datetime) -> datetime | None:
    """When the step started: a wait ended by a signal never ran, so it started as it ended."""
    return step.started_at if signal is None else step.started_at or at


def _status_from_steps(steps: Mapping[str, StepState], not_before: datetime | None) -> RunStatus:
    """The status of a run that is neither finished nor compensating, from its steps."""
    values = steps.values()
    if any(s.status == "running" for s in values):
        return "running"
    queued = [s for s in values if s.status == "scheduled"]
    # Backing off between attempts, sleeping, waiting for a signal: waiting, not working. A
    # delayed run's first steps are queued for its start time, not waiting: it has not begun.
    if queued and all(_held_back(s, not_before) for s in queued):
        return "waiting"
    if not any(s.started_at for s in values):
        return "queued"
    return "running"


def _held_back(s: StepState, not_before: datetime | None) -> bool:
    """A queued attempt that is due later than it was queued, for a reason of its own."""
    if s.run_at is None or s.scheduled_at is None or s.run_at <= s.scheduled_at:
        return False
    return not_before is None or s.run_at > not_before

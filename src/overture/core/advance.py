"""One durable state change of a run, computed without I/O.

A store records what happened to a run (a step finished, a lease expired, the run was cancelled)
and must then persist, in the same transaction, everything the engine decides in consequence.
``advance`` computes that: the events to append (the incoming ones first), the attempts to queue,
the attempts to stop, and the steps that failed for good (the dead-letter queue). Both stores
call it, so SQLite and PostgreSQL runs move through exactly the same states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from overture.core import commands as cmd
from overture.core import events as ev
from overture.core.builtin_steps import NEVER, WORKFLOW
from overture.core.decide import SKIPPED_BY_DEPENDENCY, decide
from overture.core.model import Workflow
from overture.core.state import RunState, StepState, apply
from overture.errors import NotRetryable

StepKey = tuple[str, bool]
"""(step id, is compensation): a run has at most one queued or running attempt per key."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Transition:
    """What to persist for one state change of one run."""

    state: RunState
    """The run's state after every event below."""
    events: list[ev.Event]
    """The incoming events, then the events of the engine's commands, in order."""
    schedule: list[cmd.Job]
    """Attempts to queue."""
    stop: list[StepKey]
    """Steps whose queued or running attempt must end (cancelled, or failed by the engine)."""
    dead: list[tuple[StepKey, StepState]]
    """Steps that failed in this transition and will not be retried: the dead-letter queue."""
    children: list[cmd.Job] = field(default_factory=list)
    """Attempts of ``workflow`` steps: the store starts a child run for each (no job)."""
    orphans: list[tuple[str, str]] = field(default_factory=list)
    """``(child run id, why)`` of the child runs whose step this transition stopped."""
    workflow: Workflow | None = None
    """The definition the run follows (None when nothing changed): what observers of the
    transition look steps up in (a dead step's handler)."""

    def handler_of(self, step_id: str, compensation: bool = False) -> str | None:
        """The handler of a step of this run (or of its compensation), if it has one."""
        if self.workflow is None:
            return None
        step = self.workflow.step(step_id)
        if compensation:
            return None if step.compensate is None else step.compensate.uses
        return step.uses


def advance(
    workflow: Workflow,
    state: RunState | None,
    incoming: Sequence[ev.Event],
    now: datetime,
    *,
    decide_next: bool = True,
) -> Transition:
    """Apply ``incoming`` to ``state``, then (with ``decide_next``) everything ``decide`` says."""
    events = list(incoming)
    for event in incoming:
        state = apply(state, event)
    if state is None:
        raise ValueError("advance needs a run state or a RunStarted event")
    schedule: list[cmd.Job] = []
    children: list[cmd.Job] = []
    stop: list[StepKey] = []
    orphans: list[tuple[str, str]] = []
    if decide_next:
        for command in decide(workflow, state, now):
            event = cmd.to_event(command, now)
            events.append(event)
            if orphan := _orphan(state, command):
                orphans.append(orphan)
            state = apply(state, event)
            match command:
                case cmd.ScheduleStep(job=job) | cmd.RetryStep(job=job):
                    if job.uses == WORKFLOW and not job.compensation:
                        children.append(job)
                    elif job.run_at < NEVER:  # a wait without a timeout has no timer
                        schedule.append(job)
                case (
                    cmd.CancelStep(step_id=step_id, compensation=compensation)
                    | cmd.FailStep(step_id=step_id, compensation=compensation)
                ):
                    stop.append((step_id, compensation))
                case cmd.CompleteStep(step_id=step_id):
                    stop.append((step_id, False))
    return Transition(
        state=state,
        events=events,
        schedule=schedule,
        stop=stop,
        dead=_dead(state, events),
        children=children,
        orphans=orphans,
        workflow=workflow,
    )


def _orphan(state: RunState, command: cmd.Command) -> tuple[str, str] | None:
    """The child run a command that stops a running ``workflow`` step leaves without a parent."""
    match command:
        case cmd.CancelStep(step_id=step_id, reason=why, compensation=False):
            pass
        case cmd.FailStep(step_id=step_id, error=error, compensation=False):
            why = error.message
        case _:
            return None
    s = state.steps.get(step_id)
    if s is None or s.status != "running" or s.child_run_id is None:
        return None
    return s.child_run_id, f"parent run {state.run_id} stopped step {step_id!r}: {why}"


def _dead(state: RunState, events: list[ev.Event]) -> list[tuple[StepKey, StepState]]:
    failed = {
        (e.step_id, e.compensation): None
        for e in events
        if isinstance(e, ev.StepFailed | ev.StepLeaseExpired)
    }
    out: list[tuple[StepKey, StepState]] = []
    for step_id, compensation in failed:
        table = state.compensations if compensation else state.steps
        s = table.get(step_id)
        if s is not None and s.status == "failed":
            out.append(((step_id, compensation), s))
    return out


def retry_event(
    state: RunState,
    now: datetime,
    steps: Sequence[str] | None = None,
    *,
    traceparent: str | None = None,
    parent_span_id: str | None = None,
) -> ev.RunRetried:
    """The event that reopens a failed or cancelled run.

    Every failed and cancelled step runs again, with the steps they caused to be skipped: a run
    cannot succeed while any step stays failed. ``steps``, when given, must be among them (the
    dead-letter queue names the step it requeues). A compensated run is not reopened: its
    completed steps were undone, so running only the failed ones would build on work that no
    longer exists. Replay it as a new run instead. ``traceparent`` and ``parent_span_id``
    (``store.facts.reopened_trace``) give the reopened run a span of its own in its trace.
    """
    if state.status not in ("failed", "cancelled"):
        raise NotRetryable(
            f"run {state.run_id} is {state.status}; only failed or cancelled runs can be retried"
        )
    if state.compensation_plan:
        raise NotRetryable(
            f"run {state.run_id} ran compensation; its completed steps were undone, "
            "so start a new run (replay) instead"
        )
    reopen = [
        s.id
        for s in state.steps.values()
        if s.status in ("failed", "cancelled")
        or (s.status == "skipped" and (s.reason or "").startswith(SKIPPED_BY_DEPENDENCY))
    ]
    if steps is not None:
        unknown = sorted(set(steps) - set(reopen))
        if unknown:
            raise NotRetryable(
                f"step(s) {', '.join(map(repr, unknown))} of run {state.run_id} did not fail; "
                f"failed steps: {', '.join(map(repr, reopen)) or 'none'}"
            )
    return ev.RunRetried(
        at=now, steps=tuple(reopen), traceparent=traceparent, parent_span_id=parent_span_id
    )

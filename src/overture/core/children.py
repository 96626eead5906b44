"""Child runs: what a ``workflow`` step asks of the store, computed without I/O.

A ``workflow`` step has no job. In the transaction whose transition schedules it
(``Transition.children``), the store:

1. starts the child run (``starts`` says which, under an idempotency key derived from the
   parent, the step and the event that scheduled it), recording ``parent_run_id`` and
   ``parent_step`` in its ``RunStarted``; each start is checked first against the parent as
   it is by then (``still_due``): an earlier start refused in the same transition may have
   failed the run and cancelled the step;
2. appends to the parent what ``started`` returns: ``StepStarted`` naming the child run, and the
   step's end at once when it does not wait (``wait: false``) or the child already finished.
   A child that cannot start (unknown or disabled workflow, invalid input) fails the step at
   once instead (``not_started``: not retried).

Afterwards, in the transaction in which either side moves:

- a child run that ends (``parent_of``) ends its parent's step (``ended``: the child's output,
  or ``child_failed`` / ``child_cancelled``, not retried) if that step still waits for it;
- a parent that stops such a step (cancelled, timed out, run cancelled) cancels the child
  (``Transition.orphans``), whose own children follow the same way.

Callers may not choose idempotency keys in the ``overture:`` namespace (``check_key``): a run
started under a child's key would be taken for that child.

Both stores persist exactly this, so SQLite and PostgreSQL children behave the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from overture.core import events as ev
from overture.core.advance import Transition
from overture.core.builtin_steps import ChildSpec, parse_child
from overture.core.events import ErrorInfo
from overture.core.state import TERMINAL_RUN, RunState, RunStatus
from overture.errors import Conflict, InputInvalid, NotFound, RequestInvalid
from overture.serde import JSON

Incoming = Callable[[RunState], list[ev.Event]]

MAX_DEPTH = 16
"""Child runs started inside one transaction, one inside the other, at most: deeper, the step
fails (``child_depth_exceeded``). A workflow that starts itself at once would otherwise never
finish its transaction."""

KEY_PREFIX = "overture:"
"""The idempotency keys the engine gives the runs it starts itself; refused from callers."""

_ENDINGS = (
    ev.RunSucceeded,
    ev.RunFailed,
    ev.RunCancelled,
    ev.CompensationSucceeded,
    ev.CompensationFailed,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChildStart:
    """A child run a parent's ``workflow`` step starts."""

    parent: RunState
    step_id: str
    attempt: int
    key: str
    """The child's idempotency key: the parent, the step and the ``seq`` of the event that
    scheduled the attempt (a reopened parent schedules attempt 1 again, so the attempt number
    alone would find the old child)."""
    run_at: datetime | None
    """A delayed parent's first step: the child starts then."""
    spec: ChildSpec | None
    error: ErrorInfo | None = None
    """Why the step cannot start a child (its inputs), when ``spec`` is None."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ChildRun:
    """A child run as its parent's step sees it."""

    run_id: str
    workflow: str
    status: RunStatus
    output: JSON = None
    error: ErrorInfo | None = None


def child_of(state: RunState) -> ChildRun:
    return ChildRun(
        run_id=state.run_id,
        workflow=state.workflow,
        status=state.status,
        output=state.output,
        error=state.error,
    )


def starts(t: Transition) -> list[ChildStart]:
    """The child runs to start for the ``workflow`` attempts ``t`` queued."""
    if not t.children:
        return []
    jobs = {job.step_id: job for job in t.children}
    first = t.state.events - len(t.events) + 1
    out: list[ChildStart] = []
    for seq, e in enumerate(t.events, start=first):
        if not isinstance(e, ev.StepScheduled | ev.StepRetryScheduled) or e.compensation:
            continue
        job = jobs.get(e.step_id)
        s = t.state.steps.get(e.step_id)
        if job is None or s is None or s.status != "scheduled" or s.attempt != job.attempt:
            continue  # scheduled, then stopped within the same transition
        spec: ChildSpec | None = None
        error: ErrorInfo | None = None
        try:
            spec = parse_child(job.input if isinstance(job.input, dict) else {})
        except ValueError as problem:
            error = ErrorInfo(code="bad_input", message=str(problem), retryable=False)
        out.append(
            ChildStart(
                parent=t.state,
                step_id=e.step_id,
                attempt=job.attempt,
                key=f"{KEY_PREFIX}child:{t.state.run_id}:{e.step_id}:{seq}",
                run_at=job.run_at if job.run_at > e.at else None,
                spec=spec,
                error=error,
            )
        )
    return out


def still_due(start: ChildStart, parent: RunState) -> bool:
    """Whether ``parent`` (as it is now) still waits for ``start``'s child run: the step is
    still queued at that attempt. Otherwise the start is skipped: nothing is written."""
    s = parent.steps.get(start.step_id)
    if parent.finished or s is None:
        return False
    return s.status == "scheduled" and s.attempt == start.attempt


def check_key(key: str | None) -> None:
    """Refuse a caller's idempotency key in the engine's own namespace (``RequestInvalid``)."""
    if key is not None and key.startswith(KEY_PREFIX):
        raise RequestInvalid(
            f"idempotency key {key!r}: keys starting with {KEY_PREFIX!r} are reserved for the "
            "runs Overture starts itself (child runs); choose another",
            code="reserved_idempotency_key",
        )


def started(start: ChildStart, child: ChildRun, at: datetime) -> list[ev.Event]:
    """What the parent records once its child run exists."""
    events: list[ev.Event] = [
        ev.StepStarted(
            at=at, step_id=start.step_id, attempt=start.attempt, child_run_id=child.run_id
        )
    ]
    if start.spec is not None and not start.spec.wait:
        output: JSON = {"run_id": child.run_id, "workflow": child.workflow}
        events.append(
            ev.StepSucceeded(at=at, step_id=start.step_id, attempt=start.attempt, output=output)
        )
    elif child.status in TERMINAL_RUN:
        events.append(_end(start.step_id, start.attempt, child, at))
    return events


def not_started(start: ChildStart, error: ErrorInfo, at: datetime) -> list[ev.Event]:
    """What the parent records when its child run cannot start: the step fails for good."""
    return [ev.StepFailed(at=at, step_id=start.step_id, attempt=start.attempt, error=error)]


REFUSED = (NotFound, Conflict, InputInvalid)
"""What starting a child run may raise before anything is written: the step fails."""


def cannot_start(start: ChildStart, depth: int) -> ErrorInfo | None:
    """Why the child run must not even be tried (``depth``: of the run that starts it)."""
    if start.error is not None:
        return start.error
    if depth >= MAX_DEPTH:
        why = f"child runs nest more than {MAX_DEPTH} deep at once (does a workflow start itself?)"
        return _refusal(start, "child_depth_exceeded", why)
    return None


def refused(start: ChildStart, problem: NotFound | Conflict | InputInvalid) -> ErrorInfo:
    """The error of a step whose child run the store refused to start."""
    if isinstance(problem, NotFound):
        return _refusal(start, "workflow_not_found", "no such workflow is registered")
    if isinstance(problem, InputInvalid):
        return _refusal(start, "input_invalid", "; ".join(problem.errors))
    return _refusal(start, problem.code, str(problem))


def _refusal(start: ChildStart, code: str, why: str) -> ErrorInfo:
    spec = start.spec
    name = "?" if spec is None else spec.workflow
    version = "" if spec is None or spec.version is None else f" v{spec.version}"
    return ErrorInfo(
        code=code,
        message=f"could not start a run of workflow {name!r}{version}: {why}",
        retryable=False,
        details={"workflow": name},
    )


def concerns(t: Transition) -> bool:
    """Whether ``t`` starts, stops or ends a child run: else the store has nothing more to do."""
    return bool(t.children or t.orphans) or parent_of(t) is not None


def parent_of(t: Transition) -> tuple[str, str] | None:
    """``(parent run id, step id)`` to tell when ``t`` ended a child run; else None."""
    state = t.state
    if state.parent_run_id is None or state.parent_step is None or not state.finished:
        return None
    if not any(isinstance(e, _ENDINGS) for e in t.events):
        return None
    return state.parent_run_id, state.parent_step


def ending(step_id: str, child: ChildRun, at: datetime) -> Incoming:
    """The parent's incoming events once ``child`` ended (see ``ended``)."""
    return lambda parent: ended(parent, step_id, child, at)


def stopping(reason: str, at: datetime) -> Incoming:
    """The incoming events of a child run whose step stopped: cancelled, unless it ended."""
    return lambda child: [] if child.finished else [ev.RunCancelled(at=at, reason=reason)]


def ended(parent: RunState, step_id: str, child: ChildRun, at: datetime) -> list[ev.Event]:
    """What the parent records when its child run ended: nothing unless the step still waits
    for that very run (it may have been cancelled, timed out, or started another)."""
    s = parent.steps.get(step_id)
    if s is None or s.status != "running" or s.child_run_id != child.run_id:
        return []
    return [_end(step_id, s.attempt, child, at)]


def outcome(child: ChildRun) -> tuple[JSON, ErrorInfo | None]:
    """How a finished child run ends its step: with its output, or failed (not retried)."""
    if child.status == "succeeded":
        return child.output, None
    why = child.error.message if child.error else child.status
    details: dict[str, JSON] = {"run_id": child.run_id, "workflow": child.workflow}
    if child.error is not None:
        details["error"] = dataclasses.asdict(child.error)
    if child.status == "cancelled":
        code, message = "child_cancelled", f"child run {child.run_id} was cancelled: {why}"
    else:
        details["status"] = child.status
        code, message = "child_failed", f"child run {child.run_id} {child.status}: {why}"
    return None, ErrorInfo(code=code, message=message, retryable=False, details=details)


def _end(step_id: str, attempt: int, child: ChildRun, at: datetime) -> ev.Event:
    output, error = outcome(child)
    if error is None:
        return ev.StepSucceeded(at=at, step_id=step_id, attempt=attempt, output=output)
    return ev.StepFailed(at=at, step_id=step_id, attempt=attempt, error=error)

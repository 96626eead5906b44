"""The engine's one decision: given a workflow and a run's state, what happens next.

``decide(workflow, state, now) -> commands`` is pure and total: no I/O, no clock, no randomness,
and it does not raise for a valid workflow. The shell (worker, in-process runner) turns each
command into its event (``commands.to_event``) and, for scheduled attempts, a job.

Rules, in the order they are applied:

1. A finished run cancels whatever is still queued or running (that is how cancel reaches steps).
2. A compensating run undoes its succeeded steps one at a time, in reverse completion order; a
   compensation action is retried like a step; one that fails for good is reported and the rest
   still run. All succeeded: ``compensated``; otherwise: ``failed``.
3. A running attempt past its ``timeout`` fails with code ``timeout`` (retryable). A queued
   ``wait`` step that a signal it waits for has reached ends without running (``builtin_steps``).
4. A failed step is retried while its policy allows (exponential backoff with jitter, or the
   handler's ``Retry(delay)``); a step whose worker died is re-delivered within its crash budget,
   then fails with ``crash_budget_exhausted``.
5. A step that failed for good fails the run: queued steps are cancelled, running ones are let
   finish (a side effect that happened must be compensated), then compensation starts, or the
   run fails when nothing needs undoing.
6. A pending step whose dependencies have all finished is, in declaration order:
   skipped if a dependency was skipped or cancelled (skipping propagates down the graph);
   skipped if its ``when`` condition is false; failed (not retried) if its condition or inputs
   cannot be evaluated; otherwise scheduled with its inputs resolved (a ``sleep`` or ``wait``
   step is due when its timer ends). All such steps are
   scheduled at once (fan-out); a step waits for every dependency (fan-in).
7. When every step has succeeded or been skipped the run succeeds with ``output`` rendered, or,
   without ``output``, with the outputs of its sink steps keyed by step id.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta

from overture.core import commands as cmd
from overture.core.builtin_steps import due_at, own_timeouts, resolve_waits
from overture.core.commands import Command, Job
from overture.core.conditions import Condition, evaluate, parse_condition
from overture.core.events import ErrorInfo
from overture.core.gates import NO_GATES, step_gates
from overture.core.model import Compensation, Step, Workflow
from overture.core.references import Scope
from overture.core.retry import backoff
from overture.core.state import ACTIVE_STEP, RunState, StepState, fold
from overture.core.templates import render
from overture.errors import TemplateError
from overture.serde import JSON


def decide(workflow: Workflow, state: RunState, now: datetime) -> list[Command]:
    """Every command due now, including the consequences of those commands (skip cascades...)."""
    commands: list[Command] = []
    # Each round finishes at least one step or moves one forward, so this bound is never reached
    # by a valid workflow; it only keeps a bug from becoming an endless loop.
    for _ in range(8 * (len(workflow.steps) + 1)):
        batch = _round(workflow, state, now)
        if not batch:
            break
        commands += batch
        state = fold((cmd.to_event(c, now) for c in batch), state)
    return commands


def _round(workflow: Workflow, state: RunState, now: datetime) -> list[Command]:
    if state.finished:
        return _cancel_active(state, f"run {state.status}")
    if state.status == "compensating":
        return _compensate(workflow, state, now)
    if timeouts := own_timeouts(workflow, _timeouts(workflow, state, now, compensation=False)):
        return timeouts
    if resolved := resolve_waits(workflow, state):
        return resolved
    failed = [s for s in state.steps.values() if s.status == "failed"]
    followups = {s.id: _after_failure(workflow, state, s, now, compensation=False) for s in failed}
    terminal = [s for s in failed if followups[s.id] is None]
    if terminal:
        return _wind_down(workflow, state, _first(terminal))
    if retries := [c for c in followups.values() if c is not None]:
        return retries
    if ready := _advance(workflow, state, now):
        return ready
    return _finish(workflow, state)


SKIPPED_BY_DEPENDENCY = "dependency "
"""How the reason of a step skipped because a dependency did not succeed begins."""

_DONE_WITHOUT_FAILING = frozenset({"succeeded", "skipped", "cancelled"})


def _cancel_active(state: RunState, reason: str) -> list[Command]:
    out: list[Command] = []
    for table, compensation in ((state.steps, False), (state.compensations, True)):
        out += [
            cmd.CancelStep(step_id=s.id, reason=reason, compensation=compensation)
            for s in table.values()
            if s.status in ACTIVE_STEP
        ]
    return out


def _timeouts(
    workflow: Workflow, state: RunState, now: datetime, *, compensation: bool
) -> list[Command]:
    table = state.compensations if compensation else state.steps
    out: list[Command] = []
    for s in table.values():
        started = s.started_at
        if s.status != "running" or started is None:
            continue
        limit = workflow.timeout(_spec(workflow, s.id, compensation))
        if limit is None:
            continue
        if now >= started + timedelta(seconds=limit):
            error = ErrorInfo(code="timeout", message=f"did not finish within {limit:g}s")
            out.append(
                cmd.FailStep(
                    step_id=s.id, attempt=s.attempt, error=error, compensation=compensation
                )
            )
    return out


def _after_failure(
    workflow: Workflow, state: RunState, s: StepState, now: datetime, *, compensation: bool
) -> Command | None:
    """The retry (or crash-budget failure) owed to a failed attempt; ``None`` if it is final."""
    try:
        return _retry_of(workflow, state, s, now, compensation=compensation)
    except TemplateError as error:
        # The step's flow-control keys no longer render: running it without them could break
        # a critical section, so it fails instead.
        failure = ErrorInfo(code=error.code, message=str(error), retryable=False)
        return cmd.FailStep(
            step_id=s.id, attempt=s.attempt, error=failure, compensation=compensation
        )


def _retry_of(
    workflow: Workflow, state: RunState, s: StepState, now: datetime, *, compensation: bool
) -> Command | None:
    policy = workflow.retry_policy(_spec(workflow, s.id, compensation))
    error = s.error
    if error is None or s.attempt == 0:
        return None  # failed before running (bad template...): nothing a retry could change
    if error.code == "lease_expired":
        if s.crashes <= policy.max_crashes:
            job = _job(workflow, state, s, attempt=s.attempt, run_at=now, compensation=compensation)
            return cmd.RetryStep(job=job, delay=0.0, reason="crash")
        spent = ErrorInfo(
            code="crash_budget_exhausted",
            message=f"its worker died {s.crashes} times (crash budget {policy.max_crashes})",
            retryable=False,
        )
        return cmd.FailStep(step_id=s.id, attempt=s.attempt, error=spent, compensation=compensation)
    if not error.retryable or error.code in policy.non_retryable:
        return None
    if s.attempt >= policy.max_attempts:
        return None
    if error.retry_after is not None:
        delay = error.retry_after
    else:
        delay = backoff(policy, s.attempt, seed=(state.run_id, s.id, compensation))
    run_at = now + timedelta(seconds=delay)
    job = _job(workflow, state, s, attempt=s.attempt + 1, run_at=run_at, compensation=compensation)
    return cmd.RetryStep(job=job, delay=delay)


def _wind_down(workflow: Workflow, state: RunState, failed: StepState) -> list[Command]:
    reason = f"step {failed.id!r} failed"
    queued = [s for s in state.steps.values() if s.status == "scheduled"]
    if queued:
        return [cmd.CancelStep(step_id=s.id, reason=reason) for s in queued]
    if any(s.status == "running" for s in state.steps.values()):
        return []  # let them finish: what they did may need compensating
    assert failed.error is not None
    attempts = f" after {failed.attempt} attempts" if failed.attempt > 1 else ""
    error = ErrorInfo(
        code=failed.error.code,
        message=f"step {failed.id!r} failed{attempts}: {failed.error.message}",
        retryable=False,
        details=failed.error.details,
    )
    return _fail(workflow, state, error, failed.id)


def _fail(workflow: Workflow, state: RunState, error: ErrorInfo, step: str | None) -> list[Command]:
    plan = tuple(s for s in reversed(state.completed) if workflow.step(s).compensate is not None)
    if plan:
        return [cmd.StartCompensation(steps=plan, error=error, failed_step=step)]
    return [cmd.FailRun(error=error, failed_step=step)]


def _advance(workflow: Workflow, state: RunState, now: datetime) -> list[Command]:
    graph, seen = workflow.graph, state.steps
    scope: Scope | None = None
    out: list[Command] = []
    for step in workflow.steps:
        if step.id in seen:
            continue  # a step with any event is no longer pending
        deps = [seen.get(d) for d in graph.needs[step.id]]
        if any(d is None or d.status not in _DONE_WITHOUT_FAILING for d in deps):
            continue
        not_run = sorted(d.id for d in deps if d is not None and d.status != "succeeded")
        if not_run:
            reason = f"{SKIPPED_BY_DEPENDENCY}{not_run[0]!r} was {state.step(not_run[0]).status}"
            out.append(cmd.SkipStep(step_id=step.id, reason=reason))
        else:
            scope = scope or _scope(state)
            out.append(_schedule(workflow, state, step, scope, now))
    return out


def _schedule(
    workflow: Workflow, state: RunState, step: Step, scope: Scope, now: datetime
) -> Command:
    try:
        if step.when is not None and not evaluate(_condition(step.when), scope):
            return cmd.SkipStep(step_id=step.id, reason=f"condition is false: {step.when}")
        data = render(step.inputs, scope)
        flow = step_gates(workflow, step, scope, data)
    except TemplateError as error:
        failure = ErrorInfo(code=error.code, message=str(error), retryable=False)
        return cmd.FailStep(step_id=step.id, attempt=0, error=failure)
    if not isinstance(data, dict):
        message = f"'with: {step.inputs}' gave {type(data).__name__}, not a mapping of inputs"
        failure = ErrorInfo(code="bad_input", message=message, retryable=False)
        return cmd.FailStep(step_id=step.id, attempt=0, error=failure)
    try:
        # Later than the step's start for the engine's own timers (sleep, wait).
        run_at = due_at(step.uses, data, max(now, state.not_before or now))
    except ValueError as error:
        failure = ErrorInfo(code="bad_input", message=str(error), retryable=False)
        return cmd.FailStep(step_id=step.id, attempt=0, error=failure)
    job = Job(
        step_id=step.id,
        attempt=1,
        uses=step.uses,
        input=data,
        run_at=run_at,
        priority=workflow.priority(step, state.priority),
        timeout=workflow.timeout(step),
        gates=flow,
    )
    return cmd.ScheduleStep(job=job)


def _finish(workflow: Workflow, state: RunState) -> list[Command]:
    steps = state.steps
    if len(steps) < len(workflow.steps):
        return []  # some step has not even been scheduled
    if any(s.status not in ("succeeded", "skipped") for s in steps.values()):
        return []
    if workflow.output is None:
        output: JSON = {
            sid: steps[sid].output
            for sid in workflow.graph.sinks
            if steps[sid].status == "succeeded"
        }
        return [cmd.CompleteRun(output=output)]
    try:
        return [cmd.CompleteRun(output=render(workflow.output, _scope(state)))]
    except TemplateError as error:
        failure = ErrorInfo(code="output_error", message=str(error), retryable=False)
        return _fail(workflow, state, failure, None)


def _compensate(workflow: Workflow, state: RunState, now: datetime) -> list[Command]:
    if timeouts := _timeouts(workflow, state, now, compensation=True):
        return timeouts
    failures: list[str] = []
    for step_id in state.compensation_plan:
        c = state.compensation(step_id)
        if c.status == "pending":
            return [_schedule_compensation(workflow, state, step_id, now)]
        if c.status in ACTIVE_STEP:
            return []  # strictly one at a time, in plan order
        if c.status == "failed":
            followup = _after_failure(workflow, state, c, now, compensation=True)
            if followup is not None:
                return [followup]
            failures.append(step_id)
    if not failures:
        return [cmd.CompleteCompensation()]
    details = "; ".join(f"{s}: {_message(state.compensation(s))}" for s in failures)
    error = ErrorInfo(
        code="compensation_failed",
        message=f"compensation failed for {', '.join(map(repr, failures))} ({details})",
        retryable=False,
    )
    return [cmd.FailCompensation(steps=tuple(failures), error=error)]


def _schedule_compensation(
    workflow: Workflow, state: RunState, step_id: str, now: datetime
) -> Command:
    spec = workflow.step(step_id).compensate
    assert spec is not None
    try:
        data = render(spec.inputs, _scope(state))
    except TemplateError as error:
        failure = ErrorInfo(code=error.code, message=str(error), retryable=False)
        return cmd.FailStep(step_id=step_id, attempt=0, error=failure, compensation=True)
    pending = StepState(id=step_id, input=data)
    return cmd.ScheduleStep(
        job=_job(workflow, state, pending, attempt=1, run_at=now, compensation=True)
    )


def _job(
    workflow: Workflow,
    state: RunState,
    s: StepState,
    *,
    attempt: int,
    run_at: datetime,
    compensation: bool,
) -> Job:
    step = workflow.step(s.id)
    spec = _spec(workflow, s.id, compensation)
    flow = NO_GATES if compensation else step_gates(workflow, step, _scope(state), s.input)
    return Job(
        step_id=s.id,
        attempt=attempt,
        uses=spec.uses,
        input=s.input,
        run_at=run_at,
        priority=workflow.priority(step, state.priority),
        timeout=workflow.timeout(spec),
        compensation=compensation,
        gates=flow,
    )


def _spec(workflow: Workflow, step_id: str, compensation: bool) -> Step | Compensation:
    step = workflow.step(step_id)
    if compensation and step.compensate is not None:
        return step.compensate
    return step


def _scope(state: RunState) -> Scope:
    outputs = {sid: s.output for sid, s in state.steps.items() if s.status == "succeeded"}
    run: dict[str, JSON] = {
        "id": state.run_id,
        "workflow": state.workflow,
        "version": state.version,
        "tenant": state.tenant,
        "correlation_id": state.correlation_id,
    }
    return Scope(input=state.input, steps=outputs, run=run)


def _first(steps: Iterable[StepState]) -> StepState:
    """The step that failed first: the one whose failure the run reports."""
    return min(steps, key=lambda s: (s.finished_at is None, s.finished_at or datetime.min))


def _message(s: StepState) -> str:
    return s.error.message if s.error else s.status


@functools.lru_cache(maxsize=4096)
def _condition(source: str | bool) -> Condition:
    return parse_condition(source)

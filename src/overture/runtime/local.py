"""Run a workflow to the end inside this process: the pure engine, real handlers, no database.

For tests, for ``overture run``, and for trying a workflow before deploying it. Nothing here is
durable: a crash loses the run. The durable worker executes the same ``decide`` commands through
the same ``execute`` function, with a store in between.

The engine's own steps work here too: ``sleep`` and a ``wait``'s timeout on the runner's clock,
a ``wait``'s signal through ``LocalRunner.signal``, and a ``workflow`` step's child run when the
runner was given that workflow (``workflows=``); a child started with ``wait: false`` ends with
its parent's run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from overture.clock import Clock, SystemClock
from overture.core import children
from overture.core import commands as cmd
from overture.core import events as ev
from overture.core.builtin_steps import ENGINE_STEPS, NEVER, WORKFLOW, ChildSpec, parse_child
from overture.core.decide import decide
from overture.core.events import ErrorInfo
from overture.core.inputs import prepare_input
from overture.core.model import Workflow
from overture.core.state import RunState, apply
from overture.core.validate import handler_problems
from overture.errors import Conflict, InputInvalid, NotFound, WorkflowInvalid
from overture.handlers.engine import engine_registry
from overture.handlers.registry import HandlerRegistry, HandlerSpec
from overture.ids import new_run_id
from overture.runtime.context import StepContext
from overture.runtime.executor import Outcome, execute
from overture.serde import JSON
from overture.store import facts
from overture.telemetry import tracecontext

Listener = Callable[[ev.Event], None]
Key = tuple[str, bool]  # (step id, is compensation): one queued or running attempt each


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """A finished run: its final state and its whole history."""

    state: RunState
    events: tuple[ev.Event, ...]

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def output(self) -> JSON:
        return self.state.output


class LocalRunner:
    """Runs workflows in-process with the handlers of one registry."""

    def __init__(
        self,
        registry: HandlerRegistry,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        secrets: Mapping[str, str] | None = None,
        tenant: str = "default",
        workflows: Iterable[Workflow] = (),
    ) -> None:
        self.registry = registry
        self.clock: Clock = clock or SystemClock()
        self.sleep = sleep or asyncio.sleep
        self.secrets: Mapping[str, str] = {} if secrets is None else secrets
        self.tenant = tenant
        self.workflows: dict[str, list[Workflow]] = {}
        """What ``workflow`` steps may start, by name (every version given)."""
        for workflow in workflows:
            self.workflows.setdefault(workflow.name, []).append(workflow)
        self._engine = engine_registry()
        self._active: dict[str, _Run] = {}

    async def run(
        self,
        workflow: Workflow,
        input: JSON = None,
        *,
        run_id: str | None = None,
        priority: int | None = None,
        correlation_id: str | None = None,
        listener: Listener | None = None,
    ) -> RunResult:
        """Run ``workflow`` with ``input`` until it finishes; raise if it cannot start."""
        data = prepare_input(workflow.name, workflow.input, {} if input is None else input)
        self._check(workflow)
        trace, _ = tracecontext.run_context(None)
        started = ev.RunStarted(
            at=self.clock.now(),
            run_id=run_id or new_run_id(),
            workflow=workflow.name,
            version=workflow.version,
            input=data,
            tenant=self.tenant,
            priority=priority,
            correlation_id=correlation_id,
            traceparent=trace.header(),
        )
        return await self._drive(_Run(self, workflow, listener), started)

    async def signal(self, run_id: str, name: str, payload: JSON = None) -> ev.SignalReceived:
        """Send the signal ``name`` to a run this runner is running (a ``wait`` resumes)."""
        run = self._active.get(run_id)
        if run is None:
            raise NotFound("run", run_id)
        if run.state is not None and run.state.finished:
            raise Conflict(f"run {run_id!r} has finished: it takes no signals", code="run_finished")
        signal = ev.SignalReceived(at=self.clock.now(), name=name, payload=payload)
        run.record(signal)
        run.poked.set()
        return signal

    def _handler(self, name: str) -> HandlerSpec:
        """The engine's own steps run the engine's handlers, whatever the registry holds."""
        return self._engine.get(name) if name in self._engine else self.registry.get(name)

    def _check(self, workflow: Workflow) -> None:
        if problems := handler_problems(workflow, self.registry.names() | ENGINE_STEPS):
            raise WorkflowInvalid(problems)

    async def _drive(self, run: _Run, started: ev.RunStarted) -> RunResult:
        run.record(started)
        self._active[started.run_id] = run
        try:
            return await run.drive()
        finally:
            del self._active[started.run_id]

    def _child(self, spec: ChildSpec) -> Workflow:
        """The workflow a child run starts with (``NotFound`` when this runner lacks it)."""
        versions = self.workflows.get(spec.workflow, [])
        found = [w for w in versions if spec.version in (None, w.version)]
        if not found:
            raise NotFound("workflow", spec.workflow)
        return max(found, key=lambda w: w.version)


class _Run:
    """The loop of one run: decide, record, start due attempts, wait for one to end."""

    def __init__(
        self, runner: LocalRunner, workflow: Workflow, listener: Listener | None, depth: int = 0
    ) -> None:
        self.runner = runner
        self.workflow = workflow
        self.listener = listener
        self.depth = depth
        """How many runs up this one's first ancestor is (0: not a child run)."""
        self.history: list[ev.Event] = []
        self.state: RunState | None = None
        self.queued: dict[Key, cmd.Job] = {}
        self.running: dict[asyncio.Task[Outcome], cmd.Job] = {}
        self.cancelled: set[asyncio.Task[Outcome]] = set()
        self.detached: set[asyncio.Task[Outcome]] = set()
        """Child runs started with ``wait: false``: they end with this run."""
        self.poked = asyncio.Event()
        """Set when a signal arrived: decide again."""

    def record(self, event: ev.Event) -> None:
        self.history.append(event)
        self.state = apply(self.state, event)
        if self.listener:
            self.listener(event)

    async def drive(self) -> RunResult:
        try:
            while True:
                self._perform(decide(self.workflow, self._state, self._now()))
                if self._state.finished and not self.running:
                    break
                self._start_due()
                await self._wait()
        finally:
            await self._stop_all()
        return RunResult(state=self._state, events=tuple(self.history))

    @property
    def _state(self) -> RunState:
        assert self.state is not None
        return self.state

    def _now(self) -> datetime:
        return self.runner.clock.now()

    def _perform(self, commands: list[cmd.Command]) -> None:
        now = self._now()
        for command in commands:
            self.record(cmd.to_event(command, now))
            match command:
                case cmd.ScheduleStep(job=job) | cmd.RetryStep(job=job):
                    self.queued[(job.step_id, job.compensation)] = job
                case (
                    cmd.CancelStep(step_id=step_id, compensation=compensation)
                    | cmd.FailStep(step_id=step_id, compensation=compensation)
                ):
                    # A failure decided by the engine (a timeout seen by decide) also ends the task.
                    self.queued.pop((step_id, compensation), None)
                    self._cancel_task((step_id, compensation))
                case cmd.CompleteStep(step_id=step_id):
                    self.queued.pop((step_id, False), None)  # a wait's signal came: no timer

    def _cancel_task(self, key: Key) -> None:
        for task, job in list(self.running.items()):
            if (job.step_id, job.compensation) == key:
                task.cancel()
                del self.running[task]
                self.cancelled.add(task)  # awaited before run() returns, so cleanup finishes

    def _start_due(self) -> None:
        now = self._now()
        due = sorted(
            (job for job in self.queued.values() if job.run_at <= now),
            key=lambda job: (job.priority, job.run_at),
        )
        for job in due:
            del self.queued[(job.step_id, job.compensation)]
            if job.uses == WORKFLOW and not job.compensation:
                self.running[self._start_child(job, now)] = job
                continue
            self.record(
                ev.StepStarted(
                    at=now, step_id=job.step_id, attempt=job.attempt, compensation=job.compensation
                )
            )
            ctx = StepContext(
                run_id=self._state.run_id,
                step_id=job.step_id,
                attempt=job.attempt,
                workflow=self.workflow.name,
                tenant=self._state.tenant,
                compensation=job.compensation,
                clock=self.runner.clock,
                secrets=self.runner.secrets,
            )
            spec = self.runner._handler(job.uses)
            run = tracecontext.parse_traceparent(self._state.traceparent)
            # The task copies the context now: its outbound calls carry the attempt's trace.
            token = tracecontext.outbound.set(None if run is None else run.child().header())
            try:
                task = asyncio.create_task(
                    execute(spec, job.input, ctx, self.runner.secrets, timeout=job.timeout)
                )
            finally:
                tracecontext.outbound.reset(token)
            self.running[task] = job

    def _start_child(self, job: cmd.Job, now: datetime) -> asyncio.Task[Outcome]:
        """Start a ``workflow`` step's child run; the task ends with the step's outcome."""
        try:
            spec = parse_child(job.input if isinstance(job.input, dict) else {})
            if self.depth >= children.MAX_DEPTH:
                raise RecursionError(f"child runs nest more than {children.MAX_DEPTH} deep")
            workflow = self.runner._child(spec)
            self.runner._check(workflow)
            data = prepare_input(workflow.name, workflow.input, spec.input)
        except (ValueError, RecursionError, NotFound, InputInvalid, WorkflowInvalid) as error:
            self.record(ev.StepStarted(at=now, step_id=job.step_id, attempt=job.attempt))
            return asyncio.create_task(_ready(Outcome(error=_not_started(error))))
        child_id = new_run_id()
        self.record(
            ev.StepStarted(at=now, step_id=job.step_id, attempt=job.attempt, child_run_id=child_id)
        )
        child = _Run(self.runner, workflow, None, self.depth + 1)
        trace, parent_span = tracecontext.run_context(self._state.traceparent)
        first = ev.RunStarted(
            at=now,
            run_id=child_id,
            workflow=workflow.name,
            version=workflow.version,
            input=data,
            tenant=self._state.tenant,
            priority=self._state.priority,
            correlation_id=self._state.correlation_id,
            parent_run_id=self._state.run_id,
            parent_step=job.step_id,
            traceparent=trace.header(),
            parent_span_id=parent_span,
        )
        running = asyncio.create_task(_outcome(self.runner._drive(child, first)))
        if spec.wait:
            return running
        self.detached.add(running)
        output: JSON = {"run_id": child_id, "workflow": workflow.name}
        return asyncio.create_task(_ready(Outcome(output=output)))

    async def _wait(self) -> None:
        """Until an attempt ends, the next queued one is due, or a signal arrives."""
        now = self._now()
        timed = [job for job in self.queued.values() if job.run_at < NEVER]
        delays = [max((job.run_at - now).total_seconds(), 0.0) for job in timed]
        next_due = min(delays) if delays else None
        if not self.running and not self.queued:
            raise RuntimeError(f"run {self._state.run_id} has nothing to wait for: engine bug")
        # Only signals end a wait without a timeout: its attempt is queued "forever".
        helpers: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.poked.wait())}
        timeout = next_due
        if not self.running and next_due is not None:
            helpers.add(asyncio.ensure_future(self.runner.sleep(next_due)))
            timeout = None
        waiting: set[asyncio.Future[Any]] = {*helpers, *self.running}
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        self.poked.clear()
        for task, job in list(self.running.items()):
            if task in done:
                del self.running[task]
                self._finish(job, task.result())

    def _finish(self, job: cmd.Job, outcome: Outcome) -> None:
        ended = facts.attempt_ended(
            outcome, job.step_id, job.attempt, job.compensation, self._now()
        )
        self.record(ended)

    async def _stop_all(self) -> None:
        for task in (*self.running, *self.detached):
            task.cancel()
        await asyncio.gather(*self.running, *self.cancelled, *self.detached, return_exceptions=True)
        self.running.clear()
        self.cancelled.clear()
        self.detached.clear()


async def _ready(outcome: Outcome) -> Outcome:
    return outcome


async def _outcome(child: Awaitable[RunResult]) -> Outcome:
    """A ``workflow`` step's outcome: how its child run ended."""
    result = await child
    output, error = children.outcome(children.child_of(result.state))
    return Outcome(output=output, error=error)


def _not_started(error: Exception) -> ErrorInfo:
    """Why a ``workflow`` step could not start its child run here."""
    if isinstance(error, NotFound):
        why = (
            f"could not start a run of workflow {error.key!r}: this in-process runner does not "
            "know it. Child workflows need a store (`overture run --local`, or a server), or "
            "the workflow given to LocalRunner(workflows=...)"
        )
        return ErrorInfo(code="workflow_not_found", message=why, retryable=False)
    codes = {InputInvalid: "input_invalid", WorkflowInvalid: "workflow_invalid"}
    code = codes.get(type(error), "bad_input")
    if isinstance(error, RecursionError):
        code = "child_depth_exceeded"
    message = f"could not start the child run: {error}"
    return ErrorInfo(code=code, message=message, retryable=False)

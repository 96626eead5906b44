"""Run a workflow to the end inside this process: the pure engine, real handlers, no database.

For tests, for ``overture run``, and for trying a workflow before deploying it. Nothing here is
durable: a crash loses the run. The durable worker executes the same ``decide`` commands through
the same ``execute`` function, with a store in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from overture.clock import Clock, SystemClock
from overture.core import commands as cmd
from overture.core import events as ev
from overture.core.decide import decide
from overture.core.inputs import prepare_input
from overture.core.model import Workflow
from overture.core.state import RunState, apply
from overture.core.validate import handler_problems
from overture.errors import WorkflowInvalid
from overture.handlers.registry import HandlerRegistry
from overture.ids import new_run_id
from overture.runtime.context import StepContext
from overture.runtime.executor import Outcome, execute
from overture.serde import JSON
from overture.store import facts

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
    ) -> None:
        self.registry = registry
        self.clock: Clock = clock or SystemClock()
        self.sleep = sleep or asyncio.sleep
        self.secrets: Mapping[str, str] = {} if secrets is None else secrets
        self.tenant = tenant

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
        if problems := handler_problems(workflow, self.registry.names()):
            raise WorkflowInvalid(problems)
        started = ev.RunStarted(
            at=self.clock.now(),
            run_id=run_id or new_run_id(),
            workflow=workflow.name,
            version=workflow.version,
            input=data,
            tenant=self.tenant,
            priority=priority,
            correlation_id=correlation_id,
        )
        run = _Run(self, workflow, listener)
        run.record(started)
        return await run.drive()


class _Run:
    """The loop of one run: decide, record, start due attempts, wait for one to end."""

    def __init__(self, runner: LocalRunner, workflow: Workflow, listener: Listener | None) -> None:
        self.runner = runner
        self.workflow = workflow
        self.listener = listener
        self.history: list[ev.Event] = []
        self.state: RunState | None = None
        self.queued: dict[Key, cmd.Job] = {}
        self.running: dict[asyncio.Task[Outcome], cmd.Job] = {}
        self.cancelled: set[asyncio.Task[Outcome]] = set()

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
            spec = self.runner.registry.get(job.uses)
            task = asyncio.create_task(
                execute(spec, job.input, ctx, self.runner.secrets, timeout=job.timeout)
            )
            self.running[task] = job

    async def _wait(self) -> None:
        now = self._now()
        delays = [max((job.run_at - now).total_seconds(), 0.0) for job in self.queued.values()]
        next_due = min(delays) if delays else None
        if not self.running:
            if next_due is None:
                raise RuntimeError(f"run {self._state.run_id} has nothing to wait for: engine bug")
            await self.runner.sleep(next_due)
            return
        done, _ = await asyncio.wait(
            self.running, timeout=next_due, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            job = self.running.pop(task)
            self._finish(job, task.result())

    def _finish(self, job: cmd.Job, outcome: Outcome) -> None:
        ended = facts.attempt_ended(
            outcome, job.step_id, job.attempt, job.compensation, self._now()
        )
        self.record(ended)

    async def _stop_all(self) -> None:
        for task in self.running:
            task.cancel()
        await asyncio.gather(*self.running, *self.cancelled, return_exceptions=True)
        self.running.clear()
        self.cancelled.clear()

"""Drive a run with the pure engine alone: decide, record, pick which attempt ends next.

No event loop, no handlers: ``outcome(job)`` says how each attempt ends, ``choose(n)`` picks which
of the ``n`` started attempts ends next (Hypothesis explores orders through it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from overture.core import commands as cmd
from overture.core import events as ev
from overture.core.decide import decide
from overture.core.events import ErrorInfo
from overture.core.model import Workflow
from overture.core.state import RunState, apply
from overture.serde import JSON
from overture.testing import EPOCH

Outcome = JSON | ErrorInfo
"""Output for a success, ``ErrorInfo`` for a failure."""


@dataclass
class Simulation:
    workflow: Workflow
    outcome: Callable[[cmd.Job], Outcome]
    choose: Callable[[int], int] = lambda n: 0
    now: datetime = EPOCH
    events: list[ev.Event] = field(default_factory=list)
    state: RunState | None = None
    queued: dict[tuple[str, bool], cmd.Job] = field(default_factory=dict)
    running: list[cmd.Job] = field(default_factory=list)

    def record(self, event: ev.Event) -> None:
        self.events.append(event)
        self.state = apply(self.state, event)

    def start(self, input: JSON = None, run_id: str = "run-1") -> RunState:
        self.record(
            ev.RunStarted(
                at=self.now,
                run_id=run_id,
                workflow=self.workflow.name,
                version=1,
                input=input or {},
            )
        )
        for _ in range(10_000):
            assert self.state is not None
            for command in decide(self.workflow, self.state, self.now):
                self.perform(command)
            if self.state.finished and not self.running:
                return self.state
            self.start_due()
            if self.running:
                self.finish(self.running.pop(self.choose(len(self.running))))
            elif self.queued:
                self.now = min(job.run_at for job in self.queued.values())
            else:
                raise AssertionError(f"stuck: {self.state}")
        raise AssertionError("run did not finish")

    def perform(self, command: cmd.Command) -> None:
        self.record(cmd.to_event(command, self.now))
        match command:
            case cmd.ScheduleStep(job=job) | cmd.RetryStep(job=job):
                self.queued[(job.step_id, job.compensation)] = job
            case cmd.CancelStep(step_id=step_id, compensation=comp):
                self.queued.pop((step_id, comp), None)
                self.running = [
                    j for j in self.running if (j.step_id, j.compensation) != (step_id, comp)
                ]

    def start_due(self) -> None:
        for key, job in sorted(self.queued.items(), key=lambda kv: kv[1].priority):
            if job.run_at <= self.now:
                del self.queued[key]
                self.record(
                    ev.StepStarted(
                        at=self.now,
                        step_id=job.step_id,
                        attempt=job.attempt,
                        compensation=job.compensation,
                    )
                )
                self.running.append(job)

    def finish(self, job: cmd.Job) -> None:
        self.now += timedelta(milliseconds=1)
        result = self.outcome(job)
        common = {"at": self.now, "step_id": job.step_id, "attempt": job.attempt}
        if isinstance(result, ErrorInfo):
            self.record(ev.StepFailed(**common, error=result, compensation=job.compensation))  # type: ignore[arg-type]
        else:
            self.record(ev.StepSucceeded(**common, output=result, compensation=job.compensation))  # type: ignore[arg-type]


def succeed(job: cmd.Job) -> Outcome:
    """Every attempt succeeds and returns its input."""
    return job.input


def started(events: list[ev.Event], *, compensation: bool = False) -> list[str]:
    """Step ids in the order their attempts started."""
    return [
        e.step_id
        for e in events
        if isinstance(e, ev.StepStarted) and e.compensation == compensation
    ]

"""What ``decide`` asks the shell to do, and the event each command becomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

from overture.core import events as ev
from overture.core.events import ErrorInfo
from overture.core.gates import NO_GATES, Gates
from overture.serde import JSON


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """Everything a worker needs to run one attempt of a step or of its compensation."""

    step_id: str
    attempt: int
    uses: str
    input: JSON
    """Resolved inputs; secrets are still sealed references."""
    run_at: datetime
    priority: int
    timeout: float | None
    compensation: bool = False
    gates: Gates = NO_GATES
    """Flow controls the claim must respect (compensations have none: they must run)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleStep:
    """Queue the first attempt of a step (or of a compensation action)."""

    job: Job


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryStep:
    """Queue another attempt after ``delay`` seconds, with the input recorded at scheduling."""

    job: Job
    delay: float
    reason: Literal["error", "crash", "released"] = "error"


@dataclass(frozen=True, kw_only=True, slots=True)
class SkipStep:
    step_id: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class FailStep:
    """Fail an attempt without running it (bad template, timeout seen late, crash budget spent)."""

    step_id: str
    attempt: int
    error: ErrorInfo
    compensation: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class CompleteStep:
    """End a queued attempt without running it: a ``wait`` step reached by a signal.

    It succeeds with ``output``, or fails with ``error`` (an approval refused); ``signal`` is
    the index of the signal it consumed. Its queued job is dropped.
    """

    step_id: str
    attempt: int
    output: JSON = None
    error: ErrorInfo | None = None
    signal: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelStep:
    """Drop a queued attempt, or stop a running one."""

    step_id: str
    reason: str
    compensation: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class StartCompensation:
    steps: tuple[str, ...]
    error: ErrorInfo
    failed_step: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class CompleteCompensation:
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class FailCompensation:
    steps: tuple[str, ...]
    error: ErrorInfo


@dataclass(frozen=True, kw_only=True, slots=True)
class CompleteRun:
    output: JSON


@dataclass(frozen=True, kw_only=True, slots=True)
class FailRun:
    error: ErrorInfo
    failed_step: str | None


Command: TypeAlias = (
    ScheduleStep
    | RetryStep
    | SkipStep
    | FailStep
    | CompleteStep
    | CancelStep
    | StartCompensation
    | CompleteCompensation
    | FailCompensation
    | CompleteRun
    | FailRun
)


def to_event(command: Command, now: datetime) -> ev.Event:
    """The history entry that records ``command`` as done."""
    match command:
        case ScheduleStep(job=job):
            return ev.StepScheduled(
                at=now,
                step_id=job.step_id,
                attempt=job.attempt,
                input=job.input,
                run_at=job.run_at,
                compensation=job.compensation,
            )
        case RetryStep(job=job, delay=delay, reason=reason):
            return ev.StepRetryScheduled(
                at=now,
                step_id=job.step_id,
                attempt=job.attempt,
                run_at=job.run_at,
                delay=delay,
                reason=reason,
                compensation=job.compensation,
            )
        case SkipStep(step_id=step_id, reason=reason):
            return ev.StepSkipped(at=now, step_id=step_id, reason=reason)
        case FailStep(step_id=step_id, attempt=attempt, error=error, compensation=comp):
            return ev.StepFailed(
                at=now, step_id=step_id, attempt=attempt, error=error, compensation=comp
            )
        case CompleteStep(step_id=step_id, attempt=attempt, error=error, signal=signal):
            if error is not None:
                return ev.StepFailed(
                    at=now, step_id=step_id, attempt=attempt, error=error, signal=signal
                )
            return ev.StepSucceeded(
                at=now, step_id=step_id, attempt=attempt, output=command.output, signal=signal
            )
        case CancelStep(step_id=step_id, reason=reason, compensation=comp):
            return ev.StepCancelled(at=now, step_id=step_id, reason=reason, compensation=comp)
        case StartCompensation(steps=steps, error=error, failed_step=failed):
            return ev.CompensationStarted(at=now, steps=steps, error=error, failed_step=failed)
        case CompleteCompensation():
            return ev.CompensationSucceeded(at=now)
        case FailCompensation(steps=steps, error=error):
            return ev.CompensationFailed(at=now, steps=steps, error=error)
        case CompleteRun(output=output):
            return ev.RunSucceeded(at=now, output=output)
        case FailRun(error=error, failed_step=failed):
            return ev.RunFailed(at=now, error=error, failed_step=failed)

"""The facts of a run's history: immutable, append-only, JSON round-trippable.

The history is the truth; a run's state is ``fold(events)``. Events that concern one attempt of
a step carry ``compensation=True`` when the attempt belongs to that step's compensation action
rather than to the step itself.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from overture.serde import JSON, JSONObject


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorInfo:
    """Why an attempt (or a run) failed."""

    code: str
    """Stable identifier, e.g. ``timeout`` or ``http_503``; matched by ``non_retryable``."""
    message: str
    retryable: bool = True
    retry_after: float | None = None
    """Seconds the handler asked to wait before the next attempt (``Retry(delay)``)."""
    details: JSONObject = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base of every event: when it happened."""

    type: ClassVar[str]
    at: datetime


def _event(cls: type[Event]) -> type[Event]:
    cls.type = cls.__name__
    return cls


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RunStarted(Event):
    run_id: str
    workflow: str
    version: int
    input: JSON
    tenant: str = "default"
    priority: int | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    not_before: datetime | None = None
    """A delayed run: its first steps are queued to start at this time."""
    parent_step: str | None = None
    """A child run: the ``workflow`` step of ``parent_run_id`` that started it."""
    traceparent: str | None = None
    """The run's own span context (W3C ``traceparent``): the trace it belongs to."""
    parent_span_id: str | None = None
    """The span of whoever started the run, when it sent a ``traceparent``."""


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class StepScheduled(Event):
    """An attempt is queued; ``input`` is exactly what the handler will see (secrets sealed)."""

    step_id: str
    attempt: int
    input: JSON
    run_at: datetime
    compensation: bool = False


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class StepStarted(Event):
    step_id: str
    attempt: int
    worker_id: str | None = None
    compensation: bool = False
    child_run_id: str | None = None
    """A ``workflow`` step: the child run this attempt started (and waits for)."""


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class StepHeartbeat(Event):
    step_id: str
    attempt: int
    compensation: bool = False


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class StepSucceeded(Event):
    step_id: str
    attempt: int
    output: JSON
    compensation: bool = False
    signal: int | None = None
    """A ``wait`` step resolved by a signal: its index in the run's signals (now consumed)."""


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class StepFailed(Event):
    step_id: str
    attempt: int
    error: ErrorInfo
    compensation: bool = False
    signal: int | None = None
    """A ``wait`` step failed by a signal (an approval refused): its index, now consumed."""


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class StepRetryScheduled(Event):
    """Another attempt is queued for ``run_at``.

    After a crash (``crash``) or a worker giving the attempt back on shutdown (``released``) the
    attempt number is unchanged: the handler's own retry budget is not spent.
    """

    step_id: str
    attempt: int
    run_at: datetime
    delay: float
    reason: Literal["error", "crash", "released"] = "error"
    compensation: bool = False


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class StepLeaseExpired(Event):
    """The worker running the attempt stopped heartbeating: it crashed or was cut off."""

    step_id: str
    attempt: int
    worker_id: str | None = None
    compensation: bool = False


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class StepSkipped(Event):
    step_id: str
    reason: str


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class StepCancelled(Event):
    step_id: str
    reason: str
    compensation: bool = False


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class SignalReceived(Event):
    name: str
    payload: JSON = None


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class PlanGenerated(Event):
    step_id: str
    plan: JSON


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class PlanCacheHit(Event):
    step_id: str
    key: str
    similarity: float


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class PlanCacheMiss(Event):
    step_id: str
    key: str


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CompensationStarted(Event):
    """The run failed; ``steps`` will be compensated in this order (reverse of completion)."""

    steps: tuple[str, ...]
    error: ErrorInfo
    failed_step: str | None = None


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CompensationSucceeded(Event):
    """Every compensation action succeeded: the run ends ``compensated``."""


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class CompensationFailed(Event):
    """Some compensation actions failed for good: the run ends ``failed``."""

    steps: tuple[str, ...]
    error: ErrorInfo


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RunSucceeded(Event):
    output: JSON


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RunFailed(Event):
    error: ErrorInfo
    failed_step: str | None = None


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RunCancelled(Event):
    reason: str = "cancelled"


@_event
@dataclass(frozen=True, kw_only=True, slots=True)
class RunRetried(Event):
    """A failed or cancelled run is reopened: ``steps`` (and what they skipped) run again."""

    steps: tuple[str, ...]
    traceparent: str | None = None
    """The reopened run's span context: a new span in the run's trace (span ids are unique)."""
    parent_span_id: str | None = None
    """The span of the run before it was reopened: the new span's parent."""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        RunStarted,
        StepScheduled,
        StepStarted,
        StepHeartbeat,
        StepSucceeded,
        StepFailed,
        StepRetryScheduled,
        StepLeaseExpired,
        StepSkipped,
        StepCancelled,
        SignalReceived,
        PlanGenerated,
        PlanCacheHit,
        PlanCacheMiss,
        CompensationStarted,
        CompensationSucceeded,
        CompensationFailed,
        RunSucceeded,
        RunFailed,
        RunCancelled,
        RunRetried,
    )
}


def to_data(event: Event) -> dict[str, Any]:
    """The event as JSON data: ``{"type": ..., "at": ISO-8601, ...fields}``."""
    data: dict[str, Any] = {"type": event.type}
    for name in _FIELD_NAMES[event.type]:
        value = getattr(event, name)
        if value is None and name in _WRITTEN_WHEN_SET:
            continue
        data[name] = _encode(value)
    return data


_WRITTEN_WHEN_SET = frozenset(
    {"parent_step", "child_run_id", "signal", "traceparent", "parent_span_id"}
)
"""Fields added after histories were first stored, written only when set: the events of runs
that use no child runs or signals stay as they always were (and as small)."""


def from_data(data: dict[str, Any]) -> Event:
    """Rebuild an event from ``to_data``'s output (``KeyError``/``ValueError`` if malformed).

    Fields this version does not know are left out: a newer process may have written them (a
    rolling upgrade), and what they add is optional by construction (``_WRITTEN_WHEN_SET``)."""
    cls = EVENT_TYPES[data["type"]]
    hints, known = _HINTS[cls.type], _FIELD_NAMES[cls.type]
    kwargs = {name: _decode(hints[name], value) for name, value in data.items() if name in known}
    return cls(**kwargs)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ErrorInfo):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


_FIELD_NAMES: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in dataclasses.fields(cls)) for name, cls in EVENT_TYPES.items()
}
"""Looked up once: ``dataclasses.fields`` per event was a tenth of a run start's CPU."""
_HINTS: dict[str, dict[str, Any]] = {
    name: typing.get_type_hints(cls) for name, cls in EVENT_TYPES.items()
}


def _decode(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if datetime in options:
        return datetime.fromisoformat(value)
    if ErrorInfo in options:
        return ErrorInfo(**value)
    if typing.get_origin(hint) is tuple:
        return tuple(value)
    return value

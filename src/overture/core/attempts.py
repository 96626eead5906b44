"""Every attempt of every step of a run, derived from its history: ``attempts(events)``.

An attempt is one time a step (or its compensation action) was queued for a handler, from its
``StepScheduled`` or ``StepRetryScheduled`` to how it ended. A worker that crashed (its lease
expired) or gave the attempt back on shutdown does not spend the handler's retry budget, so
the attempt that runs next carries the same *number*: numbers repeat, attempts do not.

Handlers' log lines are stored with their attempt's completion, keyed by ``(step_id, attempt,
compensation)``; ``lines_by_attempt`` hands each line to the attempt that wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Protocol, TypeVar

from overture.core import events as ev
from overture.core.events import ErrorInfo
from overture.serde import JSON

AttemptStatus = Literal[
    "queued", "running", "succeeded", "failed", "expired", "cancelled", "released"
]
"""``expired``: its worker stopped heartbeating (crashed); ``released``: its worker gave it back
unrun on shutdown. Either way the same number runs again."""
Requeued = Literal["error", "crash", "released"]

AttemptKey = tuple[str, int, bool]
"""``(step_id, attempt number, compensation)``: how log lines name their attempt."""

_HTTP_CODE = re.compile(r"^http_([1-5][0-9][0-9])$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Attempt:
    """One attempt of a step, as its history tells it."""

    step_id: str
    attempt: int
    """The number the handler saw (``ctx.attempt``); a crash or a release runs it again."""
    compensation: bool = False
    status: AttemptStatus
    queued_after: Requeued | None = None
    """Why it was queued again: after an ``error``, a ``crash`` or a ``released`` attempt;
    None for a step's first attempt (or its first after the run was retried)."""
    worker_id: str | None = None
    scheduled_at: datetime
    """When it was queued."""
    run_at: datetime
    """When it could start (later than ``scheduled_at`` while backing off)."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorInfo | None = None
    """Why it failed, expired or was cancelled."""
    status_code: int | None = None
    """The HTTP status of the response it got, when its output or error carries one."""

    @property
    def key(self) -> AttemptKey:
        return (self.step_id, self.attempt, self.compensation)

    @property
    def duration(self) -> float | None:
        """Seconds from its start to its end (None until it has both)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def attempts(events: Iterable[ev.Event]) -> list[Attempt]:
    """Every attempt in ``events`` (a run's history), in the order they were queued.

    Total, like ``fold``: an event about no open attempt is ignored, except a start, which
    opens one. A step that failed before any attempt ran (a bad template, or a crash budget
    spent after its last attempt expired) adds none.
    """
    found: list[Attempt] = []
    open_: dict[tuple[str, bool], int] = {}
    """The index in ``found`` of each step's queued or running attempt."""
    for event in events:
        if not isinstance(event, _STEP_EVENTS):
            continue
        where = (event.step_id, event.compensation)
        index = open_.pop(where, None)
        if isinstance(event, ev.StepScheduled | ev.StepRetryScheduled):
            if index is not None and isinstance(event, ev.StepRetryScheduled):
                # Given back by its worker: it ends here, and the same number is queued again.
                found[index] = _ended(found[index], "released", event.at)
            open_[where] = len(found)
            after = event.reason if isinstance(event, ev.StepRetryScheduled) else None
            found.append(_queued(event, after))
        elif isinstance(event, ev.StepStarted):
            if index is None:
                index = len(found)
                found.append(_queued(event, None))
            open_[where] = index
            found[index] = replace(
                found[index],
                status="running",
                attempt=event.attempt,
                worker_id=event.worker_id,
                started_at=event.at,
            )
        elif index is not None:
            found[index] = _end(found[index], event)
    return found


def _end(
    attempt: Attempt,
    event: ev.StepSucceeded | ev.StepFailed | ev.StepLeaseExpired | ev.StepCancelled,
) -> Attempt:
    """``attempt`` as ``event`` ended it."""
    match event:
        case ev.StepSucceeded(output=output):
            return _ended(attempt, "succeeded", event.at, code=_output_code(output))
        case ev.StepFailed(error=error):
            return _ended(attempt, "failed", event.at, error, _error_code(error))
        case ev.StepLeaseExpired(worker_id=worker):
            lost = ErrorInfo(
                code="lease_expired", message="the worker running this step stopped heartbeating"
            )
            ended = _ended(attempt, "expired", event.at, lost)
            return replace(ended, worker_id=ended.worker_id or worker)
        case ev.StepCancelled(reason=reason):
            why = ErrorInfo(code="cancelled", message=reason, retryable=False)
            return _ended(attempt, "cancelled", event.at, why)


_STEP_EVENTS = (
    ev.StepScheduled,
    ev.StepRetryScheduled,
    ev.StepStarted,
    ev.StepSucceeded,
    ev.StepFailed,
    ev.StepLeaseExpired,
    ev.StepCancelled,
)


def _queued(
    event: ev.StepScheduled | ev.StepRetryScheduled | ev.StepStarted, after: Requeued | None
) -> Attempt:
    run_at = event.at if isinstance(event, ev.StepStarted) else event.run_at
    return Attempt(
        step_id=event.step_id,
        attempt=event.attempt,
        compensation=event.compensation,
        status="queued",
        queued_after=after,
        scheduled_at=event.at,
        run_at=run_at,
    )


def _ended(
    attempt: Attempt,
    status: AttemptStatus,
    at: datetime,
    error: ErrorInfo | None = None,
    code: int | None = None,
) -> Attempt:
    return replace(attempt, status=status, finished_at=at, error=error, status_code=code)


def _output_code(output: JSON) -> int | None:
    """The ``status`` of an HTTP response's output (``{status, headers, body}``)."""
    return _code(output.get("status")) if isinstance(output, dict) else None


def _error_code(error: ErrorInfo) -> int | None:
    """The status an HTTP error names, in its details or its code (``http_503``)."""
    if (found := _code(error.details.get("status"))) is not None:
        return found
    match = _HTTP_CODE.match(error.code)
    return int(match.group(1)) if match else None


def _code(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


# --- log lines ---------------------------------------------------------------------------------


class Line(Protocol):
    """A stored log line, as far as finding its attempt goes."""

    @property
    def step_id(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    @property
    def compensation(self) -> bool: ...

    @property
    def at(self) -> datetime: ...


L = TypeVar("L", bound=Line)

_WROTE_LINES: frozenset[AttemptStatus] = frozenset({"succeeded", "failed"})
"""Lines are stored with a worker's completion, so only an attempt that ended with a result
wrote any; and a step's last attempt, if running: the history may have been read just before
its completion was stored, and the lines just after."""


def lines_by_attempt(found: Sequence[Attempt], lines: Iterable[L]) -> list[list[L]]:
    """Each attempt's lines (in the order given), one list per attempt of ``found``.

    Lines name their attempt by number, so when a retried run ran the same number again, the
    attempts that ended with a result are told apart by time: a line belongs to the first of
    them that had not been followed by the next one's start, halfway through the gap (the
    worker's clock and the store's may differ a little; a retry comes long after a failure).
    A line naming no attempt in ``found`` is dropped.
    """
    out: list[list[L]] = [[] for _ in found]
    owners: dict[AttemptKey, list[int]] = {}
    for index, attempt in enumerate(found):
        owners.setdefault(attempt.key, []).append(index)
    bounds = {key: _bounds(found, indices) for key, indices in owners.items()}
    for line in lines:
        key = (line.step_id, line.attempt, line.compensation)
        if key not in bounds:
            continue
        out[_owner(bounds[key], line.at)].append(line)
    return out


def _bounds(found: Sequence[Attempt], indices: list[int]) -> list[tuple[int, datetime | None]]:
    """The attempts that may own lines of one key, each with the last time a line of its may
    bear (None: no limit)."""
    last = indices[-1]
    wrote = [
        i
        for i in indices
        if found[i].status in _WROTE_LINES or (i == last and found[i].status == "running")
    ] or [last]
    bounded: list[tuple[int, datetime | None]] = []
    for this, following in zip(wrote, [*wrote[1:], None], strict=True):
        end = found[this].finished_at
        if following is None or end is None:
            bounded.append((this, None))
            continue
        start = found[following].started_at or found[following].scheduled_at
        bounded.append((this, end + (start - end) / 2 if start > end else end))
    return bounded


def _owner(bounds: list[tuple[int, datetime | None]], at: datetime) -> int:
    for index, until in bounds[:-1]:
        if until is not None and at <= until:
            return index
    return bounds[-1][0]

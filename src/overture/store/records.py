"""What stores hand back: plain, immutable records (no rows, no cursors, no SQL types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from overture.core import events as ev
from overture.core.events import ErrorInfo
from overture.core.model import Workflow
from overture.core.state import RunStatus
from overture.serde import JSON

T = TypeVar("T")

DEFAULT_TENANT = "default"


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowRecord:
    """One registered version of a workflow definition."""

    tenant: str
    name: str
    version: int
    digest: str
    """SHA-256 of the canonical definition: registering the same definition again is a no-op."""
    workflow: Workflow
    created_at: datetime
    disabled: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class StartRun:
    """A request to start a run of a registered workflow."""

    workflow: str
    input: JSON = None
    version: int | None = None
    """None: the latest enabled version."""
    tenant: str = DEFAULT_TENANT
    idempotency_key: str | None = None
    priority: int | None = None
    correlation_id: str | None = None
    parent_run_id: str | None = None
    run_at: datetime | None = None
    """Start no earlier than this (a delayed run); None: now."""
    run_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RunRecord:
    """A run as the ``runs`` projection holds it."""

    id: str
    tenant: str
    workflow: str
    version: int
    status: RunStatus
    input: JSON
    output: JSON = None
    error: ErrorInfo | None = None
    priority: int | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    events: int = 0
    """Number of events in the run's history (the last ``seq``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredEvent:
    """An event with its position in the run's history (1-based, gapless)."""

    run_id: str
    seq: int
    event: ev.Event


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimedJob:
    """A leased attempt: the worker runs it and completes it with ``token``."""

    id: int
    token: str
    run_id: str
    tenant: str
    workflow: str
    step_id: str
    attempt: int
    compensation: bool
    uses: str
    input: JSON
    timeout: float | None
    lease_until: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Lease:
    """The fencing pair a worker holds for one claimed job."""

    job_id: int
    token: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LogEntry:
    """One line a handler logged during an attempt, as the worker hands it to the store."""

    at: datetime
    """When it was logged, by the worker's clock."""
    level: str
    message: str
    fields: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """How an attempt ended, as the worker reports it (``output`` when ``error`` is None)."""

    job_id: int
    token: str
    output: JSON = None
    error: ErrorInfo | None = None
    logs: tuple[LogEntry, ...] = ()
    """What the handler logged; stored only if the completion is (same transaction)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LogRecord:
    """A stored log line of one attempt of a step; ``id`` orders a run's lines."""

    id: int
    run_id: str
    step_id: str
    attempt: int
    compensation: bool
    at: datetime
    level: str
    message: str
    fields: dict[str, JSON]


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadLetter:
    """A step that failed for good, kept until someone requeues it."""

    id: int
    tenant: str
    run_id: str
    workflow: str
    step_id: str
    compensation: bool
    attempts: int
    error: ErrorInfo
    created_at: datetime
    requeued_at: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerRecord:
    """A worker process, as it last reported itself."""

    id: str
    host: str
    pid: int
    concurrency: int
    handlers: tuple[str, ...]
    started_at: datetime
    last_seen: datetime
    stopped_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.stopped_at is None


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: never its plaintext, which only its creator ever saw."""

    id: str
    """The key's public part (``ovt_<id>_...``): shown in listings, used to revoke it."""
    tenant: str
    """The tenant every request made with the key acts as."""
    name: str
    """A label for people ("ci", "dashboard"); may be empty."""
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None = None
    """Recorded at most once a minute, so up to a minute behind."""
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, kw_only=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_cursor`` back to get the next (None: last page)."""

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SchemaStatus:
    """Which migrations a database has and which this version of Overture would add."""

    applied: tuple[int, ...]
    pending: tuple[int, ...]

    @property
    def current(self) -> bool:
        return not self.pending

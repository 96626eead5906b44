"""What stores hand back: plain, immutable records (no rows, no cursors, no SQL types)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

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
    parent_step: str | None = None
    """A child run: the ``workflow`` step of ``parent_run_id`` that waits for it."""
    traceparent: str | None = None
    """The caller's W3C ``traceparent``: the run joins its trace (invalid: a new trace)."""


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
    not_before: datetime | None = None
    """A delayed run's start time: none of its steps starts earlier."""


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
    traceparent: str | None = None
    """The run's span context: the attempt's span is its child."""


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


WORKER_LIVE_WITHIN = 30.0
"""Seconds since its last heartbeat within which a running worker counts as live."""
WORKER_RECENT_WITHIN = 24 * 3600.0
"""Seconds after its last heartbeat for which a running (not stopped) worker is still reported
by ``/metrics`` and ``overture status``; ``overture workers ls`` lists every worker."""


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

    def live(self, now: datetime) -> bool:
        """Running and seen within ``WORKER_LIVE_WITHIN`` seconds of ``now`` (the database's
        time, so clock skew between hosts cannot make a worker look dead)."""
        return self.running and (now - self.last_seen).total_seconds() <= WORKER_LIVE_WITHIN

    def recent(self, now: datetime) -> bool:
        """Running and seen within ``WORKER_RECENT_WITHIN`` of ``now``: a crashed worker never
        says it stopped, so after that long it is left out of gauges and ``overture status``."""
        return self.running and (now - self.last_seen).total_seconds() <= WORKER_RECENT_WITHIN


def live_workers(workers: Iterable[WorkerRecord], now: datetime) -> int:
    """How many of ``workers`` are live at ``now`` (the database's time where it is known)."""
    return sum(1 for w in workers if w.live(now))


def seconds_since(then: datetime, now: datetime) -> float:
    """Seconds from ``then`` to ``now``, never negative: a time stamped a moment after ``now``
    was read (or by a clock a little ahead) is "just now"."""
    return max(0.0, (now - then).total_seconds())


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
class NewEvent:
    """An event to record and hand to every workflow that listens for its type."""

    type: str
    payload: JSON = None
    id: str | None = None
    """Unique per tenant: an id seen before starts nothing. None: a fresh id."""
    tenant: str = DEFAULT_TENANT
    user_id: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    """Also unique per tenant when given: a second event with it starts nothing."""
    source: str | None = None
    """Who sent it: an application's name, or ``webhook:<source>`` for a verified webhook."""
    meta: Mapping[str, JSON] = field(default_factory=dict)
    """What else the sender said (an EventEnvelope's timestamp, target, trace...)."""
    traceparent: str | None = None
    """The sender's W3C ``traceparent``: the runs the event starts join its trace."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EventRoute:
    """What an event did for one workflow that listens for its type."""

    workflow: str
    version: int | None = None
    run_id: str | None = None
    """The run it started (None: it started none, ``reason`` says why)."""
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EventRecord:
    """An event as stored, with the runs it started."""

    id: str
    tenant: str
    type: str
    payload: JSON
    user_id: str | None
    correlation_id: str | None
    idempotency_key: str | None
    source: str | None
    meta: Mapping[str, JSON]
    routes: tuple[EventRoute, ...]
    received_at: datetime
    seq: int
    """Order of arrival (the listing's cursor)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookSecret:
    """One signing secret of a webhook source; several are active while one is rotated out."""

    value: str = field(repr=False)
    added_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookSource:
    """Where webhooks come from (``POST /v1/webhooks/{name}``) and how to verify them."""

    name: str
    scheme: str
    secrets: tuple[WebhookSecret, ...]
    options: Mapping[str, Any]
    tenant: str = DEFAULT_TENANT
    created_at: datetime | None = None
    updated_at: datetime | None = None
    origin: Literal["api", "config"] = "api"

    def active_secrets(self, now: datetime) -> list[str]:
        return [s.value for s in self.secrets if s.expires_at is None or s.expires_at > now]


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleSpec:
    """A cron schedule to create: runs of ``workflow`` at each tick of ``cron`` in ``timezone``."""

    id: str
    workflow: str
    cron: str
    timezone: str = "UTC"
    input: JSON = None
    catch_up: int = 0
    """Ticks missed while no scheduler ran: 0 skips them, N fires the last N."""
    tenant: str = DEFAULT_TENANT
    paused: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleRecord:
    """A schedule as stored."""

    tenant: str
    id: str
    workflow: str
    cron: str
    timezone: str
    input: JSON
    catch_up: int
    origin: Literal["api", "workflow"]
    """``workflow``: from the workflow's ``on.cron``, kept in step with its latest version."""
    paused: bool
    next_fire_at: datetime | None
    """The next tick (None while paused)."""
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Tick:
    """One tick of a schedule that fired: the run it started, or why it started none."""

    tenant: str
    schedule_id: str
    tick: datetime
    fired_at: datetime
    run_id: str | None = None
    error: str | None = None


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


@dataclass(frozen=True, kw_only=True, slots=True)
class CircuitRecord:
    """A circuit breaker as stored: ``failures`` counts those in the current window."""

    tenant: str
    key: str
    status: str
    failures: int
    threshold: int
    window: float
    cooldown: float
    opened_at: datetime | None
    open_until: datetime | None
    updated_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueGauge:
    """The queued and running attempts of one queue (the handler they use) of one tenant."""

    queue: str
    tenant: str
    ready: int
    """Due and not started: waiting for a worker, or held by a flow control (a full slot, an
    empty rate bucket, an open circuit), which moves a job's ``run_at`` but not its ``due_at``."""
    delayed: int
    """Not due yet: backing off before a retry, a delayed run, a ``sleep`` step's timer."""
    oldest_ready_at: datetime | None
    """When the longest-waiting ready attempt became due (``due_at``); None when none is."""
    running: int = 0
    """Claimed by a worker and not finished yet (leased)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunGauge:
    """How many runs of one workflow of one tenant are in one unfinished status."""

    workflow: str
    tenant: str
    status: str
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Observation:
    """Shared state every process reads the same from the database: what ``/metrics`` and
    ``overture status`` report as gauges (``Store.observe``)."""

    at: datetime
    """The database's time when it was read."""
    queues: tuple[QueueGauge, ...]
    runs: tuple[RunGauge, ...]
    """Runs not finished yet, by workflow, tenant and status."""
    dead_letters: tuple[tuple[str, int], ...]
    """``(tenant, steps in the dead-letter queue not requeued)``, for tenants with any."""

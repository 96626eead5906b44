"""The one storage interface the runtime, the client and the API talk to.

Every method that changes state is one transaction. Completions are fenced: a completion whose
``(job id, lease token)`` no longer holds a lease is refused, so a worker that lost its lease can
never record a result. Lease times come from the database's clock, never the worker's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from overture.core.admission import NO_LIMITS, TenantLimits
from overture.core.advance import Transition
from overture.core.model import Workflow
from overture.core.state import RunState, RunStatus
from overture.serde import JSON
from overture.store.records import (
    DEFAULT_TENANT,
    ApiKeyRecord,
    CircuitRecord,
    ClaimedJob,
    Completion,
    DeadLetter,
    EventRecord,
    Lease,
    LogRecord,
    NewEvent,
    Observation,
    Page,
    RunRecord,
    ScheduleRecord,
    ScheduleSpec,
    SchemaStatus,
    StartRun,
    StoredEvent,
    Tick,
    WebhookSource,
    WorkerRecord,
    WorkflowRecord,
)

DEFAULT_LEASE = 30.0
"""Seconds a claim holds a job before another worker may take it over."""


class StoreObserver(Protocol):
    """Told what this process's transactions did, after they commit: metrics count it and
    traces end their run spans from it. Called on the store's writer thread (SQLite) or its
    event loop (PostgreSQL); it must be quick and must not raise."""

    def recorded(self, transitions: Sequence[Transition]) -> None:
        """Run transitions (events, queued attempts) this process committed."""

    def deferred(self, deferrals: Sequence[tuple[str, str]]) -> None:
        """Due jobs a claim left queued, one ``(tenant, reason)`` each (reason: ``slot``,
        ``rate`` or ``circuit``); a job held across several claims is reported by each."""


class Store(Protocol):
    """Runs, their histories, the job queue, workers and the dead-letter queue."""

    observers: list[StoreObserver]
    """Told what this process's committed transactions did (metrics, traces), after each
    commit and before the write's caller gets its result; never about a write that failed."""

    url: str
    """Where the data lives, without credentials."""

    # --- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect (and, for the embedded store, create and migrate the database)."""

    async def close(self) -> None: ...

    async def migrate(self) -> SchemaStatus:
        """Apply pending migrations (serialised across processes) and return the new status."""

    async def schema_status(self) -> SchemaStatus: ...

    # --- workflows -------------------------------------------------------------------------
    async def register_workflow(
        self, workflow: Workflow, *, tenant: str = DEFAULT_TENANT
    ) -> WorkflowRecord:
        """Store a workflow version; the same definition again returns the existing record.

        A different definition under an existing (name, version) raises ``Conflict``.
        """

    async def get_workflow(
        self, name: str, version: int | None = None, *, tenant: str = DEFAULT_TENANT
    ) -> WorkflowRecord:
        """A version (None: the latest, enabled or not); ``NotFound`` if there is none."""

    async def list_workflows(self, *, tenant: str = DEFAULT_TENANT) -> list[WorkflowRecord]:
        """Every version of every workflow of ``tenant`` (not only the latest of each), disabled
        ones included: by name, then version, oldest version first."""

    async def workflow_versions(
        self, name: str, *, tenant: str = DEFAULT_TENANT
    ) -> list[WorkflowRecord]:
        """Every version of one workflow, newest first; ``NotFound`` if it has none."""

    async def set_workflow_disabled(
        self, name: str, disabled: bool, *, tenant: str = DEFAULT_TENANT
    ) -> None:
        """Disable (or enable) every version of a workflow: a disabled one starts no runs."""

    # --- runs ------------------------------------------------------------------------------
    async def start_run(self, request: StartRun) -> tuple[RunRecord, bool]:
        """Start a run in one transaction; ``(existing run, False)`` for a repeated key."""

    async def get_run(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunRecord:
        """``NotFound`` for an unknown run or another tenant's (None: any tenant)."""

    async def run_state(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunState:
        """The run's state folded from its stored history."""

    async def list_runs(
        self,
        *,
        tenant: str | None = DEFAULT_TENANT,
        status: RunStatus | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
        scheduled: bool = False,
    ) -> Page[RunRecord]:
        """Newest first; ``scheduled``: only delayed runs whose start time is still ahead."""

    async def events(
        self,
        run_id: str,
        *,
        tenant: str | None = DEFAULT_TENANT,
        after: int = 0,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """The run's history from ``seq > after``, in order."""

    async def logs(
        self,
        run_id: str,
        *,
        tenant: str | None = DEFAULT_TENANT,
        after: int = 0,
        limit: int | None = None,
    ) -> list[LogRecord]:
        """What the run's handlers logged, in order, from the line after id ``after`` (0: all).

        Lines are written with their attempt's completion, so a reader passing the last id it
        saw as ``after`` never misses one. ``NotFound`` for an unknown run or another tenant's.
        """

    async def signal_run(
        self, run_id: str, name: str, payload: JSON = None, *, tenant: str | None = DEFAULT_TENANT
    ) -> StoredEvent:
        """Append ``SignalReceived(name, payload)`` to a run's history (the engine then decides,
        as after any event) and return it with its ``seq``.

        ``Conflict`` (``run_finished``) once the run has finished; ``NotFound`` for an unknown
        run or another tenant's.
        """

    async def cancel_run(
        self, run_id: str, *, tenant: str | None = DEFAULT_TENANT, reason: str = "cancelled"
    ) -> RunRecord:
        """Cancel a run (a finished run is returned unchanged); running handlers are told
        through their next heartbeat."""

    async def retry_run(
        self,
        run_id: str,
        *,
        tenant: str | None = DEFAULT_TENANT,
        steps: Sequence[str] | None = None,
    ) -> RunRecord:
        """Reopen a failed or cancelled run: its failed steps run again (``NotRetryable``)."""

    # --- queue -----------------------------------------------------------------------------
    async def claim(
        self,
        worker_id: str,
        *,
        limit: int,
        lease: float = DEFAULT_LEASE,
        handlers: Sequence[str] | None = None,
        limits: TenantLimits = NO_LIMITS,
    ) -> list[ClaimedJob]:
        """Lease up to ``limit`` due jobs, lowest priority number first, tenants in turn within
        a priority, FIFO within a tenant.

        Only jobs whose handler is in ``handlers`` (None: any) are taken. Their flow controls
        hold, with ``limits`` added for every tenant: a job refused by one is deferred (see
        ``overture.core.admission``), never failed, and keeps its attempt.
        """

    async def list_circuits(self, *, tenant: str | None = None) -> list[CircuitRecord]:
        """The circuit breakers that exist (one is made by its first claim), by tenant and key."""

    async def reset_circuit(self, key: str, *, tenant: str) -> CircuitRecord:
        """Close a circuit by hand and let the jobs it parked start (``NotFound`` if none)."""

    async def heartbeat(
        self, worker_id: str, leases: Sequence[Lease], *, lease: float = DEFAULT_LEASE
    ) -> set[int]:
        """Extend the leases still held; return the ids of jobs no longer held (reaped after
        expiring, or cancelled): their handlers must stop.

        A lease past ``lease_until`` that no reaper has expired yet is still held: nobody else
        can have the attempt, so renewing it (or completing it) is safe."""

    async def complete(self, completions: Sequence[Completion]) -> list[bool]:
        """Record finished attempts and advance their runs; False where the lease was lost."""

    async def release(self, leases: Sequence[Lease]) -> int:
        """Give claimed jobs back to the queue unrun (graceful shutdown); no budget is spent."""

    async def reap(self, *, limit: int = 100) -> int:
        """Expire leases past ``lease_until``: each attempt is re-queued within its crash
        budget or failed. Returns how many were expired."""

    async def wait_for_jobs(self, timeout: float) -> None:
        """Return when new jobs may be claimable, or after ``timeout`` seconds."""

    async def queue_depth(self) -> int:
        """Jobs queued (due or not) and not yet claimed."""

    async def observe(self, tenant: str | None = None) -> Observation:
        """Queues, unfinished runs and dead letters of ``tenant`` (None: every tenant's), read
        in one snapshot; only that tenant's rows are read."""

    # --- workers ---------------------------------------------------------------------------
    async def worker_seen(self, worker: WorkerRecord) -> None:
        """Insert or refresh a worker's row (``last_seen`` set from the database clock)."""

    async def worker_stopped(self, worker_id: str) -> None: ...

    async def list_workers(self) -> list[WorkerRecord]:
        """Every worker that ever reported, stopped ones too, newest first."""

    # --- API keys --------------------------------------------------------------------------
    async def create_api_key(
        self, *, key_id: str, tenant: str, name: str, secret_hash: str, scopes: Sequence[str]
    ) -> ApiKeyRecord:
        """Store a key made by ``overture.apikeys.new_key``: its id and hash, never the key.

        ``ValueError`` for unknown scopes; ``Conflict`` (``api_key_exists``) if the id or the
        hash is taken.
        """

    async def api_key(self, secret_hash: str) -> ApiKeyRecord | None:
        """The active key with this hash (``overture.apikeys.hash_key``), or None.

        Cheap enough for every request: a key found is trusted for a few seconds
        (``store.keys.KEY_CACHE_SECONDS``) without asking the database again, and its use is
        written at most once a minute. Revoking a key through this store refuses it at once;
        revoked through another process, it is refused here within those few seconds.
        """

    async def list_api_keys(
        self, *, tenant: str | None = None, include_revoked: bool = False
    ) -> list[ApiKeyRecord]:
        """Keys of ``tenant`` (None: every tenant's), oldest first; revoked ones if asked."""

    async def revoke_api_key(self, key_id: str, *, tenant: str | None = None) -> ApiKeyRecord:
        """Revoke a key for good; revoking it again changes nothing. ``NotFound`` for an unknown
        id or another tenant's key (None: any tenant)."""

    async def has_api_keys(self) -> bool:
        """Whether any key is active (without one the API may run open, in development)."""

    # --- events ----------------------------------------------------------------------------
    async def record_event(self, event: NewEvent) -> tuple[EventRecord, bool]:
        """Store an event and, in the same transaction, start a run of every workflow whose
        latest version listens for its type (``on.events``, with its condition).

        ``(the stored event, False)`` when its id or idempotency key was seen before: nothing
        starts. A workflow that listens but cannot start (disabled, input refused) gets a
        route with the reason; the others still start.
        """

    async def get_event(self, event_id: str, *, tenant: str = DEFAULT_TENANT) -> EventRecord:
        """``NotFound`` for an unknown id or another tenant's event."""

    async def list_events(
        self,
        *,
        tenant: str = DEFAULT_TENANT,
        type: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[EventRecord]:
        """Newest first."""

    # --- webhook sources -------------------------------------------------------------------
    async def create_webhook_source(self, source: WebhookSource) -> WebhookSource:
        """``Conflict`` (``webhook_source_exists``) if the name is taken, by any tenant."""

    async def webhook_source(self, name: str, *, tenant: str | None = None) -> WebhookSource:
        """A source with its secrets (None: any tenant's, as a delivery finds it)."""

    async def list_webhook_sources(
        self, *, tenant: str = DEFAULT_TENANT
    ) -> list[WebhookSource]: ...

    async def rotate_webhook_secret(
        self, name: str, secret: str, *, retire_after: float, tenant: str = DEFAULT_TENANT
    ) -> WebhookSource:
        """Make ``secret`` the source's first; the others stay valid for ``retire_after``
        seconds (0: retired at once)."""

    async def delete_webhook_source(self, name: str, *, tenant: str = DEFAULT_TENANT) -> None: ...

    # --- schedules -------------------------------------------------------------------------
    async def create_schedule(self, spec: ScheduleSpec) -> ScheduleRecord:
        """``NotFound`` for an unknown workflow, ``Conflict`` (``schedule_exists``) for a taken
        id, ``CronInvalid`` for a bad expression or zone."""

    async def get_schedule(
        self, schedule_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> ScheduleRecord: ...

    async def list_schedules(self, *, tenant: str = DEFAULT_TENANT) -> list[ScheduleRecord]:
        """By id, the workflows' own (``<workflow>:cron:<n>``) included."""

    async def schedule_ticks(
        self, schedule_id: str, *, tenant: str = DEFAULT_TENANT, limit: int = 20
    ) -> list[Tick]:
        """The schedule's last ticks that fired, newest first."""

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, *, tenant: str = DEFAULT_TENANT
    ) -> ScheduleRecord:
        """Pause, or resume from the next tick (ticks while paused never fire)."""

    async def delete_schedule(self, schedule_id: str, *, tenant: str = DEFAULT_TENANT) -> None:
        """``Conflict`` (``schedule_from_workflow``) for a workflow's own schedule."""

    async def fire_schedules(self, *, now: datetime | None = None, limit: int = 100) -> list[Tick]:
        """Fire every due tick of up to ``limit`` schedules (``now``: the database's clock).

        Each tick fires at most once however many schedulers call this at the same time; a tick
        found more than ``MISFIRE_GRACE`` late fires only if its schedule catches up.
        """

    async def next_schedule_at(self) -> datetime | None:
        """When the next tick of any schedule is due (None: no schedule runs)."""

    # --- dead letters ----------------------------------------------------------------------
    async def dead_letters(
        self, *, tenant: str | None = DEFAULT_TENANT, include_requeued: bool = False
    ) -> list[DeadLetter]: ...

    async def requeue(
        self, ids: Sequence[int], *, tenant: str | None = DEFAULT_TENANT
    ) -> list[RunRecord]:
        """Reopen the runs of these dead letters; each letter is marked requeued."""

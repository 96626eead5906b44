"""``overture.Client``: register workflows, start runs and follow them from Python.

    async with Client(database_url="sqlite:///./overture.db") as client:
        await client.register_workflow("workflows/trip.yml")
        run = await client.start_run("trip", {"traveller": "ana"}, idempotency_key="order-17")
        done = await client.wait(run.id, timeout=60)

A run records the workflow version it started with, so workers need the handler code only,
never the workflow file.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from overture.core.attempts import Attempt, attempts
from overture.core.document import Document
from overture.core.loader import from_document, load_workflow
from overture.core.model import Workflow
from overture.core.state import TERMINAL_RUN, RunState, RunStatus
from overture.serde import JSON
from overture.status import Status, read_status
from overture.store import DEFAULT_DATABASE_URL, Store, create_store
from overture.store.records import (
    DEFAULT_TENANT,
    CircuitRecord,
    DeadLetter,
    EventRecord,
    LogRecord,
    NewEvent,
    Page,
    RunRecord,
    ScheduleRecord,
    ScheduleSpec,
    StartRun,
    StoredEvent,
    WorkflowRecord,
)


class Client:
    """A tenant's view of one Overture database."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        tenant: str = DEFAULT_TENANT,
        store: Store | None = None,
    ) -> None:
        url = database_url or os.environ.get("OVERTURE_DATABASE_URL", DEFAULT_DATABASE_URL)
        self.store: Store = store or create_store(url)
        self.tenant = tenant
        self._owns_store = store is None
        self._open = False

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        if self._owns_store and not self._open:
            await self.store.open()
        self._open = True

    async def close(self) -> None:
        if self._owns_store and self._open:
            await self.store.close()
        self._open = False

    # --- workflows -------------------------------------------------------------------------
    async def register_workflow(
        self, definition: str | os.PathLike[str] | Workflow | Mapping[str, Any]
    ) -> WorkflowRecord:
        """Register a workflow from a file path, a ``Workflow``, or its data as a mapping."""
        return await self.store.register_workflow(_workflow(definition), tenant=self.tenant)

    async def get_workflow(self, name: str, version: int | None = None) -> WorkflowRecord:
        return await self.store.get_workflow(name, version, tenant=self.tenant)

    # --- runs ------------------------------------------------------------------------------
    async def start_run(
        self,
        workflow: str | Workflow,
        input: JSON = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
        correlation_id: str | None = None,
        run_id: str | None = None,
        run_at: datetime | None = None,
        delay: float | None = None,
        traceparent: str | None = None,
    ) -> RunRecord:
        """Start a run (a ``Workflow`` object is registered first); a repeated
        ``idempotency_key`` returns the run it started the first time.

        ``run_at`` (an aware datetime) or ``delay`` (seconds) starts its first steps later.
        ``traceparent`` (W3C Trace Context) makes the run's span a child of the caller's.
        """
        if run_at is not None and delay is not None:
            raise ValueError("pass run_at or delay, not both")
        if run_at is not None and run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware, e.g. datetime.now(UTC)")
        if delay is not None:
            if delay < 0:
                raise ValueError(f"delay must be >= 0 seconds, got {delay}")
            run_at = datetime.now(UTC) + timedelta(seconds=delay)
        if isinstance(workflow, Workflow):
            record = await self.register_workflow(workflow)
            name, version = record.name, record.version
        else:
            name = workflow
        run, _ = await self.store.start_run(
            StartRun(
                workflow=name,
                input={} if input is None else input,
                version=version,
                tenant=self.tenant,
                idempotency_key=idempotency_key,
                priority=priority,
                correlation_id=correlation_id,
                run_id=run_id,
                run_at=run_at,
                traceparent=traceparent,
            )
        )
        return run

    async def get_run(self, run_id: str) -> RunRecord:
        return await self.store.get_run(run_id, tenant=self.tenant)

    async def run_state(self, run_id: str) -> RunState:
        """The run's state (with every step's), folded from its history."""
        return await self.store.run_state(run_id, tenant=self.tenant)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
        scheduled: bool = False,
    ) -> Page[RunRecord]:
        """Newest first; ``scheduled``: only delayed runs whose start time is still ahead."""
        return await self.store.list_runs(
            tenant=self.tenant,
            status=status,
            workflow=workflow,
            since=since,
            cursor=cursor,
            limit=limit,
            scheduled=scheduled,
        )

    async def events(self, run_id: str, *, after: int = 0) -> list[StoredEvent]:
        return await self.store.events(run_id, tenant=self.tenant, after=after)

    async def logs(
        self, run_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[LogRecord]:
        """What the run's handlers logged (``ctx.log``), in order, after line ``after``."""
        return await self.store.logs(run_id, tenant=self.tenant, after=after, limit=limit)

    async def attempts(self, run_id: str) -> list[Attempt]:
        """Every attempt of the run's steps, from its history, in the order they were queued
        (``overture.core.attempts.lines_by_attempt`` hands each its ``logs``)."""
        return attempts(e.event for e in await self.events(run_id))

    async def cancel(self, run_id: str, reason: str = "cancelled") -> RunRecord:
        return await self.store.cancel_run(run_id, tenant=self.tenant, reason=reason)

    async def retry(self, run_id: str, steps: Sequence[str] | None = None) -> RunRecord:
        """Run the failed steps of a failed or cancelled run again."""
        return await self.store.retry_run(run_id, tenant=self.tenant, steps=steps)

    async def signal(self, run_id: str, name: str, payload: JSON = None) -> StoredEvent:
        """Send a run the signal ``name``: a ``wait`` step waiting for it resumes (an approval
        wait reads ``{"approved": true|false, "comment": ...}``)."""
        return await self.store.signal_run(run_id, name, payload, tenant=self.tenant)

    async def wait(self, run_id: str, timeout: float | None = None) -> RunRecord:
        """The run once it has finished; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            run = await self.get_run(run_id)
            if run.status in TERMINAL_RUN:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} is still {run.status} after {timeout:g}s")
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            await asyncio.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, 0.25)

    # --- dead letters ----------------------------------------------------------------------
    async def dead_letters(self, *, include_requeued: bool = False) -> list[DeadLetter]:
        return await self.store.dead_letters(tenant=self.tenant, include_requeued=include_requeued)

    async def requeue(self, ids: Sequence[int]) -> list[RunRecord]:
        return await self.store.requeue(ids, tenant=self.tenant)

    # --- flow control ----------------------------------------------------------------------
    async def circuits(self) -> list[CircuitRecord]:
        """The tenant's circuit breakers (one exists once a job that names it was claimed)."""
        return await self.store.list_circuits(tenant=self.tenant)

    async def reset_circuit(self, key: str) -> CircuitRecord:
        """Close a circuit by hand; the jobs it parked start at once."""
        return await self.store.reset_circuit(key, tenant=self.tenant)

    # --- operations ------------------------------------------------------------------------
    async def status(self) -> Status:
        """The tenant at a glance: queues, unfinished runs, dead letters, failing circuits and
        the workers; ``status.attention`` says what needs it (see ``overture.status``)."""
        return await read_status(self.store, tenant=self.tenant)

    # --- triggers --------------------------------------------------------------------------
    async def send_event(
        self,
        type: str,
        payload: JSON = None,
        *,
        id: str | None = None,
        user_id: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
        meta: Mapping[str, JSON] | None = None,
        traceparent: str | None = None,
    ) -> tuple[EventRecord, bool]:
        """Record an event and start a run of every workflow listening for ``type``;
        ``(the first event, False)`` for an id or key sent before (nothing starts). The runs
        join the trace of ``traceparent`` (W3C Trace Context)."""
        return await self.store.record_event(
            NewEvent(
                type=type,
                payload=payload,
                id=id,
                tenant=self.tenant,
                user_id=user_id,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
                source=source,
                meta=dict(meta or {}),
                traceparent=traceparent,
            )
        )

    async def get_event(self, event_id: str) -> EventRecord:
        return await self.store.get_event(event_id, tenant=self.tenant)

    async def create_schedule(
        self,
        schedule_id: str,
        workflow: str,
        cron: str,
        *,
        timezone: str = "UTC",
        input: JSON = None,
        catch_up: int = 0,
        paused: bool = False,
    ) -> ScheduleRecord:
        """Start ``workflow`` at each tick of ``cron`` read in ``timezone`` (fired by the
        schedulers of ``overture serve`` and ``overture worker``)."""
        spec = ScheduleSpec(
            id=schedule_id,
            workflow=workflow,
            cron=cron,
            timezone=timezone,
            input=input,
            catch_up=catch_up,
            paused=paused,
            tenant=self.tenant,
        )
        return await self.store.create_schedule(spec)

    async def list_schedules(self) -> list[ScheduleRecord]:
        return await self.store.list_schedules(tenant=self.tenant)

    async def pause_schedule(self, schedule_id: str, paused: bool = True) -> ScheduleRecord:
        """Pause (or, with ``paused=False``, resume from the next tick) a schedule."""
        return await self.store.set_schedule_paused(schedule_id, paused, tenant=self.tenant)


def _workflow(definition: str | os.PathLike[str] | Workflow | Mapping[str, Any]) -> Workflow:
    if isinstance(definition, Workflow):
        return definition
    if isinstance(definition, Mapping):
        return from_document(Document(data=dict(definition), positions={}, source=None))
    return load_workflow(Path(definition))

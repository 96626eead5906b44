"""Rows to records, shared by both dialects (their queries select columns in the same order).

``when`` turns the dialect's time value (integer microseconds in SQLite, ``datetime`` in
PostgreSQL) into an aware ``datetime``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from overture import serde
from overture.core.state import RunStatus
from overture.errors import NotFound
from overture.store.codec import EventCodec, error_from_text, workflow_from_text
from overture.store.records import (
    ApiKeyRecord,
    ClaimedJob,
    DeadLetter,
    LogRecord,
    RunRecord,
    WorkerRecord,
    WorkflowRecord,
)

Row = Sequence[Any]
When = Callable[[Any], datetime]


def _maybe(when: When, value: Any) -> datetime | None:
    return None if value is None else when(value)


def workflow_record(row: Row, when: When) -> WorkflowRecord:
    tenant, name, version, digest, definition, created_at, disabled = row
    return WorkflowRecord(
        tenant=tenant,
        name=name,
        version=version,
        digest=digest,
        workflow=workflow_from_text(definition),
        created_at=when(created_at),
        disabled=bool(disabled),
    )


def run_record(row: Row, codec: EventCodec, when: When) -> RunRecord:
    (
        run_id,
        tenant,
        workflow,
        version,
        status,
        input_,
        output,
        error,
        priority,
        correlation_id,
        idempotency_key,
        parent_run_id,
        created_at,
        updated_at,
        finished_at,
        last_seq,
        not_before,
    ) = row
    return RunRecord(
        id=run_id,
        tenant=tenant,
        workflow=workflow,
        version=version,
        status=cast(RunStatus, status),
        input=codec.decode_value(input_),
        output=codec.decode_value(output),
        error=error_from_text(error),
        priority=priority,
        correlation_id=correlation_id,
        idempotency_key=idempotency_key,
        parent_run_id=parent_run_id,
        created_at=when(created_at),
        updated_at=when(updated_at),
        finished_at=_maybe(when, finished_at),
        events=last_seq,
        not_before=_maybe(when, not_before),
    )


def claimed_job(row: Row, codec: EventCodec, when: When) -> ClaimedJob:
    (
        job_id,
        token,
        run_id,
        tenant,
        workflow,
        step_id,
        attempt,
        compensation,
        uses,
        input_,
        timeout,
        lease_until,
        *_,
    ) = row
    return ClaimedJob(
        id=job_id,
        token=token,
        run_id=run_id,
        tenant=tenant,
        workflow=workflow,
        step_id=step_id,
        attempt=attempt,
        compensation=bool(compensation),
        uses=uses,
        input=codec.decode_value(input_),
        timeout=timeout,
        lease_until=when(lease_until),
    )


def dead_letter(row: Row, when: When) -> DeadLetter:
    (
        letter_id,
        tenant,
        run_id,
        workflow,
        step_id,
        compensation,
        attempts,
        error,
        created_at,
        requeued_at,
    ) = row
    info = error_from_text(error)
    assert info is not None
    return DeadLetter(
        id=letter_id,
        tenant=tenant,
        run_id=run_id,
        workflow=workflow,
        step_id=step_id,
        compensation=bool(compensation),
        attempts=attempts,
        error=info,
        created_at=when(created_at),
        requeued_at=_maybe(when, requeued_at),
    )


def worker_record(row: Row, when: When) -> WorkerRecord:
    worker_id, host, pid, concurrency, handlers, started_at, last_seen, stopped_at = row
    return WorkerRecord(
        id=worker_id,
        host=host,
        pid=pid,
        concurrency=concurrency,
        handlers=tuple(serde.loads(handlers)),
        started_at=when(started_at),
        last_seen=when(last_seen),
        stopped_at=_maybe(when, stopped_at),
    )


def api_key_record(row: Row, when: When) -> ApiKeyRecord:
    key_id, tenant, name, scopes, created_at, last_used_at, revoked_at = row
    return ApiKeyRecord(
        id=key_id,
        tenant=tenant,
        name=name,
        scopes=tuple(serde.loads(scopes)),
        created_at=when(created_at),
        last_used_at=_maybe(when, last_used_at),
        revoked_at=_maybe(when, revoked_at),
    )


def log_record(row: Row, when: When) -> LogRecord:
    log_id, run_id, step_id, attempt, compensation, at, level, message, fields = row
    return LogRecord(
        id=log_id,
        run_id=run_id,
        step_id=step_id,
        attempt=attempt,
        compensation=bool(compensation),
        at=when(at),
        level=level,
        message=message,
        fields=serde.loads(fields),
    )


def check_run(row: Any, run_id: str, tenant: str | None) -> None:
    """``NotFound`` unless ``row`` (a ``run_get`` row, or None) is a run of ``tenant`` (None:
    any). Cheaper than building the record: the run's input and output stay undecoded."""
    if row is None or (tenant is not None and row[1] != tenant):
        raise NotFound("run", run_id)

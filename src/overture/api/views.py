"""Stored records as the API's JSON (the shapes ``api.schemas`` declares)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from overture import serde
from overture.api.circuits import circuit
from overture.core import events as ev
from overture.core.attempts import Attempt
from overture.core.events import ErrorInfo
from overture.core.model import Workflow
from overture.core.state import RunState, StepState
from overture.errors import NotFound
from overture.status import Status, stale
from overture.store.records import (
    CircuitRecord,
    DeadLetter,
    LogRecord,
    QueueGauge,
    RunRecord,
    StoredEvent,
    WorkerRecord,
    WorkflowRecord,
    seconds_since,
)

TASK_STEP = "task"
TASK_PREFIX = "task."


class JSONResponse(Response):
    """orjson all the way: datetimes as RFC 3339, no detour through the standard library."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return serde.dumps(content)


def error(info: ErrorInfo | None) -> dict[str, Any] | None:
    return None if info is None else dataclasses.asdict(info)


def run(record: RunRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "workflow": record.workflow,
        "version": record.version,
        "status": record.status,
        "input": record.input,
        "output": record.output,
        "error": error(record.error),
        "priority": record.priority,
        "correlation_id": record.correlation_id,
        "idempotency_key": record.idempotency_key,
        "parent_run_id": record.parent_run_id,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "finished_at": record.finished_at,
        "events": record.events,
        "run_at": record.not_before,
    }


def step(state: StepState) -> dict[str, Any]:
    return {
        "id": state.id,
        "status": state.status,
        "attempt": state.attempt,
        "crashes": state.crashes,
        "input": state.input,
        "output": state.output,
        "error": error(state.error),
        "reason": state.reason,
        "run_at": state.run_at,
        "scheduled_at": state.scheduled_at,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "child_run_id": state.child_run_id,
    }


def run_detail(record: RunRecord, state: RunState, workflow: Workflow) -> dict[str, Any]:
    compensations = [state.compensations[s] for s in state.compensation_plan]
    return {
        **run(record),
        "steps": [step(state.step(s.id)) for s in workflow.steps],
        "compensations": [step(s) for s in compensations],
        "failed_step": state.failed_step,
        "parent_step": state.parent_step,
    }


def event(stored: StoredEvent) -> dict[str, Any]:
    return {"seq": stored.seq, **ev.to_data(stored.event)}


def task(record: RunRecord, state: RunState, handler: str) -> dict[str, Any]:
    only = state.step(TASK_STEP)
    return {
        "id": record.id,
        "type": handler,
        "status": record.status,
        "payload": record.input,
        "result": only.output,
        "error": error(record.error or only.error),
        "attempts": only.attempt,
        "priority": record.priority,
        "idempotency_key": record.idempotency_key,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "finished_at": record.finished_at,
    }


def triggers(workflow: Workflow) -> dict[str, list[str]]:
    """What starts the workflow, in short: event types, cron expressions, webhook sources."""
    on = workflow.on
    found = {
        "events": [t.type for t in on.event_triggers()],
        "cron": [t.cron for t in on.cron_triggers()],
        "webhook": list(on.webhook),
    }
    return {kind: values for kind, values in found.items() if values}


def latest_versions(records: Iterable[WorkflowRecord]) -> list[WorkflowRecord]:
    """The newest version of each workflow, tasks' implicit workflows left out."""
    latest: dict[str, WorkflowRecord] = {}
    for record in records:
        if record.version >= latest.get(record.name, record).version:
            latest[record.name] = record
    return [r for r in latest.values() if not r.name.startswith(TASK_PREFIX)]


def workflow_summary(record: WorkflowRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "version": record.version,
        "disabled": record.disabled,
        "created_at": record.created_at,
        "steps": len(record.workflow.steps),
        "triggers": triggers(record.workflow),
    }


def workflow(record: WorkflowRecord, versions: list[int]) -> dict[str, Any]:
    return {
        **workflow_summary(record),
        "digest": record.digest,
        "definition": record.workflow.to_data(),
        "versions": versions,
    }


def dead_letter(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "run_id": letter.run_id,
        "workflow": letter.workflow,
        "step_id": letter.step_id,
        "compensation": letter.compensation,
        "attempts": letter.attempts,
        "error": error(letter.error),
        "created_at": letter.created_at,
        "requeued_at": letter.requeued_at,
    }


def worker(record: WorkerRecord, now: datetime) -> dict[str, Any]:
    """The worker as of ``now``: ``live`` if running and seen within ``WORKER_LIVE_WITHIN``."""
    return {
        "id": record.id,
        "host": record.host,
        "pid": record.pid,
        "concurrency": record.concurrency,
        "handlers": list(record.handlers),
        "started_at": record.started_at,
        "last_seen": record.last_seen,
        "stopped_at": record.stopped_at,
        "running": record.running,
        "live": record.live(now),
        "seen_seconds_ago": round(seconds_since(record.last_seen, now), 3),
    }


def workers(records: Iterable[WorkerRecord]) -> dict[str, Any]:
    """What ``GET /v1/workers`` answers (and ``overture workers ls`` prints on a database):
    every worker, stopped ones too, ``live`` as of this host's clock. Asking the database for
    its time would cost a query per listing, and a few seconds of skew matter little against
    the 30 s window (``overture status`` uses the database's time)."""
    now = datetime.now(UTC)
    return {"items": [worker(w, now) for w in records]}


def status(found: Status) -> dict[str, Any]:
    """What ``GET /v1/status`` answers (and ``overture status`` prints on a database)."""
    at, runs = found.observed.at, found.runs
    return {
        "tenant": found.tenant,
        "at": at,
        "healthy": found.healthy,
        "attention": list(found.attention),
        "queues": [queue(q, at) for q in found.queues],
        "runs": [{"workflow": r.workflow, "status": r.status, "count": r.count} for r in runs],
        "dead_letters": found.dead_letters,
        "circuits": [status_circuit(c, at) for c in found.circuits],
        "workers": {
            "live": found.live_workers,
            "items": None if found.workers is None else [worker(w, at) for w in found.workers],
        },
    }


def queue(gauge: QueueGauge, at: datetime) -> dict[str, Any]:
    oldest = gauge.oldest_ready_at
    return {
        "queue": gauge.queue,
        "ready": gauge.ready,
        "delayed": gauge.delayed,
        "running": gauge.running,
        "oldest_ready_at": oldest,
        "oldest_ready_age": None if oldest is None else round(seconds_since(oldest, at), 3),
    }


def status_circuit(record: CircuitRecord, at: datetime) -> dict[str, Any]:
    """A failing circuit in a status: ``stale`` if its cooldown passed with nobody calling."""
    return {**circuit(record), "stale": stale(record, at)}


def log(line: LogRecord) -> dict[str, Any]:
    return {
        "id": line.id,
        "step_id": line.step_id,
        "attempt": line.attempt,
        "compensation": line.compensation,
        "at": line.at,
        "level": line.level,
        "message": line.message,
        "fields": line.fields,
    }


def attempt(found: Attempt, lines: Iterable[LogRecord] = ()) -> dict[str, Any]:
    """An attempt of a step, with the lines it logged."""
    return {
        "step_id": found.step_id,
        "attempt": found.attempt,
        "compensation": found.compensation,
        "status": found.status,
        "queued_after": found.queued_after,
        "worker_id": found.worker_id,
        "scheduled_at": found.scheduled_at,
        "run_at": found.run_at,
        "started_at": found.started_at,
        "finished_at": found.finished_at,
        "duration": found.duration,
        "status_code": found.status_code,
        "error": error(found.error),
        "logs": [log(line) for line in lines],
    }


def page_after(items: list[dict[str, Any]], last: int | None, limit: int | None) -> dict[str, Any]:
    """A page of a run's history or logs; ``next_after`` is set when the page was full."""
    full = limit is not None and len(items) == limit
    return {"items": items, "next_after": last if full else None}


def workflow_version(
    versions: list[WorkflowRecord], name: str, version: int | None
) -> dict[str, Any]:
    """One of ``versions`` (newest first; None: the latest), as ``NotFound`` when absent."""
    numbers = [w.version for w in versions]
    for record in versions:
        if version is None or record.version == version:
            return workflow(record, numbers)
    raise NotFound("workflow", name if version is None else f"{name} v{version}")


def signal_sent(run_id: str, seq: int, name: str) -> dict[str, Any]:
    """What ``POST /v1/runs/{id}/signal`` answers (and the CLI prints on a database)."""
    return {"run_id": run_id, "seq": seq, "name": name}

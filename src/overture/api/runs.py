"""What the API and the CLI's database backend both do with stored runs and schedules, written
once."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from overture import serde
from overture.api import trigger_views, views
from overture.api.schemas import MAX_LIST, SignalIn
from overture.core.attempts import attempts, lines_by_attempt
from overture.core.state import RunStatus
from overture.errors import RequestInvalid
from overture.store.base import Store
from overture.store.records import LogRecord, RunRecord, StartRun


async def run_detail(store: Store, run_id: str, tenant: str) -> dict[str, Any]:
    """The run with every step of its workflow, as ``GET /v1/runs/{id}`` answers."""
    record = await store.get_run(run_id, tenant=tenant)
    state = await store.run_state(run_id, tenant=tenant)
    workflow = await store.get_workflow(record.workflow, record.version, tenant=tenant)
    return views.run_detail(record, state, workflow.workflow)


async def run_attempts(
    store: Store, run_id: str, tenant: str, *, logs: bool = True
) -> dict[str, Any]:
    """Every attempt of the run's steps with the lines each logged (``logs``), as
    ``GET /v1/runs/{id}/attempts`` answers."""
    # The history first: a line read after it may belong to an attempt it shows running, but
    # never to one it has not seen.
    history = await store.events(run_id, tenant=tenant)
    found = attempts(e.event for e in history)
    lines = await every_line(store, run_id, tenant) if logs else []
    each = lines_by_attempt(found, lines)
    return {"items": [views.attempt(a, mine) for a, mine in zip(found, each, strict=True)]}


async def every_line(store: Store, run_id: str, tenant: str) -> list[LogRecord]:
    """Every line the run's handlers logged, read a page at a time."""
    lines: list[LogRecord] = []
    while True:
        after = lines[-1].id if lines else 0
        page = await store.logs(run_id, tenant=tenant, after=after, limit=MAX_LIST)
        lines += page
        if len(page) < MAX_LIST:
            return lines


async def run_page(
    store: Store,
    tenant: str,
    *,
    status: RunStatus | Literal["scheduled"] | None = None,
    workflow: str | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """A page of runs as ``GET /v1/runs`` answers; ``scheduled`` is a status to users (delayed
    runs whose start time is ahead) and a filter of queued runs to the store."""
    page = await store.list_runs(
        tenant=tenant,
        status=None if status == "scheduled" else status,
        workflow=workflow,
        since=since,
        cursor=cursor,
        limit=limit,
        scheduled=status == "scheduled",
    )
    return {"items": [views.run(r) for r in page.items], "next_cursor": page.next_cursor}


async def schedule_detail(store: Store, schedule_id: str, tenant: str) -> dict[str, Any]:
    """A schedule and its last ticks, as ``GET /v1/schedules/{id}`` answers."""
    record = await store.get_schedule(schedule_id, tenant=tenant)
    ticks = await store.schedule_ticks(schedule_id, tenant=tenant)
    return {**trigger_views.schedule(record), "ticks": [trigger_views.tick(t) for t in ticks]}


async def replay(store: Store, run_id: str, tenant: str) -> RunRecord:
    """A new run of the same workflow version with the same input."""
    old = await store.get_run(run_id, tenant=tenant)
    record, _ = await store.start_run(
        StartRun(
            workflow=old.workflow,
            version=old.version,
            input=old.input,
            tenant=tenant,
            priority=old.priority,
            correlation_id=old.correlation_id,
        )
    )
    return record


def signal_request(name: str, payload: Any, *, max_bytes: int) -> SignalIn:
    """A signal checked as ``POST /v1/runs/{id}/signal`` checks its body, for the CLI on a
    database: ``RequestInvalid`` with the message the server's 422 (or 413) gives."""
    body = {"name": name, "payload": payload}
    try:
        checked = SignalIn.model_validate(body)
    except ValidationError as error:
        raise RequestInvalid(validation_message(error)) from None
    if len(serde.dumps(body)) > max_bytes:
        raise RequestInvalid(f"request bodies are limited to {max_bytes} bytes")
    return checked


def validation_message(error: ValidationError, *, where: str = "body") -> str:
    """``error`` said as the API says a request's (``body.name: String should have...``)."""
    return "; ".join(
        f"{'.'.join(map(str, (where, *item['loc'])))}: {item['msg']}" for item in error.errors()[:5]
    )

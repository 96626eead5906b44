"""``/v1/runs``: start runs, read them and their histories, and act on them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Request
from starlette.responses import Response

from overture.api import runs, views
from overture.api.auth import Reader, Writer, authorize
from overture.api.bodies import documented, header, parsed
from overture.api.problems import ApiError
from overture.api.responses import ERRORS, NOT_FOUND
from overture.api.schemas import (
    MAX_ID,
    MAX_LIST,
    MAX_SEQ,
    AttemptList,
    CancelIn,
    EventPage,
    LogPage,
    RetryIn,
    RunDetailOut,
    RunOut,
    RunPage,
    SignalIn,
    SignalOut,
    StartRunIn,
)
from overture.api.services import Services, Svc
from overture.api.stream import LAST_EVENT_ID, WITH_LOGS, event_stream, stream_responses
from overture.core.state import RunStatus
from overture.store.records import StartRun
from overture.telemetry import tracecontext

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=ERRORS)

Limit = Annotated[int, Query(ge=1, le=MAX_LIST)]
KEY_LENGTH = 200


def run_at(delay: float | None, at: datetime | None) -> datetime | None:
    """When a run asked to start later may start (None: now)."""
    if delay is not None and at is not None:
        raise ApiError(422, "invalid_request", "give delay or run_at, not both")
    if delay is not None:
        return datetime.now(UTC) + timedelta(seconds=delay)
    return at


def one_key(body: str | None, header: str | None) -> str | None:
    if body is not None and header is not None and body != header:
        raise ApiError(
            422, "invalid_request", "the Idempotency-Key header and idempotency_key differ"
        )
    return body or header


@router.post(
    "",
    status_code=201,
    response_model=RunOut,
    responses={
        200: {"model": RunOut, "description": "The run an earlier request started."},
        **NOT_FOUND,
    },
    summary="Start a run",
    openapi_extra=documented(StartRunIn, ("Idempotency-Key", KEY_LENGTH), ("traceparent", 512)),
)
async def start_run(request: Request) -> Response:
    # The hot path: no FastAPI dependencies (see api/bodies.py).
    who = await authorize(request, "write")
    body = await parsed(request, StartRunIn)
    s: Services = request.app.state.services
    key = one_key(body.idempotency_key, header(request, "Idempotency-Key", KEY_LENGTH))
    record, created = await s.store.start_run(
        StartRun(
            workflow=body.workflow,
            input=body.input,
            version=body.version,
            tenant=who.tenant,
            idempotency_key=key,
            priority=body.priority,
            correlation_id=body.correlation_id,
            run_at=run_at(body.delay, body.run_at),
            traceparent=tracecontext.inbound(request.headers.getlist("traceparent")),
        )
    )
    if not created and record.workflow != body.workflow:
        raise ApiError(
            409,
            "idempotency_key_reused",
            f"idempotency key {key!r} already started a run of {record.workflow!r}",
        )
    return views.JSONResponse(
        views.run(record),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/runs/{record.id}"},
    )


@router.get("", response_model=RunPage, summary="List runs, newest first")
async def list_runs(
    who: Reader,
    s: Svc,
    status: Annotated[
        RunStatus | Literal["scheduled"] | None,
        Query(description="scheduled: delayed runs whose start time is still ahead."),
    ] = None,
    workflow: Annotated[str | None, Query(max_length=128)] = None,
    since: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
) -> Response:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    page = await runs.run_page(
        s.store,
        who.tenant,
        status=status,
        workflow=workflow,
        since=since,
        cursor=cursor,
        limit=limit,
    )
    return views.JSONResponse(page)


@router.get("/{run_id}", response_model=RunDetailOut, responses=NOT_FOUND, summary="A run")
async def get_run(who: Reader, s: Svc, run_id: str) -> Response:
    return views.JSONResponse(await runs.run_detail(s.store, run_id, who.tenant))


@router.get(
    "/{run_id}/events", response_model=EventPage, responses=NOT_FOUND, summary="Its history"
)
async def list_events(
    who: Reader,
    s: Svc,
    run_id: str,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="A seq: events after it.")] = 0,
    limit: Limit = MAX_LIST,
) -> Response:
    found = await s.store.events(run_id, tenant=who.tenant, after=after, limit=limit)
    last = found[-1].seq if found else None
    return views.JSONResponse(views.page_after([views.event(e) for e in found], last, limit))


@router.get(
    "/{run_id}/logs", response_model=LogPage, responses=NOT_FOUND, summary="Its steps' logs"
)
async def list_logs(
    who: Reader,
    s: Svc,
    run_id: str,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="A line's id: lines after it.")] = 0,
    limit: Limit = MAX_LIST,
) -> Response:
    found = await s.store.logs(run_id, tenant=who.tenant, after=after, limit=limit)
    last = found[-1].id if found else None
    return views.JSONResponse(views.page_after([views.log(line) for line in found], last, limit))


@router.get(
    "/{run_id}/attempts",
    response_model=AttemptList,
    responses=NOT_FOUND,
    summary="Every attempt of its steps, with their logs",
)
async def list_attempts(
    who: Reader,
    s: Svc,
    run_id: str,
    logs: Annotated[bool, Query(description="false: leave each attempt's lines out.")] = True,
) -> Response:
    return views.JSONResponse(await runs.run_attempts(s.store, run_id, who.tenant, logs=logs))


@router.get(
    "/{run_id}/stream",
    responses={**NOT_FOUND, **stream_responses("the run")},
    response_class=Response,
    summary="Follow its events live (SSE)",
)
async def stream(
    who: Reader, s: Svc, run_id: str, last_event_id: LAST_EVENT_ID = None, logs: WITH_LOGS = False
) -> Response:
    return await event_stream(s.store, run_id, who.tenant, last_event_id, logs=logs)


@router.post("/{run_id}/cancel", response_model=RunOut, responses=NOT_FOUND, summary="Cancel it")
async def cancel(
    who: Writer, s: Svc, run_id: str, body: Annotated[CancelIn | None, Body()] = None
) -> Response:
    reason = (body or CancelIn()).reason
    record = await s.store.cancel_run(run_id, tenant=who.tenant, reason=reason)
    return views.JSONResponse(views.run(record))


@router.post(
    "/{run_id}/retry",
    response_model=RunOut,
    responses=NOT_FOUND,
    summary="Run its failed steps again",
)
async def retry(
    who: Writer, s: Svc, run_id: str, body: Annotated[RetryIn | None, Body()] = None
) -> Response:
    steps = None if body is None else body.steps
    record = await s.store.retry_run(run_id, tenant=who.tenant, steps=steps)
    return views.JSONResponse(views.run(record))


@router.post(
    "/{run_id}/replay",
    status_code=201,
    response_model=RunOut,
    responses=NOT_FOUND,
    summary="Start a new run with the same workflow version and input",
)
async def replay(who: Writer, s: Svc, run_id: str) -> Response:
    record = await runs.replay(s.store, run_id, who.tenant)
    return views.JSONResponse(
        views.run(record), status_code=201, headers={"Location": f"/v1/runs/{record.id}"}
    )


@router.post(
    "/{run_id}/signal",
    status_code=202,
    response_model=SignalOut,
    responses=NOT_FOUND,
    summary="Send it a signal (for wait steps)",
)
async def signal(who: Writer, s: Svc, run_id: str, body: SignalIn) -> Response:
    stored = await s.store.signal_run(run_id, body.name, body.payload, tenant=who.tenant)
    return views.JSONResponse(views.signal_sent(run_id, stored.seq, body.name), status_code=202)

"""``/v1/events``: recorded once per id, each starting a run of every workflow listening for it."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AfterValidator
from starlette.responses import Response

from overture.api import trigger_views as views
from overture.api.auth import Reader, Writer
from overture.api.payloads import InboundTrace
from overture.api.problems import ApiError
from overture.api.responses import ERRORS, NOT_FOUND
from overture.api.schemas import MAX_LIST
from overture.api.services import Svc
from overture.api.trigger_schemas import (
    EventPageOut,
    EventSentOut,
    ReceivedEventOut,
    SendEventIn,
    storable_text,
)
from overture.api.views import JSONResponse
from overture.errors import Conflict
from overture.store.records import EventRecord, NewEvent

router = APIRouter(prefix="/v1/events", tags=["events"], responses=ERRORS)

ENVELOPE_EXTRAS = ("timestamp", "target", "trace", "schema_version", "chaos")
"""EventEnvelope fields kept with the event (``meta``) and passed on to the runs it starts."""


@router.post(
    "",
    status_code=201,
    response_model=EventSentOut,
    responses={200: {"model": EventSentOut, "description": "The event sent earlier."}},
    summary="Send an event: start every workflow listening for its type",
)
async def send_event(body: SendEventIn, who: Writer, s: Svc, trace: InboundTrace) -> Response:
    event = replace(new_event(body, who.tenant), traceparent=trace)
    record, created = await s.store.record_event(event)
    if not created:
        check_repeat(body, record)
    return JSONResponse(
        {"event": views.event(record), "created": created},
        status_code=201 if created else 200,
        headers={"Location": f"/v1/events/{record.id}"},
    )


def new_event(body: SendEventIn, tenant: str) -> NewEvent:
    """The event a request sends, as ``tenant`` (the API key's)."""
    if body.tenant_id is not None and body.tenant_id != tenant:
        raise ApiError(
            403,
            "tenant_mismatch",
            f"the event is for tenant {body.tenant_id!r}, the API key for {tenant!r}",
        )
    meta: dict[str, Any] = {
        name: getattr(body, name) for name in ENVELOPE_EXTRAS if getattr(body, name) is not None
    }
    return NewEvent(
        type=body.type,
        payload=body.payload,
        id=body.id,
        tenant=tenant,
        user_id=body.user_id,
        correlation_id=body.correlation_id,
        idempotency_key=body.idempotency_key,
        source=body.source,
        meta=meta,
    )


def check_repeat(body: SendEventIn, first: EventRecord) -> None:
    """A repeat must be the same event: an idempotency key (or an id) reused for another one is
    refused, not answered with the first as if it were this one."""
    if body.id is not None and first.id != body.id:
        raise Conflict(
            f"idempotency key {body.idempotency_key!r} was used by event {first.id!r}",
            code="idempotency_key_reused",
        )
    if first.type != body.type:
        raise Conflict(
            f"event {first.id!r} was sent before with type {first.type!r}, not {body.type!r}",
            code="event_exists",
        )


@router.get("", response_model=EventPageOut, summary="List events, newest first")
async def list_events(
    who: Reader,
    s: Svc,
    type: Annotated[str | None, Query(max_length=200), AfterValidator(storable_text)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> Response:
    page = await s.store.list_events(tenant=who.tenant, type=type, cursor=cursor, limit=limit)
    return JSONResponse(
        {"items": [views.event(e) for e in page.items], "next_cursor": page.next_cursor}
    )


@router.get(
    "/{event_id}",
    response_model=ReceivedEventOut,
    responses=NOT_FOUND,
    summary="An event and the runs it started",
)
async def get_event(
    event_id: Annotated[str, AfterValidator(storable_text)], who: Reader, s: Svc
) -> Response:
    return JSONResponse(views.event(await s.store.get_event(event_id, tenant=who.tenant)))

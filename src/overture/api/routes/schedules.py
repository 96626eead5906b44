"""``/v1/schedules``: cron schedules, listed with their next tick, paused, resumed, deleted."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import AfterValidator
from starlette.responses import Response

from overture.api import runs
from overture.api import trigger_views as views
from overture.api.auth import Reader, Writer
from overture.api.problems import ApiError, ProblemDetail
from overture.api.responses import ERRORS, NOT_FOUND
from overture.api.services import Svc
from overture.api.trigger_schemas import (
    CreateScheduleIn,
    ScheduleDetailOut,
    ScheduleOut,
    SchedulePageOut,
    storable_text,
)
from overture.api.views import JSONResponse
from overture.store.records import ScheduleSpec
from overture.triggers.cron import CronInvalid
from overture.triggers.schedules import ScheduleInvalid

ScheduleId = Annotated[str, AfterValidator(storable_text)]

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=ScheduleOut,
    responses=NOT_FOUND,
    summary="Run a workflow at each tick of a cron expression",
)
async def create_schedule(body: CreateScheduleIn, who: Writer, s: Svc) -> Response:
    spec = ScheduleSpec(tenant=who.tenant, **body.model_dump())
    try:
        made = await s.store.create_schedule(spec)
    except (CronInvalid, ScheduleInvalid) as error:
        raise refused_schedule(error) from None
    return JSONResponse(
        views.schedule(made), status_code=201, headers={"Location": f"/v1/schedules/{made.id}"}
    )


@router.get("", response_model=SchedulePageOut, summary="List schedules with their next tick")
async def list_schedules(who: Reader, s: Svc) -> Response:
    found = await s.store.list_schedules(tenant=who.tenant)
    return JSONResponse({"items": [views.schedule(r) for r in found]})


@router.get(
    "/{schedule_id}",
    response_model=ScheduleDetailOut,
    responses=NOT_FOUND,
    summary="A schedule and its last ticks",
)
async def get_schedule(schedule_id: ScheduleId, who: Reader, s: Svc) -> Response:
    return JSONResponse(await runs.schedule_detail(s.store, schedule_id, who.tenant))


@router.post(
    "/{schedule_id}/pause",
    response_model=ScheduleOut,
    responses=NOT_FOUND,
    summary="Pause a schedule",
)
async def pause_schedule(schedule_id: ScheduleId, who: Writer, s: Svc) -> Response:
    record = await s.store.set_schedule_paused(schedule_id, True, tenant=who.tenant)
    return JSONResponse(views.schedule(record))


@router.post(
    "/{schedule_id}/resume",
    response_model=ScheduleOut,
    responses=NOT_FOUND,
    summary="Resume a schedule from its next tick",
)
async def resume_schedule(schedule_id: ScheduleId, who: Writer, s: Svc) -> Response:
    record = await s.store.set_schedule_paused(schedule_id, False, tenant=who.tenant)
    return JSONResponse(views.schedule(record))


@router.delete(
    "/{schedule_id}",
    status_code=204,
    responses=NOT_FOUND,
    summary="Delete a schedule made through the API",
)
async def delete_schedule(schedule_id: ScheduleId, who: Writer, s: Svc) -> Response:
    await s.store.delete_schedule(schedule_id, tenant=who.tenant)
    return Response(status_code=204)


def refused_schedule(error: CronInvalid | ScheduleInvalid) -> ApiError:
    """422 whose ``errors`` names the field at fault."""
    message = str(error)
    if isinstance(error, ScheduleInvalid):
        field = "catch_up" if message.startswith("catch_up") else "id"
    else:
        field = "timezone" if "time zone" in message else "cron"
    detail = ProblemDetail(message=message, path=["body", field])
    return ApiError(422, error.code, message, errors=[detail])

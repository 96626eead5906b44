"""The caller's tenant at a glance: queues, unfinished runs, dead letters, failing circuits and
whether workers are live (``overture status --url``).

Workers serve every tenant, so any key sees how many are live (without that a tenant cannot
tell why its work waits), but only admin keys get the list, as at ``GET /v1/workers`` (here only
the running workers seen within a day, each ``live`` as of the database's time).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from overture.api import views
from overture.api.auth import Reader
from overture.api.responses import ERRORS
from overture.api.routes.circuits import CircuitOut
from overture.api.schemas import WorkerOut
from overture.api.services import Svc
from overture.apikeys import granted
from overture.status import read_status

router = APIRouter(responses=ERRORS, tags=["status"])


class QueueOut(BaseModel):
    queue: str = Field(description="The handler its attempts use.")
    ready: int = Field(
        description="Attempts due and not started: waiting for a worker, or held by a "
        "concurrency limit, a rate limit or an open circuit."
    )
    delayed: int = Field(
        description="Attempts not due yet: a retry's backoff, a delayed run, a sleep's timer."
    )
    running: int = Field(description="Attempts claimed by a worker and not finished.")
    oldest_ready_at: datetime | None = Field(
        None, description="When the longest-waiting ready attempt became due."
    )
    oldest_ready_age: float | None = Field(
        None,
        description="Seconds the longest-waiting ready attempt has waited since it became due "
        "(however often a flow control held it).",
    )


class StatusCircuitOut(CircuitOut):
    stale: bool = Field(
        description="Open, but its cooldown has passed and nothing called its downstream since "
        "(the next call half-opens it): shown, not counted as needing attention."
    )


class RunCountOut(BaseModel):
    workflow: str
    status: str
    count: int


class WorkersOut(BaseModel):
    live: int = Field(description="Workers live now (they serve every tenant).")
    items: list[WorkerOut] | None = Field(
        description="The workers not stopped and seen within a day, live or not; null unless "
        "the key is an admin's."
    )


class StatusOut(BaseModel):
    tenant: str
    at: datetime = Field(description="The database's time when it was read.")
    healthy: bool = Field(description="Nothing in attention.")
    attention: list[str] = Field(
        description="What needs attention: ready attempts and no live worker, or an open (not "
        "stale) or half-open circuit."
    )
    queues: list[QueueOut]
    runs: list[RunCountOut] = Field(description="Unfinished runs by workflow and status.")
    dead_letters: int = Field(description="Steps in the dead-letter queue, not requeued.")
    circuits: list[StatusCircuitOut] = Field(description="Open and half-open circuits.")
    workers: WorkersOut


@router.get("/v1/status", response_model=StatusOut, summary="The tenant's status at a glance")
async def status(who: Reader, s: Svc) -> Response:
    found = await read_status(s.store, tenant=who.tenant, with_workers=granted(who.scopes, "admin"))
    return views.JSONResponse(views.status(found))

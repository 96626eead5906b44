"""Operating the system: dead letters, workers, liveness and readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from overture.api import views
from overture.api.auth import Admin, Reader, Writer
from overture.api.problems import problem
from overture.api.responses import ERRORS, NOT_FOUND
from overture.api.schemas import (
    MAX_ID,
    DeadLetterList,
    HealthOut,
    ReadyOut,
    RequeueOut,
    WorkerList,
)
from overture.api.services import Svc

router = APIRouter(responses=ERRORS)


@router.get("/v1/dlq", tags=["dead letters"], response_model=DeadLetterList, summary="Dead letters")
async def list_dead_letters(who: Reader, s: Svc, include_requeued: bool = False) -> Response:
    found = await s.store.dead_letters(tenant=who.tenant, include_requeued=include_requeued)
    return views.JSONResponse({"items": [views.dead_letter(d) for d in found]})


@router.post(
    "/v1/dlq/{letter_id}/requeue",
    tags=["dead letters"],
    response_model=RequeueOut,
    responses=NOT_FOUND,
    summary="Reopen the dead letter's run",
)
async def requeue(
    who: Writer, s: Svc, letter_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Response:
    runs = await s.store.requeue([letter_id], tenant=who.tenant)
    return views.JSONResponse({"runs": [views.run(r) for r in runs]})


@router.get(
    "/v1/workers",
    tags=["workers"],
    response_model=WorkerList,
    summary="Workers and their last heartbeat (admin: workers serve every tenant)",
)
async def list_workers(who: Admin, s: Svc) -> Response:
    return views.JSONResponse(views.workers(await s.store.list_workers()))


@router.get("/health", tags=["health"], response_model=HealthOut, summary="Liveness")
async def health() -> Response:
    return views.JSONResponse({"status": "ok"})


@router.get(
    "/ready",
    tags=["health"],
    response_model=ReadyOut,
    summary="Readiness: the database answers and its schema is current",
)
async def ready(s: Svc) -> Response:
    try:
        status = await s.store.schema_status()
    except Exception as error:  # any failure to reach the database means not ready
        return problem(503, "database_unavailable", f"database unreachable: {error}")
    if not status.current:
        pending = ", ".join(map(str, status.pending))
        return problem(
            503, "schema_outdated", f"migrations pending: {pending} (run overture db migrate)"
        )
    return views.JSONResponse(
        {
            "status": "ready",
            "database": s.store.url.split(":", 1)[0],
            "migrations": list(status.applied),
        }
    )

"""Circuit breakers: their state, and a reset by hand.

A circuit exists once a job that names it (``circuit:`` on a step, or the host of an ``http``
step) has been claimed. Keys may hold ``/`` and ``:`` (``host:api.example.com``), so they are
taken as the rest of the path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.responses import Response

from overture.api import views
from overture.api.auth import Reader, Writer
from overture.api.circuits import circuit, circuit_named
from overture.api.responses import ERRORS, NOT_FOUND
from overture.api.services import Svc

router = APIRouter(responses=ERRORS, tags=["circuits"])

CircuitKey = Annotated[str, Path(min_length=1, max_length=500)]


class CircuitOut(BaseModel):
    key: str
    status: Literal["closed", "open", "half_open"] = Field(
        description="closed: calls go through; open: its jobs are parked until open_until; "
        "half_open: one probe runs, its outcome closes or reopens the circuit."
    )
    failures: int = Field(description="Counted failures within the current window.")
    threshold: int
    window: float = Field(description="Seconds over which failures are counted.")
    cooldown: float = Field(description="Seconds an open circuit waits before a probe.")
    opened_at: datetime | None = None
    open_until: datetime | None = None
    updated_at: datetime


class CircuitList(BaseModel):
    items: list[CircuitOut]


@router.get("/v1/circuits", response_model=CircuitList, summary="Circuit breakers and their state")
async def list_circuits(who: Reader, s: Svc) -> Response:
    found = await s.store.list_circuits(tenant=who.tenant)
    return views.JSONResponse({"items": [circuit(c) for c in found]})


@router.get(
    "/v1/circuits/{key:path}",
    response_model=CircuitOut,
    responses=NOT_FOUND,
    summary="One circuit breaker",
)
async def get_circuit(who: Reader, s: Svc, key: CircuitKey) -> Response:
    return views.JSONResponse(circuit(await circuit_named(s.store, key, tenant=who.tenant)))


@router.post(
    "/v1/circuits/{key:path}/reset",
    response_model=CircuitOut,
    responses=NOT_FOUND,
    summary="Close the circuit by hand; the jobs it parked start at once",
)
async def reset_circuit(who: Writer, s: Svc, key: CircuitKey) -> Response:
    return views.JSONResponse(circuit(await s.store.reset_circuit(key, tenant=who.tenant)))

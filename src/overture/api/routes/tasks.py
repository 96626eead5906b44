"""Tasks, the AUREA shape: ``POST /v1/tasks {type, payload}`` is a one-step run of handler ``type``.

A task is a run of the implicit workflow ``task.<type>`` (``task.<n>-retries.<type>`` when it
sets ``max_retries``) whose one step, ``task``, receives the payload as its inputs. The seed's
unversioned paths ``POST /tasks``, ``GET /tasks/{id}`` and ``GET /stream/{id}`` are here too.
"""

from __future__ import annotations

import difflib

from fastapi import APIRouter
from starlette.responses import Response

from overture.api import views
from overture.api.auth import Principal, Reader, Writer
from overture.api.payloads import InboundTrace
from overture.api.problems import ApiError
from overture.api.responses import ERRORS, NOT_FOUND
from overture.api.schemas import StartTaskIn, TaskOut
from overture.api.services import Services, Svc
from overture.api.stream import LAST_EVENT_ID, event_stream, stream_responses
from overture.core.model import Workflow
from overture.errors import NotFound
from overture.store.records import StartRun

router = APIRouter(tags=["tasks"], responses=ERRORS)


def task_workflow(handler: str, max_retries: int | None) -> Workflow:
    """The one-step workflow a task of ``handler`` runs."""
    step: dict[str, object] = {"id": views.TASK_STEP, "uses": handler, "with": "${input}"}
    name = f"{views.TASK_PREFIX}{handler}"
    if max_retries is not None:
        step["retry"] = {"max_attempts": max_retries + 1}
        # Handler names start with a letter or "_", so a segment starting with a digit can
        # never be read as part of one: no two (handler, max_retries) pairs share a name.
        name = f"{views.TASK_PREFIX}{max_retries}-retries.{handler}"
    return Workflow.model_validate(
        {"name": name, "steps": [step], "output": "${steps.task.output}"}
    )


async def _ensure_registered(s: Services, tenant: str, workflow: Workflow) -> None:
    key = (tenant, workflow.name)
    if key not in s.task_workflows:
        await s.store.register_workflow(workflow, tenant=tenant)
        s.task_workflows.add(key)


async def _create(
    body: StartTaskIn, who: Principal, s: Services, traceparent: str | None
) -> Response:
    known = await s.known_handlers()
    if body.type not in known:
        close = difflib.get_close_matches(body.type, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ApiError(
            422, "unknown_handler", f"no running worker has a handler {body.type!r}{hint}"
        )
    workflow = task_workflow(body.type, body.max_retries)
    await _ensure_registered(s, who.tenant, workflow)
    record, created = await s.store.start_run(
        StartRun(
            workflow=workflow.name,
            input=body.payload,
            tenant=who.tenant,
            idempotency_key=body.idempotency_key,
            priority=body.priority,
            traceparent=traceparent,
        )
    )
    if record.workflow != workflow.name:
        raise ApiError(
            409,
            "idempotency_key_reused",
            f"idempotency key {body.idempotency_key!r} already started a run of "
            f"{record.workflow!r}",
        )
    state = await s.store.run_state(record.id, tenant=who.tenant)
    return views.JSONResponse(
        views.task(record, state, body.type),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/tasks/{record.id}"},
    )


async def _read(task_id: str, who: Principal, s: Services) -> Response:
    record = await s.store.get_run(task_id, tenant=who.tenant)
    if not record.workflow.startswith(views.TASK_PREFIX):
        raise NotFound("task", task_id)
    state = await s.store.run_state(task_id, tenant=who.tenant)
    # The handler is read from the definition: a dotted name cannot be parsed out of the
    # workflow's name.
    definition = await s.store.get_workflow(record.workflow, record.version, tenant=who.tenant)
    return views.JSONResponse(views.task(record, state, definition.workflow.steps[0].uses))


CREATED = {
    "status_code": 201,
    "response_model": TaskOut,
    "responses": {200: {"model": TaskOut, "description": "The task an earlier request started."}},
}


@router.post("/v1/tasks", summary="Start a task", **CREATED)  # type: ignore[arg-type]
async def create_task(who: Writer, s: Svc, body: StartTaskIn, trace: InboundTrace) -> Response:
    return await _create(body, who, s, trace)


@router.get("/v1/tasks/{task_id}", response_model=TaskOut, responses=NOT_FOUND, summary="A task")
async def get_task(who: Reader, s: Svc, task_id: str) -> Response:
    return await _read(task_id, who, s)


@router.post("/tasks", summary="Start a task (seed path)", **CREATED)  # type: ignore[arg-type]
async def create_task_unversioned(
    who: Writer, s: Svc, body: StartTaskIn, trace: InboundTrace
) -> Response:
    return await _create(body, who, s, trace)


@router.get(
    "/tasks/{task_id}", response_model=TaskOut, responses=NOT_FOUND, summary="A task (seed path)"
)
async def get_task_unversioned(who: Reader, s: Svc, task_id: str) -> Response:
    return await _read(task_id, who, s)


@router.get(
    "/stream/{run_id}",
    responses={**NOT_FOUND, **stream_responses("the task (or run)")},
    response_class=Response,
    summary="Follow a task live (seed path)",
)
async def stream_unversioned(
    who: Reader, s: Svc, run_id: str, last_event_id: LAST_EVENT_ID = None
) -> Response:
    return await event_stream(s.store, run_id, who.tenant, last_event_id)

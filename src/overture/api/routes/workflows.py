"""``/v1/workflows``: register definitions (YAML or JSON bodies), read versions, disable."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from overture.api import views
from overture.api.auth import Admin, Principal, Reader, Writer
from overture.api.payloads import storable
from overture.api.problems import ApiError
from overture.api.responses import ERRORS, NOT_FOUND, UNSUPPORTED_MEDIA
from overture.api.schemas import MAX_SEQ, WorkflowList, WorkflowName, WorkflowOut
from overture.api.services import Services, Svc
from overture.core.document import Document, load_document
from overture.core.loader import from_document
from overture.core.model import Workflow
from overture.errors import NotFound

router = APIRouter(prefix="/v1/workflows", tags=["workflows"], responses=ERRORS)

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
DEFINITION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A workflow definition, as in a workflow file.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            **{kind: {"schema": {"type": "string"}} for kind in YAML_TYPES},
        },
    }
}
SOURCE = "request body"


async def _definition(request: Request, s: Services, name: str | None = None) -> Workflow:
    """The workflow in the request body, validated against the handlers workers have."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind != "application/json" and kind not in YAML_TYPES:
        raise ApiError(
            415, "unsupported_media_type", f"send application/json or application/yaml, not {kind}"
        )
    document = load_document(await request.body(), source=SOURCE)
    try:
        storable(document.data)
    except ValueError as error:  # the document loader lets integers of any size through
        raise ApiError(422, "not_json", f"the definition cannot be stored: {error}") from None
    if name is not None and isinstance(document.data, dict):
        named = document.data.get("name", document.data.get("key", name))
        if named != name:
            raise ApiError(
                422, "name_mismatch", f"the body defines {named!r}, the path names {name!r}"
            )
        document = Document(
            data={"name": name, **document.data}, positions=document.positions, source=SOURCE
        )
    workflow = from_document(document, handlers=await s.known_handlers())
    if workflow.name.startswith(views.TASK_PREFIX):
        raise ApiError(
            422, "reserved_name", f"names starting with {views.TASK_PREFIX!r} are for tasks"
        )
    return workflow


async def _register(request: Request, who: Principal, s: Services, name: str | None) -> Response:
    workflow = await _definition(request, s, name)
    try:
        before = await s.store.get_workflow(workflow.name, tenant=who.tenant)
    except NotFound:
        before = None
    record = await s.store.register_workflow(workflow, tenant=who.tenant)
    created = before is None or (before.version, before.digest) != (record.version, record.digest)
    versions = [w.version for w in await s.store.workflow_versions(record.name, tenant=who.tenant)]
    return views.JSONResponse(
        views.workflow(record, versions),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/workflows/{record.name}"},
    )


REGISTERED = {
    "status_code": 201,
    "response_model": WorkflowOut,
    "responses": {
        200: {"model": WorkflowOut, "description": "That definition was registered."},
        **UNSUPPORTED_MEDIA,
    },
    "openapi_extra": DEFINITION_BODY,
}


@router.get("", response_model=WorkflowList, summary="Workflows, latest version of each")
async def list_workflows(who: Reader, s: Svc) -> Response:
    found = views.latest_versions(await s.store.list_workflows(tenant=who.tenant))
    return views.JSONResponse({"items": [views.workflow_summary(w) for w in found]})


@router.post("", summary="Register a workflow (a new version if it changed)", **REGISTERED)  # type: ignore[arg-type]
async def register(who: Writer, s: Svc, request: Request) -> Response:
    return await _register(request, who, s, None)


@router.get(
    "/{name}", response_model=WorkflowOut, responses=NOT_FOUND, summary="Its latest version"
)
async def get_workflow(who: Reader, s: Svc, name: WorkflowName) -> Response:
    versions = await s.store.workflow_versions(name, tenant=who.tenant)
    return views.JSONResponse(views.workflow_version(versions, name, None))


@router.get(
    "/{name}/versions/{version}",
    response_model=WorkflowOut,
    responses=NOT_FOUND,
    summary="One version",
)
async def get_version(
    who: Reader, s: Svc, name: WorkflowName, version: Annotated[int, Path(ge=1, le=MAX_SEQ)]
) -> Response:
    versions = await s.store.workflow_versions(name, tenant=who.tenant)
    return views.JSONResponse(views.workflow_version(versions, name, version))


@router.put(
    "/{name}",
    summary="Register a definition under this name",
    **REGISTERED,  # type: ignore[arg-type]
)
async def put_workflow(who: Writer, s: Svc, name: WorkflowName, request: Request) -> Response:
    return await _register(request, who, s, name)


@router.delete(
    "/{name}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
    summary="Disable it: no new runs start; running ones finish",
)
async def disable(who: Admin, s: Svc, name: WorkflowName) -> Response:
    await s.store.set_workflow_disabled(name, True, tenant=who.tenant)
    return Response(status_code=204)


@router.post(
    "/{name}/enable", response_model=WorkflowOut, responses=NOT_FOUND, summary="Enable it again"
)
async def enable(who: Admin, s: Svc, name: WorkflowName) -> Response:
    await s.store.set_workflow_disabled(name, False, tenant=who.tenant)
    versions = await s.store.workflow_versions(name, tenant=who.tenant)
    return views.JSONResponse(views.workflow_version(versions, name, None))

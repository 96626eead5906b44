"""The FastAPI application: routes, problem responses, body limits, request log context."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp

from overture import __version__
from overture.api import problems
from overture.api.auth import BEARER_SCHEME
from overture.api.bodies import component_schemas
from overture.api.limits import BodyLimit
from overture.api.routes import (
    circuits,
    events,
    metrics,
    operations,
    runs,
    schedules,
    status,
    tasks,
    webhooks,
    workflows,
)
from overture.api.services import Services
from overture.telemetry.logs import RequestContext

DESCRIPTION = """\
Start and follow durable workflow runs and tasks. Authenticate with
`Authorization: Bearer KEY` (keys come from `overture keys create`). Errors are
`application/problem+json` with a stable `code`. A tenant never sees another tenant's
objects: they answer 404, like objects that do not exist.
"""

PUBLIC_PATHS = frozenset({"/health", "/ready", "/v1/webhooks/{source}"})
"""No key: load balancers call the probes; webhook deliveries are verified by their source's
signature scheme instead."""

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class _App(FastAPI):
    """FastAPI, its whole stack inside ``RequestContext``: the lines logged while a request is
    handled carry its trace, Starlette's error middleware's (a crash's line) included."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestContext(super().build_middleware_stack())


def create_app(services: Services, *, lifespan: Lifespan | None = None) -> FastAPI:
    app = _App(
        title="Overture",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    problems.install(app)
    routers = (
        runs,
        tasks,
        workflows,
        events,
        webhooks,
        schedules,
        circuits,
        operations,
        status,
        metrics,
    )
    for module in routers:
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=services.settings.max_body_bytes)
    app.openapi = lambda: _with_security(app)  # type: ignore[method-assign]
    return app


def _with_security(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, every operation but the probes requiring a bearer key."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {"HTTPBearer": BEARER_SCHEME}
        components.setdefault("schemas", {}).update(component_schemas())
        for path, operations in schema["paths"].items():
            if path not in PUBLIC_PATHS:
                for operation in operations.values():
                    operation["security"] = [{"HTTPBearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema

"""Errors as ``application/problem+json`` (RFC 9457), each with a stable ``code``.

Handlers raise ``ApiError`` or let Overture's own errors through; ``install`` maps both (and
FastAPI's validation errors, unknown routes and crashes) to one response shape, so a client
branches on ``code`` and never parses prose.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response

from overture import serde
from overture.errors import (
    Conflict,
    DocumentInvalid,
    InputInvalid,
    InvalidCursor,
    NotFound,
    NotRetryable,
    OvertureError,
    Problem,
    RequestInvalid,
    SchemaOutdated,
    WorkflowInvalid,
)
from overture.settings import SettingsInvalid

logger = logging.getLogger("overture.api")

PROBLEM_JSON = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    500: "Internal server error",
    503: "Service unavailable",
}


class ProblemDetail(BaseModel):
    """One located problem: a bad field of a request, or a problem in a workflow file."""

    message: str
    code: str | None = None
    path: list[str | int] = Field(default_factory=list)
    line: int | None = None
    column: int | None = None
    step: str | None = None


class ProblemOut(BaseModel):
    """What every error response carries."""

    type: str = Field(description="A URI naming the kind of problem: urn:overture:problem:CODE.")
    title: str
    status: int
    code: str = Field(description="Stable, machine-readable; branch on this.")
    detail: str
    errors: list[ProblemDetail] = Field(default_factory=list)


class ApiError(Exception):
    """An error response chosen by a route."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: Sequence[ProblemDetail] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.errors = list(errors)
        self.headers = headers


def problem(
    status: int,
    code: str,
    detail: str,
    errors: Sequence[ProblemDetail] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    body = {
        "type": f"urn:overture:problem:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
        "errors": [e.model_dump() for e in errors],
    }
    return Response(serde.dumps(body), status, headers=headers, media_type=PROBLEM_JSON)


def from_problems(problems: Sequence[Problem]) -> list[ProblemDetail]:
    return [
        ProblemDetail(
            message=p.message,
            code=p.code,
            path=list(p.path),
            line=p.line,
            column=p.column,
            step=p.step,
        )
        for p in problems
    ]


def for_error(error: OvertureError) -> Response:
    """The response for one of Overture's own errors."""
    match error:
        case NotFound():
            return problem(404, "not_found", str(error))
        case Conflict():
            return problem(409, error.code, str(error))
        case NotRetryable():
            return problem(409, "not_retryable", str(error))
        case InvalidCursor():
            return problem(400, "bad_cursor", str(error))
        case InputInvalid():
            details = [ProblemDetail(message=m, path=["input"]) for m in error.errors]
            return problem(422, "input_invalid", str(error), details)
        case WorkflowInvalid():
            count = len(error.problems)
            detail = f"the workflow has {count} problem{'s' if count != 1 else ''}"
            return problem(422, "workflow_invalid", detail, from_problems(error.problems))
        case DocumentInvalid():
            return problem(422, "document_invalid", str(error), from_problems([error.problem]))
        case RequestInvalid():
            return problem(422, error.code, str(error))
        case SchemaOutdated() | SettingsInvalid():
            return problem(503, error.code, str(error))
    code = getattr(error, "code", None)
    return problem(400, code if isinstance(code, str) else "bad_request", str(error))


def _validation_details(error: RequestValidationError) -> list[ProblemDetail]:
    details = []
    for item in error.errors():
        location = [part for part in item.get("loc", ()) if isinstance(part, str | int)]
        details.append(ProblemDetail(message=str(item.get("msg", "invalid")), path=location))
    return details


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem response."""

    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return problem(error.status, error.code, error.detail, error.errors, error.headers)

    async def overture_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, OvertureError)
        return for_error(error)

    async def invalid_request(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        details = _validation_details(error)
        summary = "; ".join(
            f"{'.'.join(map(str, d.path)) or 'request'}: {d.message}" for d in details[:5]
        )
        return problem(422, "invalid_request", summary or "the request is invalid", details)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        # FastAPI's own 400 says a body could not be parsed at all (e.g. nested too deep).
        codes = {400: "invalid_request", 404: "no_route", 405: "method_not_allowed"}
        code = codes.get(error.status_code, "http_error")
        return problem(
            error.status_code, code, str(error.detail), headers=dict(error.headers or {})
        )

    async def crashed(request: Request, error: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal", "the server failed; the error is in its log")

    handlers: dict[Any, Any] = {
        ApiError: api_error,
        OvertureError: overture_error,
        RequestValidationError: invalid_request,
        HTTPException: http_error,
        Exception: crashed,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)

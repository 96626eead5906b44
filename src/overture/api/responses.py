"""The error responses every route declares in the OpenAPI spec."""

from __future__ import annotations

from typing import Any

from overture.api.problems import PROBLEM_JSON, ProblemOut


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": ProblemOut,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}},
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _problem("A query parameter is malformed (e.g. an unknown cursor)."),
    401: _problem("No API key, or an unknown or revoked one."),
    403: _problem("The key lacks the scope this operation needs."),
    409: _problem("The request conflicts with what is stored."),
    413: _problem("The request body is larger than the server accepts."),
    422: _problem("The request is invalid; `errors` locates each problem."),
    500: _problem("The server failed; the error is in its log."),
    503: _problem("The database is unreachable or needs migrations."),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _problem("No such object for this tenant (another tenant's objects look the same).")
}
UNSUPPORTED_MEDIA: dict[int | str, dict[str, Any]] = {
    415: _problem("The body is neither JSON nor YAML.")
}

"""Request bodies parsed by hand, for the routes on the hot path.

FastAPI's dependency solver costs more than everything else ``POST /v1/runs`` does before the
database (measured with yappi: 43% of the API process's CPU), so the routes that start runs
take the bare ``Request`` and parse here instead. Errors look exactly like FastAPI's own, and
``documented`` puts the body and headers back into the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from overture.api.problems import ApiError

M = TypeVar("M", bound=BaseModel)
MODELS: dict[str, type[BaseModel]] = {}
"""Models of hand-parsed bodies, added to the OpenAPI document's components."""


async def parsed(request: Request, model: type[M]) -> M:
    """The JSON body as ``model``; a 422 ``invalid_request`` locating each problem if not."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        if any("recursion limit" in item["msg"] for item in error.errors()):
            # As FastAPI answers for a body its parser gives up on: 400, not 422.
            raise ApiError(400, "invalid_request", "the JSON body is nested too deeply") from None
        problems = [
            {**item, "loc": ("body", *item["loc"])} for item in error.errors(include_url=False)
        ]
        raise RequestValidationError(problems) from None


def header(request: Request, name: str, max_length: int) -> str | None:
    value = request.headers.get(name)
    if value is not None and not 1 <= len(value) <= max_length:
        raise ApiError(
            422, "invalid_request", f"the {name} header must be 1 to {max_length} characters"
        )
    return value


def documented(model: type[BaseModel], *headers: tuple[str, int]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON body of ``model`` and optional ``headers``."""
    MODELS[model.__name__] = model
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        },
        "parameters": [
            {
                "name": name,
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": length},
            }
            for name, length in headers
        ],
    }


def component_schemas() -> dict[str, Any]:
    """The JSON Schemas of ``MODELS`` and of the models they refer to."""
    found: dict[str, Any] = {}
    for name, model in MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        found.update(schema.pop("$defs", {}))
        found[name] = schema
    return found

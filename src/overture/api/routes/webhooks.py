"""Webhooks: deliveries verified per source, and the sources themselves (admin).

A delivery carries no API key: its source's signature scheme and secrets authenticate it, and
the source's tenant receives the event. Sources come from the config file (``[webhooks.x]``,
read at start, changed only there) or from these routes; a name is unique across both.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from starlette.responses import Response

from overture.api import trigger_views
from overture.api.auth import Admin
from overture.api.problems import ApiError, ProblemDetail
from overture.api.responses import ERRORS, NOT_FOUND
from overture.api.schemas import (
    RotateSecretIn,
    WebhookSourceIn,
    WebhookSourceList,
    WebhookSourceOut,
)
from overture.api.services import Services, Svc
from overture.api.trigger_schemas import EventSentOut
from overture.api.views import JSONResponse
from overture.core.durations import parse_duration
from overture.errors import NotFound
from overture.store.records import WebhookSecret, WebhookSource
from overture.store.triggers import source_taken
from overture.telemetry import tracecontext
from overture.triggers.signatures import SignatureInvalid, verify
from overture.triggers.webhooks import (
    NAME_PATTERN,
    check_secrets,
    delivery_event,
    scheme_options,
    source_options,
)

logger = logging.getLogger("overture.api")
router = APIRouter(tags=["webhooks"], responses=ERRORS)
T = TypeVar("T")

FROM_CONFIG = "webhook_source_from_config"
DELIVERY_BODY = {
    "requestBody": {
        "required": True,
        "description": "The sender's payload, exactly as it signed it (usually JSON).",
        "content": {"application/json": {"schema": {}}},
    }
}
SIGNATURE_REFUSED: dict[int | str, dict[str, Any]] = {
    401: {**ERRORS[401], "description": "The signature is missing, wrong or too old."}
}


def url(name: str) -> str:
    return f"/v1/webhooks/{name}"


async def find_source(s: Services, name: str, tenant: str | None) -> WebhookSource:
    """The source ``name`` (the config file's first), as ``NotFound`` when it is not
    ``tenant``'s (None: whoever's it is, as for a delivery)."""
    if not re.fullmatch(NAME_PATTERN, name):  # none was made: spare the store odd text
        raise NotFound("webhook source", name)
    declared = s.webhook_sources.get(name)
    if declared is None:
        return await s.store.webhook_source(name, tenant=tenant)
    if tenant is not None and declared.tenant != tenant:
        raise NotFound("webhook source", name)
    return declared


@router.post(
    "/v1/webhooks/{source}",
    status_code=202,
    response_model=EventSentOut,
    responses={
        200: {"model": EventSentOut, "description": "Received before: nothing starts again."},
        **SIGNATURE_REFUSED,
        **NOT_FOUND,
    },
    summary="Receive a delivery: verified by its source's signature, not an API key",
    openapi_extra=DELIVERY_BODY,
)
async def deliver(request: Request, source: str) -> Response:
    s: Services = request.app.state.services
    found = await find_source(s, source, None)
    body = await request.body()
    limit = s.settings.max_body_bytes
    if len(body) > limit:  # BodyLimit refuses these first; nothing past it is ever hashed
        raise ApiError(413, "body_too_large", f"request bodies are limited to {limit} bytes")
    try:
        delivery = verify(
            found.scheme,
            headers=request.headers,
            body=body,
            secrets=found.active_secrets(datetime.now(UTC)),
            options=scheme_options(found.options),
            now=time.time(),
        )
    except SignatureInvalid as refused:
        logger.info("delivery to webhook source %r refused: %s", source, refused.reason)
        if s.metrics is not None:
            s.metrics.webhook_verified(source=source, tenant=found.tenant, result=refused.reason)
        detail = ProblemDetail(message=refused.message, code=refused.reason, path=["headers"])
        raise ApiError(
            401, "signature_invalid", f"{refused.reason}: {refused.message}", errors=[detail]
        ) from None
    if s.metrics is not None:
        s.metrics.webhook_verified(source=source, tenant=found.tenant, result="verified")
    trace = tracecontext.inbound(request.headers.getlist("traceparent"))
    event = replace(delivery_event(found, delivery, body), traceparent=trace)
    record, created = await s.store.record_event(event)
    return JSONResponse(
        {"event": trigger_views.event(record), "created": created},
        status_code=202 if created else 200,
    )


@router.post(
    "/v1/webhook-sources",
    status_code=201,
    response_model=WebhookSourceOut,
    summary="Accept webhooks at /v1/webhooks/{name}, verified by a scheme and its secrets",
)
async def create_source(who: Admin, s: Svc, body: WebhookSourceIn) -> Response:
    if body.name in s.webhook_sources:
        raise source_taken(body.name)
    options = _checked("options", lambda: source_options(body.scheme, body.options))
    _checked("secrets", lambda: check_secrets(body.scheme, options, body.secrets))
    now = datetime.now(UTC)
    created = await s.store.create_webhook_source(
        WebhookSource(
            name=body.name,
            scheme=body.scheme,
            secrets=tuple(WebhookSecret(value=v, added_at=now) for v in body.secrets),
            options=options,
            tenant=who.tenant,
        )
    )
    return JSONResponse(
        _source_json(created), status_code=201, headers={"Location": _location(created.name)}
    )


@router.get(
    "/v1/webhook-sources",
    response_model=WebhookSourceList,
    summary="Webhook sources: the config file's and those made here",
)
async def list_sources(who: Admin, s: Svc) -> Response:
    declared = [d for d in s.webhook_sources.values() if d.tenant == who.tenant]
    made = await s.store.list_webhook_sources(tenant=who.tenant)
    # A source made here whose name the config file now declares too is shadowed by it.
    shown = declared + [m for m in made if m.name not in s.webhook_sources]
    items = [_source_json(found) for found in sorted(shown, key=lambda f: f.name)]
    return JSONResponse({"items": items})


@router.get(
    "/v1/webhook-sources/{source}",
    response_model=WebhookSourceOut,
    responses=NOT_FOUND,
    summary="A webhook source (never its secrets)",
)
async def get_source(who: Admin, s: Svc, source: str) -> Response:
    return JSONResponse(_source_json(await find_source(s, source, who.tenant)))


@router.post(
    "/v1/webhook-sources/{source}/rotate",
    response_model=WebhookSourceOut,
    responses=NOT_FOUND,
    summary="Make a new secret the first; the others stay valid for retire_after",
)
async def rotate_secret(who: Admin, s: Svc, source: str, body: RotateSecretIn) -> Response:
    found = _made_here(await find_source(s, source, who.tenant))
    _checked("secret", lambda: check_secrets(found.scheme, found.options, [body.secret]))
    retire_after = _checked("retire_after", lambda: parse_duration(body.retire_after))
    rotated = await s.store.rotate_webhook_secret(
        source, body.secret, retire_after=retire_after, tenant=who.tenant
    )
    return JSONResponse(_source_json(rotated))


@router.delete(
    "/v1/webhook-sources/{source}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
    summary="Stop accepting its deliveries",
)
async def delete_source(who: Admin, s: Svc, source: str) -> Response:
    _made_here(await find_source(s, source, who.tenant))
    await s.store.delete_webhook_source(source, tenant=who.tenant)
    return Response(status_code=204)


def _made_here(found: WebhookSource) -> WebhookSource:
    if found.origin == "config":
        raise ApiError(
            409,
            FROM_CONFIG,
            f"webhook source {found.name!r} is declared in the config file "
            f"([webhooks.{found.name}]): change it there and restart the server",
        )
    return found


def _checked(field: str, check: Callable[[], T]) -> T:
    """``check()``, its ``ValueError`` a 422 that points at the body's ``field``."""
    try:
        return check()
    except ValueError as error:  # OptionsInvalid is one
        detail = ProblemDetail(message=str(error), path=["body", field])
        raise ApiError(422, "invalid_request", f"{field}: {error}", errors=[detail]) from None


def _location(name: str) -> str:
    return f"/v1/webhook-sources/{name}"


def _source_json(source: WebhookSource) -> dict[str, Any]:
    now = datetime.now(UTC)
    active = [s for s in source.secrets if s.expires_at is None or s.expires_at > now]
    return {
        "name": source.name,
        "scheme": source.scheme,
        "url": url(source.name),
        "origin": source.origin,
        "options": dict(source.options),
        "active_secrets": len(active),
        "secrets": [{"added_at": s.added_at, "expires_at": s.expires_at} for s in active],
        "created_at": source.created_at,
        "updated_at": source.updated_at,
    }

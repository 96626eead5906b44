"""``GET /metrics``: Prometheus's text format, for one tenant or, to the operator, for all.

A key sees the series of its own tenant and the workers' (``gauges.TENANT_FREE``: workers serve
every tenant); every other series carries a ``tenant`` label. An ``admin`` key of the
``operator_tenant`` setting sees every tenant's, as does every caller in development mode (no
key exists). Scrape with ``authorization: {credentials: KEY}`` in Prometheus's job config.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response

from overture.api.auth import Principal, Reader
from overture.api.responses import ERRORS
from overture.api.services import Services, Svc
from overture.apikeys import granted
from overture.status import read_status
from overture.telemetry.gauges import exposition, shared_gauges

router = APIRouter(responses=ERRORS, tags=["metrics"])

TEXT_FORMAT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The Prometheus text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


def seen_tenant(who: Principal, s: Services) -> str | None:
    """The tenant whose series ``who`` may see; None: every tenant's."""
    if who.key_id is None:  # development mode: no key exists, the caller may do anything
        return None
    operator = s.settings.operator_tenant
    if operator is not None and who.tenant == operator and granted(who.scopes, "admin"):
        return None
    return who.tenant


@router.get(
    "/metrics",
    response_class=Response,
    responses=TEXT_FORMAT,
    summary="Prometheus metrics: this process's counts and the deployment's gauges",
)
async def metrics(who: Reader, s: Svc) -> Response:
    tenant = seen_tenant(who, s)
    families = list(s.metrics.registry.collect()) if s.metrics is not None else []
    families += shared_gauges(await read_status(s.store, tenant=tenant))
    # Formatting every series is CPU work that grows with them: off the event loop.
    body = await asyncio.to_thread(exposition, families, tenant=tenant)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

"""Who is calling: a bearer API key resolves to a tenant and its scopes.

Keys are stored hashed (``overture.apikeys``); the plaintext exists only in the caller's hands.
Without any key in the database the server runs in development mode: requests without a key act
as the default tenant with every scope, until a key is created. ``serve`` refuses to do that on
a non-loopback address.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from overture.api.problems import ApiError
from overture.apikeys import granted, hash_key
from overture.store.records import DEFAULT_TENANT

logger = logging.getLogger("overture.api")
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key from `overture keys create`.",
}
UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="overture"'}


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """The caller: every query a route makes is scoped to ``tenant``."""

    tenant: str
    scopes: tuple[str, ...]
    key_id: str | None = None


DEVELOPER = Principal(tenant=DEFAULT_TENANT, scopes=("admin",))


def bearer_token(request: Request) -> str | None:
    """The key in ``Authorization: Bearer KEY``, if the request carries one."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "unauthorized", "expected Authorization: Bearer KEY", headers=UNAUTHORIZED
        )
    return token.strip()


async def _principal(request: Request) -> Principal:
    services = request.app.state.services
    token = bearer_token(request)
    if token is None:
        if not services.auth_required and await services.store.has_api_keys():
            # A key was created while serving: development mode is over from now on.
            services.auth_required = True
            logger.warning("an API key now exists: requests without a key are refused")
        if services.auth_required:
            raise ApiError(
                401,
                "unauthorized",
                "send an API key: Authorization: Bearer KEY (overture keys create)",
                headers=UNAUTHORIZED,
            )
        return DEVELOPER
    key = await services.store.api_key(hash_key(token))
    if key is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key", headers=UNAUTHORIZED)
    return Principal(tenant=key.tenant, scopes=key.scopes, key_id=key.id)


async def authorize(request: Request, scope: str) -> Principal:
    """The caller, who must hold ``scope`` (admin > write > read)."""
    principal = await _principal(request)
    if not granted(principal.scopes, scope):
        held = ", ".join(principal.scopes) or "none"
        raise ApiError(403, "forbidden", f"this key lacks the {scope!r} scope (has: {held})")
    return principal


def requires(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold ``scope``."""

    # The header is read here rather than through FastAPI's HTTPBearer dependency: a nested
    # dependency costs more than the rest of a run start's request handling (measured);
    # ``api.app`` declares the bearer scheme in the OpenAPI document instead.
    async def check(request: Request) -> Principal:
        return await authorize(request, scope)

    return check


Reader = Annotated[Principal, Depends(requires("read"))]
Writer = Annotated[Principal, Depends(requires("write"))]
Admin = Annotated[Principal, Depends(requires("admin"))]

"""The ``http`` handler's ``auth`` input: a bearer token, or a service JWT signed per attempt.

    auth: {bearer: "${secrets.AGENT_TOKEN}"}
    auth: {jwt: {secret: "${secrets.SERVICE_JWT_SECRET}", claims: {role: service_role}, ttl: 300}}

Both are sent as ``Authorization: Bearer <token>`` (a ``bearer`` value that already starts with
``Bearer `` is sent once, not as ``Bearer Bearer ...``). A JWT is signed with HMAC (HS256 by
default) and carries ``iat`` (the step's clock) and ``exp`` (``iat + ttl``), so a token that leaks
is only good for minutes. HMAC from the standard library is all HS256 needs, hence no JWT
dependency.

``Credentials.values`` are what no output, message or log line may contain: the token, the
signed JWT (derived from a secret, so no redaction of secrets would find it) and the signing key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from overture import serde
from overture.errors import NonRetryable
from overture.serde import JSON

ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
DEFAULT_TTL = 300
SCHEME = "Bearer "
TIME_CLAIMS = ("iat", "exp")
"""Set by the handler from the step's clock and ``ttl``; a step's ``claims`` may not set them."""

AUTH_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "bearer": {"type": "string", "minLength": 1},
        "jwt": {
            "type": "object",
            "required": ["secret"],
            "properties": {
                "secret": {"type": "string", "minLength": 1},
                "claims": {"type": "object"},
                "ttl": {"type": "integer", "minimum": 1},
                "algorithm": {"enum": list(ALGORITHMS)},
            },
            "additionalProperties": False,
        },
    },
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
}
"""Exactly one of ``bearer`` and ``jwt``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    """The ``Authorization`` header a step's ``auth`` asks for, and the values to keep secret."""

    authorization: str
    values: tuple[str, ...]


def credentials(auth: Mapping[str, Any], now: datetime) -> Credentials:
    """The header for ``auth`` (already checked against ``AUTH_INPUT``), a JWT issued at ``now``."""
    if "bearer" in auth:
        token = str(auth["bearer"])
        if token[: len(SCHEME)].lower() == SCHEME.lower():
            token = token[len(SCHEME) :].strip()  # given whole header value: not "Bearer Bearer"
        if not token.strip():
            raise NonRetryable("auth.bearer holds no token", code="bad_input")
        return Credentials(authorization=f"{SCHEME}{token}", values=(token,))
    spec = auth["jwt"]
    claims: dict[str, JSON] = dict(spec.get("claims") or {})
    if given := [name for name in TIME_CLAIMS if name in claims]:
        raise NonRetryable(
            f"auth.jwt.claims may not set {', '.join(given)}: the handler sets `iat` to now and "
            "`exp` to now + `ttl` (seconds)",
            code="bad_input",
        )
    issued = int(now.timestamp())
    claims.update(iat=issued, exp=issued + int(spec.get("ttl", DEFAULT_TTL)))
    secret = str(spec["secret"])
    token = sign_jwt(claims, secret, spec.get("algorithm", "HS256"))
    return Credentials(authorization=f"{SCHEME}{token}", values=(token, secret))


def sign_jwt(claims: Mapping[str, JSON], secret: str, algorithm: str = "HS256") -> str:
    """A compact JWS of ``claims``, HMAC-signed with ``secret`` (its UTF-8 bytes) (RFC 7519)."""
    digest = ALGORITHMS[algorithm]
    header = _b64(serde.dumps({"alg": algorithm, "typ": "JWT"}))
    signing_input = f"{header}.{_b64(serde.dumps(dict(claims)))}"
    signature = hmac.new(secret.encode(), signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

"""The built-in ``http`` handler: call an HTTP API from a step, idempotently and safely.

    - id: snapshot
      uses: http
      with: {method: GET, call: /functions/v1/agent-proxy/snapshot}

Every attempt sends the step's idempotency key as ``Idempotency-Key`` and ``X-Idempotency-Key``,
so the server can recognise a retried or re-delivered call. How a call ends (2xx and 3xx succeed,
``{"ok": false}`` fails, 408/425/429/5xx are retried...) is decided in ``http_exchange``; the
``auth`` input (bearer token, service JWT) in ``http_auth``; redirects, followed only on request,
in ``http_redirects``.

The SSRF guard lives in the connection layer (``http_guard.GuardedBackend``): a host is resolved
once, every address that is not public is refused unless allow-listed, and the socket is opened to
exactly an address that was checked. Redirects open new connections, so every hop is checked too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from overture import __version__, serde
from overture.errors import NonRetryable
from overture.handlers.http_auth import AUTH_INPUT, credentials
from overture.handlers.http_exchange import IDEMPOTENCY_HEADERS, Exchange, retry_after
from overture.handlers.http_guard import (
    AddressPolicy,
    GuardedBackend,
    GuardedTransport,
    Resolver,
    allow_entry,
    resolve_host,
)
from overture.handlers.http_redirects import DEFAULT_MAX_REDIRECTS
from overture.runtime.context import StepContext
from overture.serde import JSON
from overture.telemetry import tracecontext

__all__ = ["HTTP_INPUT", "HTTP_OUTPUT", "HttpHandler", "HttpSettings", "retry_after"]

BASE_URL_ENV = "OVERTURE_HTTP_BASE_URL"
MAX_RESPONSE_SETTING = "http_max_response_bytes (OVERTURE_HTTP_MAX_RESPONSE_BYTES)"
DEFAULT_HEADERS = {
    "User-Agent": f"overture/{__version__}",
    "Accept": "*/*",
    # A polite request: a server that compresses anyway is read within the size cap all the
    # same (gzip, deflate), or refused (see http_exchange).
    "Accept-Encoding": "identity",
}


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpSettings:
    """How the ``http`` handler reaches the outside world."""

    base_url: str | None = None
    """Where ``call: /path`` goes (``OVERTURE_HTTP_BASE_URL``); the SSRF guard trusts its origin
    (host and port)."""
    allow: tuple[str, ...] = ()
    """Hosts and CIDRs the SSRF guard lets through although not public
    (``OVERTURE_HTTP_ALLOWED_NETWORKS``)."""
    timeout: float = 30.0
    """Seconds for a whole call (redirects and body included) unless a step sets ``timeout``."""
    max_response_bytes: int = 10 * 1024 * 1024
    """A larger response body fails the step (``OVERTURE_HTTP_MAX_RESPONSE_BYTES``); a step's
    ``max_response_bytes`` may lower it, never raise it."""

    def __post_init__(self) -> None:
        if self.base_url is not None:
            object.__setattr__(self, "base_url", _checked_base_url(self.base_url))
        entries = tuple(entry.strip().lower().rstrip(".") for entry in self.allow)
        for entry in entries:
            allow_entry(entry)  # fails early, naming the bad entry
        object.__setattr__(self, "allow", tuple(entry for entry in entries if entry))
        if not self.timeout > 0:
            raise ValueError(f"HttpSettings.timeout must be positive, got {self.timeout!r}")
        if self.max_response_bytes < 1:
            raise ValueError(
                f"HttpSettings.max_response_bytes must be positive, got {self.max_response_bytes!r}"
            )


def _checked_base_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = httpx.URL()
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{BASE_URL_ENV} must be an http(s) URL with a host, got {url!r}")
    if parsed.userinfo:
        # Not quoted: the password is in it.
        raise ValueError(
            f"{BASE_URL_ENV} may not carry credentials (user:password@): they would not be "
            "sent; give steps `auth:` instead"
        )
    return url.rstrip("/")


def guarded_transport(
    settings: HttpSettings, resolve: Resolver = resolve_host
) -> httpx.AsyncBaseTransport:
    """httpx's transport (pool, TLS) whose every connection passes the SSRF guard.

    The handler sends through it directly, not through an ``httpx.AsyncClient``: no proxy from
    the environment (a proxy would resolve names where the guard cannot see), no cookie jar (a
    cookie must not travel to later steps, runs or tenants), and redirects by our own rules."""
    backend = GuardedBackend(AddressPolicy.of(settings.allow, settings.base_url), resolve)
    return GuardedTransport(backend)


# --- the handler -------------------------------------------------------------------------------

SCALAR = {"type": ["string", "number", "boolean"]}
HTTP_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "method": {"type": "string", "pattern": "^[A-Za-z]+$"},
        "url": {"type": "string", "minLength": 1},
        "call": {"type": "string", "pattern": "^/"},
        "headers": {"type": "object", "additionalProperties": SCALAR},
        "query": {
            "type": "object",
            "additionalProperties": {"anyOf": [SCALAR, {"type": "array", "items": SCALAR}]},
        },
        "json": {},
        "body": {"type": "string"},
        "auth": AUTH_INPUT,
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "follow_redirects": {"type": "boolean"},
        "max_redirects": {"type": "integer", "minimum": 1, "maximum": 20},
        "max_response_bytes": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}
HTTP_OUTPUT: dict[str, Any] = {
    "type": "object",
    "required": ["status", "headers", "body"],
    "properties": {"status": {"type": "integer"}, "headers": {"type": "object"}, "body": {}},
}


class HttpHandler:
    """The ``http`` handler, its settings, and one connection pool made on first use.

    Pooled connections belong to the event loop that opened them, so the pool is remade when the
    handler is used under another loop (a second ``asyncio.run``, a test's fresh loop); call
    ``aclose()`` from the loop that used it to close its connections.
    """

    def __init__(self, settings: HttpSettings | None = None, *, resolve: Resolver = resolve_host):
        self.settings = settings or HttpSettings()
        self._resolve = resolve
        self._transport: httpx.AsyncBaseTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def aclose(self) -> None:
        """Close the pooled connections (a later call opens a new pool)."""
        transport, self._transport, self._loop = self._transport, None, None
        if transport is not None:
            await transport.aclose()

    def _pooled_transport(self) -> httpx.AsyncBaseTransport:
        loop = asyncio.get_running_loop()
        if self._transport is None or self._loop is not loop:
            self._transport = guarded_transport(self.settings, self._resolve)
            self._loop = loop
        return self._transport

    async def http(
        self,
        ctx: StepContext,
        *,
        method: str = "GET",
        url: str | None = None,
        call: str | None = None,
        headers: Mapping[str, str | float | bool] | None = None,
        query: Mapping[str, Any] | None = None,
        json: JSON = None,
        body: str | None = None,
        auth: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        follow_redirects: bool = False,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        max_response_bytes: int | None = None,
    ) -> dict[str, JSON]:
        """Send an HTTP request; output ``{status, headers, body}`` (body parsed when JSON).

        ``url``, or ``call`` (a path on the configured base URL); ``method`` (GET), ``headers``,
        ``query``, ``json`` or ``body``, ``auth`` (``bearer`` or ``jwt``), ``timeout`` (seconds),
        ``follow_redirects`` (false) and ``max_redirects`` (5), ``max_response_bytes`` (at most
        the setting). See ``http_exchange`` for how a call ends.
        """
        if json is not None and body is not None:
            raise NonRetryable("give `json` or `body`, not both", code="bad_input")
        ceiling = self.settings.max_response_bytes
        if max_response_bytes is not None and max_response_bytes > ceiling:
            # Refused before anything is sent, rather than lowered: a POST would otherwise do
            # its work and only then fail on a limit the step did not ask for.
            raise NonRetryable(
                f"`max_response_bytes: {max_response_bytes}` is over this worker's ceiling, "
                f"{MAX_RESPONSE_SETTING} = {ceiling}: lower it, or have the operator raise "
                "the setting",
                code="bad_input",
            )
        own = {name: _header_value(value) for name, value in (headers or {}).items()}
        sent = _with_trace(_with_idempotency_key(own, ctx.idempotency_key))
        hidden: tuple[str, ...] = ()
        if auth is not None:
            if any(name.lower() == "authorization" for name in own):
                raise NonRetryable(
                    "give `auth` or an Authorization header, not both", code="bad_input"
                )
            given = credentials(auth, ctx.clock.now())
            sent["Authorization"], hidden = given.authorization, given.values
        exchange = Exchange(
            method=method.upper(),
            target=self._target(url, call),
            headers=own,
            credentials=hidden,
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
            max_bytes=max_response_bytes or ceiling,
            timeout=timeout or self.settings.timeout,
        )
        request = _request(exchange, sent, query, json, body)
        response, content = await exchange.send(self._pooled_transport(), request)
        ctx.log(f"{exchange.method} {exchange.where} -> {response.status_code}")
        output = exchange.outcome(response, content, ctx.clock.now())
        masked = exchange.masked(output, ctx.secrets)
        assert isinstance(masked, dict)
        return masked

    def _target(self, url: str | None, call: str | None) -> str:
        if (url is None) == (call is None):
            raise NonRetryable("give exactly one of `url` and `call`", code="bad_input")
        if call is not None:
            if self.settings.base_url is None:
                raise NonRetryable(
                    f"`call: {call}` needs a base URL: set {BASE_URL_ENV} "
                    "(or HttpSettings(base_url=...)), or give a full `url` instead",
                    code="no_base_url",
                )
            return self.settings.base_url + call
        assert url is not None
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as error:
            raise NonRetryable(f"`url` is not a URL: {error}", code="bad_url") from None
        if parsed.scheme not in ("http", "https"):
            raise NonRetryable("`url` must start with http:// or https://", code="bad_url")
        if parsed.userinfo:
            raise NonRetryable(
                "`url` may not carry credentials (user:password@): they would not be sent; "
                "give them in `auth:` (or an Authorization header) instead",
                code="bad_url",
            )
        return url


def _request(
    exchange: Exchange,
    headers: Mapping[str, str],
    query: Mapping[str, Any] | None,
    json: JSON,
    body: str | None,
) -> httpx.Request:
    """The first request: our default headers under the step's (compared case-insensitively)."""
    sent = httpx.Headers(DEFAULT_HEADERS)
    sent.update(headers)
    try:
        return httpx.Request(
            exchange.method,
            exchange.target,
            params=query,
            headers=sent,
            json=json,
            content=body,
            # Each connect and read is bounded too; Exchange.send bounds the whole call.
            extensions={"timeout": httpx.Timeout(exchange.timeout).as_dict()},
        )
    except httpx.InvalidURL as error:
        raise NonRetryable(f"bad url {exchange.where}: {error}", code="bad_url") from None


def _with_idempotency_key(headers: Mapping[str, str], key: str) -> dict[str, str]:
    """``headers`` plus both idempotency headers; a key the step set itself fills both."""
    own = {name.lower(): value for name, value in headers.items()}
    key = next((own[n.lower()] for n in IDEMPOTENCY_HEADERS if n.lower() in own), key)
    missing = {name: key for name in IDEMPOTENCY_HEADERS if name.lower() not in own}
    return {**headers, **missing}


def _with_trace(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus the attempt's ``traceparent``, unless the step sent its own: the server
    called joins the run's trace."""
    traceparent = tracecontext.outbound.get()
    if traceparent is None or any(name.lower() == "traceparent" for name in headers):
        return headers
    return {**headers, "traceparent": traceparent}


def _header_value(value: str | float | bool) -> str:
    return value if isinstance(value, str) else serde.dumps_text(value)

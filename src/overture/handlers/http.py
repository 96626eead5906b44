"""The built-in ``http`` handler: call an HTTP API from a step, idempotently and safely.

    - id: snapshot
      uses: http
      with: {method: GET, call: /functions/v1/agent-proxy/snapshot}

Every attempt sends the step's idempotency key as ``Idempotency-Key`` and ``X-Idempotency-Key``,
so the server can recognise a retried or re-delivered call. 2xx succeeds; 408, 429, 5xx, timeouts
and network errors are retried (after ``Retry-After`` when the server sends one); any other status
fails the step at once with code ``http_<status>``.

The SSRF guard lives in the connection layer (``GuardedBackend``): a host is resolved once, every
address that is not public is refused unless allow-listed, and the socket is opened to exactly an
address that was checked. The name is never looked up again, so a DNS answer that changes between
check and connect (rebinding) cannot slip a private address in; TLS still verifies the
certificate for the host name. Redirects open new connections, so every hop is checked too.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from overture import serde
from overture.errors import NonRetryable, Retry, StepError
from overture.handlers.http_guard import (
    ALLOW_ENV,
    AddressPolicy,
    GuardedBackend,
    GuardedTransport,
    Resolver,
    allow_entry,
    resolve_host,
)
from overture.runtime.context import StepContext
from overture.serde import JSON

BASE_URL_ENV = "OVERTURE_HTTP_BASE_URL"

MAX_RETRY_AFTER = 300.0
"""Seconds: a longer ``Retry-After`` is shortened, so one answer cannot park a step for days."""
MAX_REDIRECTS = 10
IDEMPOTENCY_HEADERS = ("Idempotency-Key", "X-Idempotency-Key")
RETURNED_HEADERS = ("content-type", "location", "retry-after", "etag", "x-request-id")
"""Response headers a step's output keeps: enough to act on, never cookies or tokens."""
EXCERPT_CHARS = 200


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpSettings:
    """How the ``http`` handler reaches the outside world."""

    base_url: str | None = None
    """Where ``call: /path`` goes (``OVERTURE_HTTP_BASE_URL``); the SSRF guard trusts its host."""
    allow: tuple[str, ...] = ()
    """Hosts and CIDRs the SSRF guard lets through although not public (``OVERTURE_HTTP_ALLOW``)."""
    timeout: float = 30.0
    """Seconds per request unless a step sets ``timeout``."""
    max_response_bytes: int = 10 * 1024 * 1024
    """A larger (decoded) response body fails the step unless it sets ``max_response_bytes``."""

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

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> HttpSettings:
        """Settings from ``OVERTURE_HTTP_BASE_URL`` and ``OVERTURE_HTTP_ALLOW`` (a comma list)."""
        base_url = environ.get(BASE_URL_ENV, "").strip() or None
        allow = tuple(entry for entry in environ.get(ALLOW_ENV, "").split(",") if entry.strip())
        return cls(base_url=base_url, allow=allow)


def _checked_base_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = httpx.URL()
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{BASE_URL_ENV} must be an http(s) URL with a host, got {url!r}")
    return url.rstrip("/")


# --- the SSRF guard, at connection level (handlers/http_guard.py) --------------------------


def guarded_client(settings: HttpSettings, resolve: Resolver = resolve_host) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every connection passes the SSRF guard."""
    backend = GuardedBackend(AddressPolicy.of(settings.allow, settings.base_url), resolve)
    return httpx.AsyncClient(
        transport=GuardedTransport(backend),
        timeout=settings.timeout,
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: a proxy would resolve names unguarded
        # Cookies a server sets must not travel to later steps, runs or tenants.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


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
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "follow_redirects": {"type": "boolean"},
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
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def aclose(self) -> None:
        """Close the pooled connections (a later call opens a new pool)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()

    def _pooled_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = guarded_client(self.settings, self._resolve)
            self._loop = loop
        return self._client

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
        timeout: float | None = None,
        follow_redirects: bool = False,
        max_response_bytes: int | None = None,
    ) -> dict[str, JSON]:
        """Send an HTTP request; output ``{status, headers, body}`` (body parsed when JSON).

        ``url``, or ``call`` (a path on the configured base URL); ``method`` (GET), ``headers``,
        ``query``, ``json`` or ``body``, ``timeout`` (seconds), ``follow_redirects`` (false),
        ``max_response_bytes``. 408, 429, 5xx and network errors are retryable; other statuses
        fail with code ``http_<status>``.
        """
        if json is not None and body is not None:
            raise NonRetryable("give `json` or `body`, not both", code="bad_input")
        own = {name: _header_value(value) for name, value in (headers or {}).items()}
        exchange = _Exchange(method=method.upper(), target=self._target(url, call), headers=own)
        client = self._pooled_client()
        try:
            request = client.build_request(
                exchange.method,
                exchange.target,
                params=query,
                headers=_with_idempotency_key(own, ctx.idempotency_key),
                json=json,
                content=body,
                timeout=timeout or self.settings.timeout,
            )
        except httpx.InvalidURL as error:
            raise NonRetryable(f"bad url {exchange.where}: {error}", code="bad_url") from None
        limit = max_response_bytes or self.settings.max_response_bytes
        response, content = await exchange.send(client, request, follow_redirects, limit)
        ctx.log(f"{exchange.method} {exchange.where} -> {response.status_code}")
        return exchange.outcome(response, content, ctx.clock.now())

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
            scheme = httpx.URL(url).scheme
        except httpx.InvalidURL as error:
            raise NonRetryable(f"`url` is not a URL: {error}", code="bad_url") from None
        if scheme not in ("http", "https"):
            raise NonRetryable("`url` must start with http:// or https://", code="bad_url")
        return url


def _with_idempotency_key(headers: Mapping[str, str], key: str) -> dict[str, str]:
    """``headers`` plus both idempotency headers; a key the step set itself fills both."""
    own = {name.lower(): value for name, value in headers.items()}
    key = next((own[n.lower()] for n in IDEMPOTENCY_HEADERS if n.lower() in own), key)
    missing = {name: key for name in IDEMPOTENCY_HEADERS if name.lower() not in own}
    return {**headers, **missing}


def _header_value(value: str | float | bool) -> str:
    return value if isinstance(value, str) else serde.dumps_text(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Exchange:
    """One step's request and how its ending is reported, with nothing secret in any message."""

    method: str
    target: str
    headers: Mapping[str, str]
    """The step's own headers: their values may be secrets, so no message may contain them."""

    @property
    def where(self) -> str:
        """The target without query or credentials (either may carry a secret)."""
        try:
            url = httpx.URL(self.target)
        except httpx.InvalidURL:
            return "(invalid url)"
        return str(url.copy_with(query=None, fragment=None, userinfo=b""))

    def scrub(self, text: str) -> str:
        """``text`` (from the server) without the step's header values, in case it echoes them.

        Values under 4 characters are left alone: they are no secret, and replacing every "1"
        would garble the message."""
        for value in self.headers.values():
            if len(value) >= 4:
                text = text.replace(value, "***")
        return text

    async def send(
        self, client: httpx.AsyncClient, request: httpx.Request, follow: bool, limit: int
    ) -> tuple[httpx.Response, bytes]:
        """The final response and its body, following redirects (each hop guarded) if asked."""
        first = request.url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = await client.send(request, stream=True)
            except httpx.RequestError as error:
                raise self._request_failed(error) from None
            try:
                if not follow or response.next_request is None:
                    return response, await self._read(response, limit)
                request = self._next_hop(response.next_request, first)
            finally:
                await response.aclose()
        raise NonRetryable(f"more than {MAX_REDIRECTS} redirects", code="too_many_redirects")

    def _next_hop(self, request: httpx.Request, first: httpx.URL) -> httpx.Request:
        url = request.url
        if (url.scheme, url.host, url.port) != (first.scheme, first.host, first.port):
            # The step's headers were meant for its own origin and may carry credentials.
            for name in self.headers:
                request.headers.pop(name, None)
        return request

    async def _read(self, response: httpx.Response, limit: int) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(limit)
        content = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > limit:
                    raise self._too_large(limit)
        except httpx.RequestError as error:
            raise self._request_failed(error) from None
        return bytes(content)

    def _too_large(self, limit: int) -> NonRetryable:
        return NonRetryable(
            f"{self.method} {self.where}: the response is larger than {limit} bytes "
            "(raise max_response_bytes if this is expected)",
            code="response_too_large",
        )

    def _request_failed(self, error: httpx.RequestError) -> StepError:
        kind = type(error).__name__
        if isinstance(error, httpx.TimeoutException):
            return _retry(f"{self.method} {self.where} timed out ({kind})", code="http_timeout")
        if isinstance(error, httpx.LocalProtocolError | httpx.UnsupportedProtocol):
            # h11 quotes the offending header value in its message: say less.
            return NonRetryable(
                f"{self.method} {self.where} could not be sent ({kind}): check the method, "
                "url and header names and values",
                code="bad_request",
            )
        detail = self.scrub(str(error)) or kind
        return _retry(f"{self.method} {self.where} failed: {detail}", code="http_network_error")

    def outcome(self, response: httpx.Response, content: bytes, now: datetime) -> dict[str, JSON]:
        """The step's output for a 2xx response; raises how any other status fails the step."""
        status = response.status_code
        if 200 <= status < 300:
            kept: dict[str, JSON] = {
                name: response.headers[name]
                for name in RETURNED_HEADERS
                if name in response.headers
            }
            return {"status": status, "headers": kept, "body": _body(response, content)}
        message = f"{self.method} {self.where} answered {status} {response.reason_phrase}"
        if excerpt := self.scrub(_excerpt(content)):
            message += f": {excerpt}"
        if status in (408, 429) or status >= 500:
            delay = retry_after(response.headers.get("retry-after"), now)
            raise _retry(message, code=f"http_{status}", delay=delay, status=status)
        details: dict[str, object] = {"status": status}
        if 300 <= status < 400 and "location" in response.headers:
            details["location"] = response.headers["location"]
        raise NonRetryable(message, code=f"http_{status}", details=details)


def _retry(message: str, *, code: str, delay: float | None = None, status: int = 0) -> Retry:
    retry = Retry(message, code=code, delay=delay)
    if status:  # Retry takes no details argument; it has the attribute all the same
        retry.details = {"status": status}
    return retry


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` value (seconds or an HTTP date) asks for, capped; None if absent
    or unreadable."""
    if value is None or not (value := value.strip()):
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _body(response: httpx.Response, content: bytes) -> JSON:
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        if not content.strip():
            return None
        try:
            parsed: JSON = serde.loads(content)
        except ValueError:
            pass  # a server that says JSON and sends something else: keep its text
        else:
            return parsed
    return content.decode(response.encoding or "utf-8", errors="replace")


def _excerpt(content: bytes) -> str:
    text = " ".join(content[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace").split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"

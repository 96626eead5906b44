"""One ``http`` step's call: send it (following redirects if asked), read at most so many bytes,
and decide how the step ends.

    2xx, 3xx not followed      succeeds: {status, headers, body}
    2xx JSON {"ok": false}     fails: agent_not_ok (retried only if the body says "retryable")
    408, 425, 429, 5xx         retried after Retry-After (seconds or an HTTP date, capped)
    timeout, network error     retried: http_timeout, http_network_error
    a certificate not trusted  fails at once: tls_error
    any other 4xx              fails at once: http_<status>
    too large a body           fails at once: response_too_large
    a body in br, zstd...      fails at once: unsupported_encoding

``timeout`` bounds the whole exchange (every redirect, every byte of the body), not each read:
a server that trickles a byte now and then cannot keep an attempt alive. The size cap counts
the bytes that arrive and, for a gzip or deflate body, the bytes it decodes to, which never
exceed the cap in memory: a small compressed body cannot inflate to gigabytes.

Nothing secret may leave: messages name the URL without its query or credentials, text from the
server has the step's header values and credentials replaced by ``***``, and the output has
secrets and credentials masked, in case the server echoes them.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx

from overture import serde
from overture.errors import NonRetryable, Retry, StepError
from overture.handlers.http_redirects import DEFAULT_MAX_REDIRECTS, next_hop, origin
from overture.runtime.redaction import REDACTED, redact_json
from overture.serde import JSON

MAX_RETRY_AFTER = 300.0
"""Seconds: a longer ``Retry-After`` is shortened, so one answer cannot park a step for days."""
RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""Besides every 5xx: the server may well answer the same request differently later."""
IDEMPOTENCY_HEADERS = ("Idempotency-Key", "X-Idempotency-Key")
RETURNED_HEADERS = ("content-type", "location", "retry-after", "etag", "x-request-id")
"""Response headers a step's output keeps: enough to act on, never cookies or tokens."""
EXCERPT_CHARS = 200
MIN_SCRUBBED = 4
"""Shorter header values are not scrubbed from server text: they are no secret, and replacing
every "1" would garble the message."""
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""The content codings the handler decodes (zlib's window bits for each); it refuses others."""

IDENTITY = ("", "identity")

E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True, kw_only=True, slots=True)
class Exchange:
    """One step's request and how its ending is reported, with nothing secret in any message."""

    method: str
    target: str
    headers: Mapping[str, str]
    """The step's own headers: their values may be secrets, so no message may contain them."""
    credentials: tuple[str, ...] = ()
    """Values ``auth`` produced (token, JWT, signing key): never in a message or the output."""
    follow_redirects: bool = False
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_bytes: int
    """The most bytes the body may take, as it arrives and decoded."""
    timeout: float
    """Seconds for the whole exchange: every hop, and the body read to its end."""

    @property
    def where(self) -> str:
        """The target without query or credentials (either may carry a secret)."""
        try:
            url = httpx.URL(self.target)
        except httpx.InvalidURL:
            return "(invalid url)"
        return str(url.copy_with(query=None, fragment=None, userinfo=b""))

    def scrub(self, text: str) -> str:
        """``text`` (from the server) without the step's header values or credentials."""
        for value in (*self.headers.values(), *self.credentials):
            if len(value) >= MIN_SCRUBBED:
                text = text.replace(value, REDACTED)
        return text

    def masked(self, output: JSON, secrets: Mapping[str, str]) -> JSON:
        """``output`` with ``secrets`` and the credentials masked at any depth."""
        hidden = {**secrets, **{f"credential {i}": v for i, v in enumerate(self.credentials)}}
        return redact_json(output, hidden)

    # --- sending -------------------------------------------------------------------------------

    async def send(
        self, transport: httpx.AsyncBaseTransport, request: httpx.Request
    ) -> tuple[httpx.Response, bytes]:
        """The final response and its body, following redirects (each hop guarded) if asked,
        all within ``timeout``."""
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                return await self._exchange(transport, request)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise _retry(
                f"{self.method} {self.where} timed out: no complete response within "
                f"{self.timeout:g}s",
                code="http_timeout",
            ) from None

    async def _exchange(
        self, transport: httpx.AsyncBaseTransport, request: httpx.Request
    ) -> tuple[httpx.Response, bytes]:
        first = origin(request.url)
        private = {name.lower() for name in self.headers} | {"authorization"}
        private -= {name.lower() for name in IDEMPOTENCY_HEADERS}
        for _ in range(self.max_redirects + 1):
            response = await self._send_one(transport, request)
            try:
                hop = (
                    next_hop(request, response, first=first, private=private)
                    if self.follow_redirects
                    else None
                )
                if hop is None:
                    return response, await self._read(response)
            finally:
                await response.aclose()
            request = hop
        raise NonRetryable(
            f"{self.method} {self.where}: more than {self.max_redirects} redirects",
            code="too_many_redirects",
        )

    async def _send_one(
        self, transport: httpx.AsyncBaseTransport, request: httpx.Request
    ) -> httpx.Response:
        try:
            response = await transport.handle_async_request(request)
        except httpx.RequestError as error:
            raise self._request_failed(error) from None
        response.request = request
        return response

    async def _read(self, response: httpx.Response) -> bytes:
        """The body, decoded: at most ``max_bytes`` arrive and at most that many are decoded.
        Raw chunks, decoded here: httpx's own decoders would inflate a whole chunk at once."""
        declared = response.headers.get("content-length", "")
        bodiless = response.request.method == "HEAD"  # its Content-Length is the GET's
        if declared.isdigit() and int(declared) > self.max_bytes and not bodiless:
            raise self._too_large()  # said so up front: read none of it
        decoder: Decoder | None = None
        content = bytearray()
        arrived = 0
        try:
            async for chunk in response.aiter_raw():
                arrived += len(chunk)
                if arrived > self.max_bytes:
                    raise self._too_large()  # the rest is never read
                if not chunk:
                    continue
                decoder = decoder or self._decoder(response)
                if decoder is None:
                    return b""  # a failure status in a coding we cannot read: the status says
                content += decoder.decode(chunk, self.max_bytes - len(content))
                if len(content) > self.max_bytes:
                    raise self._too_large()
        except httpx.RequestError as error:
            raise self._request_failed(error) from None
        except zlib.error as error:
            raise _retry(
                f"{self.method} {self.where}: its body is not valid "
                f"{response.headers.get('content-encoding')}: {error}",
                code="http_network_error",
            ) from None
        return bytes(content)

    def _decoder(self, response: httpx.Response) -> Decoder | None:
        """How to undo the body's Content-Encoding; None when the status fails the step anyway
        and the coding is one the handler cannot read (the status decides, without an excerpt)."""
        said = response.headers.get("content-encoding", "")
        codings = [c for c in (c.strip().lower() for c in said.split(",")) if c not in IDENTITY]
        if not codings:
            return Decoder(None)
        if len(codings) == 1 and codings[0] in WBITS:
            return Decoder(codings[0])
        if response.status_code >= 400:
            return None
        raise NonRetryable(
            f"{self.method} {self.where} answered {response.status_code} with Content-Encoding "
            f"{said!r}, which the handler does not read (it asks for identity, and reads gzip "
            "and deflate)",
            code="unsupported_encoding",
            details={"status": response.status_code},
        )

    def _too_large(self) -> NonRetryable:
        return NonRetryable(
            f"{self.method} {self.where}: the response is larger than {self.max_bytes} bytes "
            "(if this is expected, raise the step's max_response_bytes; the "
            "http_max_response_bytes setting is its ceiling)",
            code="response_too_large",
        )

    def _request_failed(self, error: httpx.RequestError) -> StepError:
        kind = type(error).__name__
        if (refused := _cause(error, ssl.SSLCertVerificationError)) is not None:
            # The caller's configuration, not an outage: retrying would meet the same certificate.
            return NonRetryable(
                f"{self.method} {self.where}: TLS certificate verification failed: "
                f"{self.scrub(str(refused))} (trust a private certificate authority with "
                "SSL_CERT_FILE or SSL_CERT_DIR)",
                code="tls_error",
            )
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

    # --- how the step ends ---------------------------------------------------------------------

    def outcome(self, response: httpx.Response, content: bytes, now: datetime) -> dict[str, JSON]:
        """The step's output for a 2xx or 3xx response; raises how any other status fails it."""
        status = response.status_code
        if status >= 400:
            raise self._failed(response, content, now)
        body = _body(response, content)
        if 200 <= status < 300 and isinstance(body, dict) and body.get("ok") is False:
            raise self._not_ok(response, body, now)
        kept: dict[str, JSON] = {
            name: response.headers[name] for name in RETURNED_HEADERS if name in response.headers
        }
        return {"status": status, "headers": kept, "body": body}

    def _failed(self, response: httpx.Response, content: bytes, now: datetime) -> StepError:
        status = response.status_code
        message = f"{self.method} {self.where} answered {status} {response.reason_phrase}"
        if excerpt := _shortened(self.scrub(content.decode("utf-8", errors="replace"))):
            message += f": {excerpt}"
        if status in RETRYABLE_STATUSES or status >= 500:
            delay = retry_after(response.headers.get("retry-after"), now)
            return _retry(message, code=f"http_{status}", delay=delay, status=status)
        return NonRetryable(message, code=f"http_{status}", details={"status": status})

    def _not_ok(self, response: httpx.Response, body: dict[str, JSON], now: datetime) -> StepError:
        """A 2xx whose JSON says ``ok: false``: the agents' way to report a failure."""
        status = response.status_code
        message = f"{self.method} {self.where} answered {status} with ok: false"
        if reason := _reason(body):
            message += f": {_shortened(self.scrub(reason))}"
        if body.get("retryable") is True:
            delay = retry_after(response.headers.get("retry-after"), now)
            return _retry(message, code="agent_not_ok", delay=delay, status=status)
        return NonRetryable(message, code="agent_not_ok", details={"status": status})


class Decoder:
    """A body's content coding undone chunk by chunk, never producing more than it is given
    room for, so the decoded body is bounded however small the compressed one is."""

    def __init__(self, coding: str | None) -> None:
        self._coding = coding
        self._inflate = zlib.decompressobj(WBITS[coding]) if coding else None
        self._started = False

    def decode(self, chunk: bytes, room: int) -> bytes:
        """``chunk`` decoded, but at most ``room + 1`` bytes of it (more than ``room``: too
        large, and the rest is never inflated)."""
        if self._inflate is None:
            return chunk
        try:
            out = self._inflate.decompress(chunk, room + 1)
        except zlib.error:
            if self._started or self._coding != "deflate":
                raise
            # "deflate" is meant to be zlib-wrapped, but some servers send it raw (as httpx reads).
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._inflate.decompress(chunk, room + 1)
        self._started = True
        while self._inflate.unconsumed_tail and len(out) <= room:
            out += self._inflate.decompress(self._inflate.unconsumed_tail, room + 1 - len(out))
        return out


def _cause(error: BaseException, kind: type[E]) -> E | None:
    """The first exception of ``kind`` in ``error``'s chain of causes (httpx wraps httpcore's
    error, which wraps the socket's)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


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
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):  # \d would take any script's digits
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


def _reason(body: dict[str, JSON]) -> str:
    """What an ``ok: false`` body says went wrong: its ``error`` (a string, or an object with a
    ``message``) or its ``message``."""
    error = body.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    for said in (error, body.get("message")):
        if isinstance(said, str) and said.strip():
            return said
    return ""


def _shortened(text: str) -> str:
    """At most ``EXCERPT_CHARS`` of ``text``, its whitespace collapsed (scrub it before: a secret
    cut in two is found by no replacement)."""
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"

"""One ``http`` step's call: send it (following redirects if asked), read at most so many bytes,
and decide how the step ends.

    2xx, 3xx not followed      succeeds: {status, headers, body}
    2xx JSON {"ok": false}     fails: agent_not_ok (retried only if the body says "retryable")
    408, 425, 429, 5xx         retried after Retry-After (seconds or an HTTP date, capped)
    timeout, network error     retried: http_timeout, http_network_error
    any other 4xx              fails at once: http_<status>
    too large a body           fails at once: response_too_large

Nothing secret may leave: messages name the URL without its query or credentials, text from the
server has the step's header values and credentials replaced by ``***``, and the output has
secrets and credentials masked, in case the server echoes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from overture import serde
from overture.errors import NonRetryable, Retry, StepError
from overture.handlers.http_redirects import next_hop, origin
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
    max_redirects: int = 5
    max_bytes: int

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
        """The final response and its body, following redirects (each hop guarded) if asked."""
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
        declared = response.headers.get("content-length", "")
        encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
        bodiless = response.request.method == "HEAD"  # its Content-Length is the GET's
        if declared.isdigit() and int(declared) > self.max_bytes and not (encoded or bodiless):
            raise self._too_large()  # said so up front: read none of it
        content = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > self.max_bytes:
                    raise self._too_large()  # the rest is never read
        except httpx.RequestError as error:
            raise self._request_failed(error) from None
        return bytes(content)

    def _too_large(self) -> NonRetryable:
        return NonRetryable(
            f"{self.method} {self.where}: the response is larger than {self.max_bytes} bytes "
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

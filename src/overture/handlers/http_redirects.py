"""Redirects for the ``http`` handler, followed only when a step sets ``follow_redirects: true``.

Built here rather than left to httpx so that the rules are ours and visible: which statuses are
followed, when the method becomes GET, and which headers stay behind when a redirect leaves the
step's origin. Every hop opens its connections through the SSRF guard like the first request, so
a redirect to a private address is refused before any byte goes there.
"""

from __future__ import annotations

from collections.abc import Collection

import httpx

from overture.errors import NonRetryable

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_MAX_REDIRECTS = 5
"""How many redirects a step with ``follow_redirects: true`` follows unless it sets
``max_redirects``."""
DEFAULT_PORTS = {"http": 80, "https": 443}
BODY_HEADERS = ("content-length", "content-type", "transfer-encoding")

Origin = tuple[str, str, int]


def origin(url: httpx.URL) -> Origin:
    """Scheme, host and port (the default port spelled out), as browsers compare origins."""
    return url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0)


def next_hop(
    request: httpx.Request, response: httpx.Response, *, first: Origin, private: Collection[str]
) -> httpx.Request | None:
    """The request ``response`` redirects to, or None when it is no redirect to follow.

    A 303, a 302, and a 301 answering a POST continue as a GET without the body, as browsers do;
    307 and 308 repeat the method and the body. When the new URL is not of the ``first`` origin,
    the headers named in ``private`` (lower case) are not sent there.
    """
    location = response.headers.get("location")
    if response.status_code not in REDIRECT_STATUSES or location is None:
        return None
    url = _target(request.url, location)
    method = _method(request.method, response.status_code)
    headers = httpx.Headers(request.headers)
    del headers["host"]  # the new Request sets it from the new URL
    content: bytes | None = request.content
    if method != request.method:
        content = None
        for name in BODY_HEADERS:
            headers.pop(name, None)
    if origin(url) != first:
        # The step's own headers, and Authorization, were meant for its own origin.
        for name in private:
            headers.pop(name, None)
    return httpx.Request(
        method, url, headers=headers, content=content, extensions=request.extensions
    )


def _target(base: httpx.URL, location: str) -> httpx.URL:
    try:
        url = base.join(location)
    except httpx.InvalidURL as error:
        raise NonRetryable(f"a redirect to an invalid URL: {error}", code="bad_redirect") from None
    if url.scheme not in DEFAULT_PORTS or not url.host:
        raise NonRetryable(
            f"a redirect to a {url.scheme or 'relative'}: URL; only http(s) is followed",
            code="bad_redirect",
        )
    return url.copy_with(fragment=None)


def _method(method: str, status: int) -> str:
    if status in (302, 303) and method != "HEAD":
        return "GET"
    if status == 301 and method == "POST":
        return "GET"
    return method

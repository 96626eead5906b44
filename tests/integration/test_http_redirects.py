"""Redirects: returned as the output unless a step sets ``follow_redirects: true``; when followed,
every hop passes the SSRF guard before any connection, the method and body change as browsers
change them, the idempotency key goes along and credentials stay with their origin."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address
from urllib.parse import urlencode

import pytest
from tests.support.http_target import (
    KEY,
    LOOPBACK,
    Target,
    failure,
    listening,
    output,
    serve_target,
)

from overture.handlers.http import HttpSettings
from overture.serde import JSON

pytestmark = pytest.mark.asyncio

SECRET = "t0ken-for-the-first-host-only"


@pytest.fixture
def target() -> Iterator[Target]:
    """The server on 127.0.0.1."""
    yield from serve_target("127.0.0.1")


def redirect(target: Target, to: str, code: int = 302, **inputs: JSON) -> dict[str, JSON]:
    """Inputs for a call to ``target`` that answers with a redirect to ``to``."""
    query: dict[str, JSON] = {"to": to, "code": code}
    return {"url": f"{target.url}/redirect", "query": query, **inputs}


# --- not followed ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirect_is_the_output_unless_followed(target: Target, code: int) -> None:
    out = await output(redirect(target, "/json", code), LOOPBACK)
    assert (out["status"], out["headers"]["location"]) == (code, "/json")
    assert [r.url.path for r in target.received] == ["/redirect"]


async def test_a_location_that_could_not_be_followed_is_output_all_the_same(
    target: Target,
) -> None:
    out = await output(redirect(target, "ftp://files.example/x"), LOOPBACK)
    assert out["headers"]["location"] == "ftp://files.example/x"


# --- followed ----------------------------------------------------------------------------------


async def test_redirects_are_followed_when_the_step_asks(target: Target) -> None:
    out = await output(redirect(target, "/json", follow_redirects=True), LOOPBACK)
    assert (out["status"], out["body"]) == (200, {"hello": "world"})
    assert [r.url.path for r in target.received] == ["/redirect", "/json"]


@pytest.mark.parametrize(
    ("code", "method", "then", "body"),
    [
        (303, "POST", "GET", ""),
        (303, "PUT", "GET", ""),
        (302, "POST", "GET", ""),
        (301, "POST", "GET", ""),
        (301, "PUT", "PUT", '{"seat":"12A"}'),
        (307, "POST", "POST", '{"seat":"12A"}'),
        (308, "PUT", "PUT", '{"seat":"12A"}'),
    ],
)
async def test_the_method_and_body_after_a_redirect(
    target: Target, code: int, method: str, then: str, body: str
) -> None:
    inputs = redirect(target, "/echo", code, method=method, json={"seat": "12A"})
    out = await output({**inputs, "follow_redirects": True}, LOOPBACK)
    assert (out["body"]["method"], out["body"]["body"]) == (then, body)
    if then == "GET":
        assert "content-type" not in out["body"]["headers"]


async def test_on_the_same_origin_every_header_goes_along(target: Target) -> None:
    inputs = redirect(
        target,
        "/headers",
        follow_redirects=True,
        headers={"X-Api-Key": "k3y", "Idempotency-Key": "mine"},
        auth={"bearer": SECRET},
    )
    received = (await output(inputs, LOOPBACK))["body"]
    assert received["authorization"] == "Bearer ***"  # sent, and masked in the output
    assert target.received[1].headers["authorization"] == f"Bearer {SECRET}"
    assert (received["x-api-key"], received["idempotency-key"]) == ("k3y", "mine")


@pytest.mark.parametrize("key", [None, "mine"])
async def test_on_another_host_only_the_idempotency_key_goes_along(
    target: Target, key: str | None
) -> None:
    # localhost:PORT is the same server, but another origin than 127.0.0.1:PORT.
    headers: dict[str, JSON] = {"X-Api-Key": "k3y", "Authorization": f"Bearer {SECRET}"}
    if key is not None:
        headers["X-Idempotency-Key"] = key
    inputs = redirect(
        target, f"http://localhost:{target.port}/headers", follow_redirects=True, headers=headers
    )
    received = (await output(inputs, HttpSettings(allow=("127.0.0.1", "localhost"))))["body"]
    assert "authorization" not in received and "x-api-key" not in received
    assert received["idempotency-key"] == received["x-idempotency-key"] == (key or KEY)
    assert target.received[0].headers["x-api-key"] == "k3y"  # the first hop had them


async def test_auth_is_not_sent_to_another_host(target: Target) -> None:
    inputs = redirect(
        target,
        f"http://localhost:{target.port}/headers",
        follow_redirects=True,
        auth={"jwt": {"secret": SECRET, "claims": {"sub": "overture"}}},
    )
    received = (await output(inputs, HttpSettings(allow=("127.0.0.1", "localhost"))))["body"]
    assert "authorization" in target.received[0].headers
    assert "authorization" not in received


def chain(target: Target, hops: int) -> str:
    """A URL that redirects ``hops`` times before it reaches ``/json``."""
    url = f"{target.url}/json"
    for _ in range(hops):
        url = f"{target.url}/redirect?{urlencode({'to': url})}"
    return url


async def test_redirects_stop_after_max_redirects(target: Target) -> None:
    ok = await output({"url": chain(target, 5), "follow_redirects": True}, LOOPBACK)
    assert ok["body"] == {"hello": "world"}  # 5 redirects: the default allows them

    target.received.clear()
    error = await failure({"url": chain(target, 6), "follow_redirects": True}, LOOPBACK)
    assert (error.code, error.retryable) == ("too_many_redirects", False)
    assert "more than 5 redirects" in error.message
    assert len(target.received) == 6  # the first request and five hops; the sixth is not sent

    target.received.clear()
    inputs: dict[str, JSON] = {"url": chain(target, 3), "follow_redirects": True}
    error = await failure({**inputs, "max_redirects": 2}, LOOPBACK)
    assert (error.code, "more than 2 redirects" in error.message) == ("too_many_redirects", True)
    assert len(target.received) == 3


@pytest.mark.parametrize(
    "to", ["ftp://files.example/x", "file:///etc/passwd", "javascript:alert(1)", "https:///x"]
)
async def test_a_redirect_to_what_cannot_be_fetched_fails_at_once(target: Target, to: str) -> None:
    error = await failure(redirect(target, to, follow_redirects=True), LOOPBACK)
    assert (error.code, error.retryable) == ("bad_redirect", False)


# --- the SSRF guard on every hop ---------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.2", "127.1.2.3"])
async def test_a_redirect_to_loopback_is_refused_before_connecting(
    target: Target, host: str
) -> None:
    # Only 127.0.0.1 is allowed; Linux routes all of 127/8 to lo, so 127.0.0.2 reaches the
    # listener unless the guard refuses it first.
    with listening(host) as listener:
        to = f"http://{listener.netloc}/json"
        error = await failure(redirect(target, to, follow_redirects=True), LOOPBACK)
        assert (error.code, error.retryable) == ("ssrf_blocked", False)
        assert error.details == {"host": host, "address": host}
        assert listener.accepted == 0

        # The same redirect with 127/8 allowed: it does reach the listener.
        allowed = HttpSettings(allow=("127.0.0.0/8",))
        out = await output(redirect(target, to, follow_redirects=True), allowed)
        assert out["body"] == {"reached": True} and listener.accepted == 1


@pytest.mark.parametrize(
    ("to", "address"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254"),
        ("http://10.0.0.1/admin", "10.0.0.1"),
        ("http://[::ffff:192.168.0.1]/", "::ffff:192.168.0.1"),
    ],
)
async def test_a_redirect_to_a_private_address_is_refused(
    target: Target, to: str, address: str
) -> None:
    error = await failure(redirect(target, to, follow_redirects=True), LOOPBACK)
    assert (error.code, error.retryable) == ("ssrf_blocked", False)
    assert ip_address(str(error.details["address"])) == ip_address(address)


async def test_a_redirect_to_a_loopback_alias_is_refused(target: Target) -> None:
    # 127.0.0.1 itself is allowed, by address: an alias of another loopback address is not.
    with listening("127.0.0.2") as listener:
        to = f"http://2130706434:{listener.port}/json"  # 127.0.0.2 in decimal
        error = await failure(redirect(target, to, follow_redirects=True), LOOPBACK)
        assert error.code == "ssrf_blocked" and error.details["address"] == "127.0.0.2"
        assert listener.accepted == 0

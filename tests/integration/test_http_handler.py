"""The ``http`` handler against real servers on loopback addresses: outputs, idempotency keys,
retry classification, redirects, the SSRF guard and its pinned connections, and secrets.

Attempts go through ``runtime.executor.execute`` (input schema, error classification and
redaction, as a worker runs them) unless a test must see exactly what the handler raised.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import socket
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from overture.core.events import ErrorInfo
from overture.demo.server import serving
from overture.errors import StepError
from overture.handlers.builtin import builtin_registry
from overture.handlers.http import (
    HTTP_INPUT,
    HttpHandler,
    HttpSettings,
    retry_after,
)
from overture.handlers.http_guard import (
    AddressPolicy,
    IPAddress,
    Resolver,
    is_public,
    resolve_host,
)
from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import StepContext
from overture.runtime.executor import Outcome, execute
from overture.serde import JSON
from overture.testing import FakeClock

KEY = "default:run-1:fetch"
"""The idempotency key of ``context()``'s step."""


# --- a server that shows what it received ------------------------------------------------------


@dataclass
class Target:
    """A server on a loopback address and the requests it received."""

    url: str
    received: list[Request] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def target_app(received: list[Request]) -> Starlette:
    async def remember(request: Request) -> Request:
        await request.body()
        received.append(request)
        return request

    async def json(request: Request) -> Response:
        await remember(request)
        headers = {"X-Request-Id": "r-1", "Set-Cookie": "session=abc; Path=/", "X-Other": "x"}
        return JSONResponse({"hello": "world"}, headers=headers)

    async def text(request: Request) -> Response:
        await remember(request)
        return PlainTextResponse("plain words")

    async def headers(request: Request) -> Response:
        await remember(request)
        return JSONResponse(dict(request.headers))

    async def status(request: Request) -> Response:
        await remember(request)
        code = int(request.path_params["code"])
        extra = (
            {"Retry-After": request.query_params["retry_after"]}
            if "retry_after" in request.query_params
            else {}
        )
        return PlainTextResponse(f"status {code} for you", status_code=code, headers=extra)

    async def reflect(request: Request) -> Response:
        """A 401 whose page repeats every request header, as careless servers do."""
        await remember(request)
        return PlainTextResponse(repr(dict(request.headers)), status_code=401)

    async def redirect(request: Request) -> Response:
        await remember(request)
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def slow(request: Request) -> Response:
        await remember(request)
        await asyncio.sleep(2)
        return PlainTextResponse("late")

    async def big(request: Request) -> Response:
        await remember(request)
        return PlainTextResponse("x" * 5000)

    return Starlette(
        routes=[
            Route("/json", json),
            Route("/text", text),
            Route("/headers", headers, methods=["GET", "POST"]),
            Route("/status/{code}", status),
            Route("/reflect", reflect),
            Route("/redirect", redirect),
            Route("/slow", slow),
            Route("/big", big),
        ]
    )


def serve_target(host: str, **config: Any) -> Iterator[Target]:
    received: list[Request] = []
    with serving(target_app(received), host=host, **config) as url:
        yield Target(url, received)


@pytest.fixture
def target() -> Iterator[Target]:
    """The server on 127.0.0.1."""
    yield from serve_target("127.0.0.1")


@pytest.fixture
def target_v6() -> Iterator[Target]:
    """The server on ::1 (skipped where IPv6 loopback is missing)."""
    try:
        yield from serve_target("::1")
    except OSError as error:
        pytest.skip(f"no IPv6 loopback: {error}")


# --- calling the handler -----------------------------------------------------------------------


def context(attempt: int = 1) -> StepContext:
    return StepContext(
        run_id="run-1", step_id="fetch", attempt=attempt, workflow="w", clock=FakeClock()
    )


async def attempt(
    inputs: dict[str, JSON],
    settings: HttpSettings | None = None,
    *,
    ctx: StepContext | None = None,
    secrets: dict[str, str] | None = None,
    resolve: Resolver = resolve_host,
) -> Outcome:
    """One attempt of an ``http`` step, as a worker makes it."""
    handler = HttpHandler(settings, resolve=resolve)
    registry = HandlerRegistry()
    spec = registry.register("http", handler.http, input_schema=HTTP_INPUT)
    try:
        return await execute(spec, inputs, ctx or context(), secrets or {})
    finally:
        await handler.aclose()


async def failure(
    inputs: dict[str, JSON], settings: HttpSettings | None = None, **kw: Any
) -> ErrorInfo:
    outcome = await attempt(inputs, settings, **kw)
    assert outcome.error is not None, outcome.output
    return outcome.error


async def output(inputs: dict[str, JSON], settings: HttpSettings | None = None, **kw: Any) -> Any:
    outcome = await attempt(inputs, settings, **kw)
    assert outcome.error is None, outcome.error
    return outcome.output


LOOPBACK = HttpSettings(allow=("127.0.0.1",))


# --- outputs -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_json_response_is_parsed_and_only_harmless_headers_are_kept(target: Target) -> None:
    out = await output({"url": f"{target.url}/json"}, LOOPBACK)
    assert out == {
        "status": 200,
        "headers": {"content-type": "application/json", "x-request-id": "r-1"},
        "body": {"hello": "world"},
    }


@pytest.mark.asyncio
async def test_a_text_response_is_its_text(target: Target) -> None:
    out = await output({"url": f"{target.url}/text"}, LOOPBACK)
    assert (out["status"], out["body"]) == (200, "plain words")
    assert out["headers"]["content-type"].startswith("text/plain")


@pytest.mark.asyncio
async def test_method_query_and_json_body_are_sent(target: Target) -> None:
    inputs: dict[str, JSON] = {
        "url": f"{target.url}/headers",
        "method": "post",
        "query": {"q": "a b", "n": 2, "tags": ["x", "y"]},
        "json": {"topic": "durability"},
    }
    await output(inputs, LOOPBACK)
    (request,) = target.received
    assert request.method == "POST"
    assert request.url.query == "q=a+b&n=2&tags=x&tags=y"
    assert await request.json() == {"topic": "durability"}


@pytest.mark.asyncio
async def test_cookies_a_server_sets_are_not_sent_on_later_calls(target: Target) -> None:
    handler = HttpHandler(LOOPBACK)
    try:
        await handler.http(context(), url=f"{target.url}/json")  # sets session=abc
        second = await handler.http(context(), url=f"{target.url}/headers")
    finally:
        await handler.aclose()
    assert isinstance(second["body"], dict) and "cookie" not in second["body"]


@pytest.mark.asyncio
async def test_a_response_over_max_response_bytes_fails_the_step(target: Target) -> None:
    error = await failure({"url": f"{target.url}/big", "max_response_bytes": 1000}, LOOPBACK)
    assert (error.code, error.retryable) == ("response_too_large", False)


# --- idempotency keys --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_attempt_sends_the_steps_idempotency_key_in_both_headers(
    target: Target,
) -> None:
    for number in (1, 2, 3):
        await output({"url": f"{target.url}/headers"}, LOOPBACK, ctx=context(number))
    sent = [(r.headers["idempotency-key"], r.headers["x-idempotency-key"]) for r in target.received]
    assert sent == [(KEY, KEY)] * 3


@pytest.mark.asyncio
async def test_a_key_the_step_sets_itself_is_sent_in_both_headers(target: Target) -> None:
    await output({"url": f"{target.url}/headers", "headers": {"idempotency-key": "mine"}}, LOOPBACK)
    (request,) = target.received
    assert request.headers.getlist("idempotency-key") == ["mine"]
    assert request.headers["x-idempotency-key"] == "mine"


# --- how calls end -----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "header", "delay"),
    [(503, "7", 7.0), (429, "0", 0.0), (500, None, None), (408, None, None), (503, "86400", 300.0)],
)
async def test_busy_and_failing_servers_are_retried_after_their_retry_after(
    target: Target, status: int, header: str | None, delay: float | None
) -> None:
    query = f"?retry_after={header}" if header is not None else ""
    error = await failure({"url": f"{target.url}/status/{status}{query}"}, LOOPBACK)
    assert (error.code, error.retryable, error.retry_after) == (f"http_{status}", True, delay)
    assert error.details == {"status": status}
    assert f"answered {status}" in error.message and f"status {status} for you" in error.message


@pytest.mark.asyncio
async def test_retry_after_as_an_http_date_counts_from_the_steps_clock(target: Target) -> None:
    ctx = context()
    when = format_datetime(ctx.clock.now() + timedelta(seconds=120), usegmt=True)
    error = await failure(
        {"url": f"{target.url}/status/429", "query": {"retry_after": when}}, LOOPBACK, ctx=ctx
    )
    assert (error.code, error.retry_after) == ("http_429", 120.0)


def test_retry_after_values_that_cannot_be_read_are_ignored() -> None:
    now = FakeClock().now()
    assert retry_after("soon", now) is None
    assert retry_after("", now) is None
    assert retry_after("-5", now) is None
    assert retry_after("Mon, 01 Jan 2001 00:00:00 GMT", now) == 0.0  # in the past: at once


@pytest.mark.asyncio
async def test_a_404_fails_at_once_with_the_status(target: Target) -> None:
    error = await failure({"url": f"{target.url}/status/404?secret=x"}, LOOPBACK)
    assert (error.code, error.retryable, error.details) == ("http_404", False, {"status": 404})
    assert (
        error.message == f"GET {target.url}/status/404 answered 404 Not Found: status 404 for you"
    )


@pytest.mark.asyncio
async def test_a_timeout_is_retryable(target: Target) -> None:
    error = await failure({"url": f"{target.url}/slow", "timeout": 0.2}, LOOPBACK)
    assert (error.code, error.retryable) == ("http_timeout", True)


@pytest.mark.asyncio
async def test_a_refused_connection_is_retryable(target: Target) -> None:
    with serving(target_app([])) as gone:
        pass  # the port is free again: nothing listens there now
    error = await failure({"url": f"{gone}/json"}, LOOPBACK)
    assert (error.code, error.retryable) == ("http_network_error", True)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("inputs", "code"),
    [
        ({}, "bad_input"),
        ({"url": "http://a.example", "call": "/x"}, "bad_input"),
        ({"url": "http://a.example", "json": {}, "body": "x"}, "bad_input"),
        ({"url": "ftp://a.example/file"}, "bad_url"),
        ({"url": "http://a.example", "verb": "GET"}, "bad_input"),
        ({"url": "http://a.example", "timeout": 0}, "bad_input"),
    ],
)
async def test_inputs_that_make_no_request_fail_at_once(inputs: dict[str, JSON], code: str) -> None:
    error = await failure(inputs)
    assert (error.code, error.retryable) == (code, False)


# --- redirects ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_redirects_are_not_followed_by_default(target: Target) -> None:
    error = await failure({"url": f"{target.url}/redirect?to=/json"}, LOOPBACK)
    assert (error.code, error.retryable) == ("http_302", False)
    assert error.details == {"status": 302, "location": "/json"}
    assert [r.url.path for r in target.received] == ["/redirect"]


@pytest.mark.asyncio
async def test_redirects_are_followed_when_the_step_asks(target: Target) -> None:
    out = await output(
        {"url": f"{target.url}/redirect?to=/json", "follow_redirects": True}, LOOPBACK
    )
    assert out["body"] == {"hello": "world"}
    assert [r.url.path for r in target.received] == ["/redirect", "/json"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "elsewhere", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:{port}/json"]
)
async def test_every_redirect_hop_passes_the_guard(target: Target, elsewhere: str) -> None:
    to = elsewhere.format(port=target.port)
    inputs: dict[str, JSON] = {
        "url": f"{target.url}/redirect",
        "query": {"to": to},
        "follow_redirects": True,
    }
    error = await failure(inputs, LOOPBACK)
    assert error.code == "ssrf_blocked"
    assert error.details["address"] == ip_address(to.split("/")[2].split(":")[0]).compressed


@pytest.mark.asyncio
async def test_a_redirect_to_another_origin_does_not_get_the_steps_headers(target: Target) -> None:
    # localhost:PORT is the same server, but another origin than 127.0.0.1:PORT.
    to = f"http://localhost:{target.port}/headers"
    inputs: dict[str, JSON] = {
        "url": f"{target.url}/redirect",
        "query": {"to": to},
        "follow_redirects": True,
        "headers": {"Authorization": "Bearer t0ken", "X-Api-Key": "k3y"},
    }
    out = await output(inputs, HttpSettings(allow=("127.0.0.1", "localhost")))
    received = out["body"]
    assert "authorization" not in received and "x-api-key" not in received
    assert received["idempotency-key"] == KEY
    assert target.received[0].headers["x-api-key"] == "k3y"  # the first hop had them


# --- call and the base URL ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_call_goes_to_the_base_url_whose_host_needs_no_allowing(target: Target) -> None:
    out = await output({"call": "/json"}, HttpSettings(base_url=target.url + "/"))
    assert out["body"] == {"hello": "world"}


@pytest.mark.asyncio
async def test_call_without_a_base_url_fails_at_once_naming_the_setting() -> None:
    error = await failure({"call": "/functions/v1/agent-proxy/snapshot"})
    assert (error.code, error.retryable) == ("no_base_url", False)
    assert "OVERTURE_HTTP_BASE_URL" in error.message


def test_settings_from_the_environment() -> None:
    settings = HttpSettings.from_env(
        {
            "OVERTURE_HTTP_BASE_URL": "http://127.0.0.1:8765/",
            "OVERTURE_HTTP_ALLOW": " 10.0.0.0/8, Agents.Internal. ,",
        }
    )
    assert settings.base_url == "http://127.0.0.1:8765"
    assert settings.allow == ("10.0.0.0/8", "agents.internal")
    assert HttpSettings.from_env({}) == HttpSettings()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"allow": ("http://x.example",)}, "host names or CIDRs"),
        ({"allow": ("x.example:80",)}, "host names or CIDRs"),
        ({"base_url": "x.example"}, "OVERTURE_HTTP_BASE_URL"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_settings_are_refused_naming_what_is_wrong(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        HttpSettings(**fields)


# --- the SSRF guard ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.9.9.9", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1",
        "169.254.169.254", "0.0.0.0", "224.0.0.1", "255.255.255.255", "240.0.0.1",
        "::1", "::", "fe80::1", "fc00::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "2002:7f00:1::1",
    ],
)  # fmt: skip
def test_addresses_that_are_not_public(address: str) -> None:
    assert not is_public(ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses(address: str) -> None:
    assert is_public(ip_address(address))


BLOCKED = [
    ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
    ("[::1]", "::1", "::1"),
    ("10.0.0.1", "10.0.0.1", "10.0.0.0/8"),
    ("169.254.169.254", "169.254.169.254", "169.254.169.254"),
    ("localhost", "127.0.0.1", "localhost"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("host", "address", "allow"), BLOCKED)
async def test_a_private_address_is_refused_without_an_allow_list(
    target: Target, host: str, address: str, allow: str
) -> None:
    error = await failure({"url": f"http://{host}:{target.port}/json"})
    assert (error.code, error.retryable) == ("ssrf_blocked", False)
    assert error.details == {"host": host.strip("[]"), "address": address}
    assert repr(host.strip("[]")) in error.message and address in error.message
    assert target.received == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("host", "allow"),
    [("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "127.0.0.0/8"), ("localhost", "localhost")],
)
async def test_an_allow_listed_loopback_host_or_network_is_reached(
    target: Target, host: str, allow: str
) -> None:
    out = await output({"url": f"http://{host}:{target.port}/json"}, HttpSettings(allow=(allow,)))
    assert out["body"] == {"hello": "world"}


@pytest.mark.asyncio
async def test_an_allow_listed_ipv6_loopback_is_reached(target_v6: Target) -> None:
    out = await output({"url": f"{target_v6.url}/json"}, HttpSettings(allow=("::1",)))
    assert out["body"] == {"hello": "world"}


@pytest.mark.parametrize(
    ("host", "address", "allow"),
    [
        ("10.0.0.1", "10.0.0.1", "10.0.0.0/8"),
        ("169.254.169.254", "169.254.169.254", "169.254.169.254"),
        ("metadata.internal", "169.254.169.254", "metadata.internal"),
        ("x.test", "::ffff:10.1.2.3", "10.0.0.0/8"),
        ("agents.test", "8.8.8.8", ""),
    ],
)
def test_the_allow_list_lets_through_what_it_names(host: str, address: str, allow: str) -> None:
    # Decided without connecting: a test must not call a real metadata service or private
    # network (from a cloud machine, something would answer).
    policy = AddressPolicy.of(HttpSettings(allow=(allow,)).allow, None)
    assert policy.permits(host, ip_address(address))
    assert is_public(ip_address(address)) or not AddressPolicy.of((), None).permits(
        host, ip_address(address)
    )


class ScriptedDns:
    """A resolver that answers from a script, one answer per lookup, and counts lookups."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = [[ip_address(a) for a in answer] for answer in answers]
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


@pytest.mark.asyncio
async def test_the_connection_goes_to_the_checked_address_without_a_second_lookup(
    target: Target,
) -> None:
    # A rebinding DNS: the first answer passes the guard, any later one would not (and nothing
    # listens on 127.0.0.2). A second lookup, ours or the system's (which does not know
    # rebind.test at all), makes this fail.
    dns = ScriptedDns(["127.0.0.1"], ["127.0.0.2"])
    out = await output({"url": f"http://rebind.test:{target.port}/headers"}, LOOPBACK, resolve=dns)
    assert dns.lookups == ["rebind.test"]
    assert out["body"]["host"] == f"rebind.test:{target.port}"


@pytest.mark.asyncio
async def test_of_several_addresses_only_the_allowed_ones_are_used(target: Target) -> None:
    dns = ScriptedDns(["10.0.0.1", "169.254.169.254", "127.0.0.1"])
    out = await output({"url": f"http://mixed.test:{target.port}/json"}, LOOPBACK, resolve=dns)
    assert out["status"] == 200


@pytest.mark.asyncio
async def test_a_name_with_only_refused_addresses_is_blocked_naming_the_first(
    target: Target,
) -> None:
    dns = ScriptedDns(["10.0.0.1", "127.0.0.2"])
    error = await failure({"url": f"http://rebind.test:{target.port}/json"}, LOOPBACK, resolve=dns)
    assert error.code == "ssrf_blocked"
    assert error.details == {"host": "rebind.test", "address": "10.0.0.1"}


@pytest.mark.asyncio
async def test_a_name_that_does_not_resolve_is_a_retryable_network_error() -> None:
    async def no_such_host(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    error = await failure({"url": "http://nowhere.test/"}, resolve=no_such_host)
    assert (error.code, error.retryable) == ("http_network_error", True)
    assert "cannot resolve 'nowhere.test'" in error.message


# --- TLS to a pinned address -------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for pinned.test, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=pinned.test",
         "-addext", "subjectAltName=DNS:pinned.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_target(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    yield from serve_target("127.0.0.1", ssl_certfile=str(cert), ssl_keyfile=str(key))


@pytest.mark.asyncio
async def test_tls_to_a_pinned_address_checks_the_certificate_for_the_host_name(
    tls_target: Target,
) -> None:
    dns = ScriptedDns(["127.0.0.1"])
    settings = HttpSettings(allow=("127.0.0.1",))
    good = await output(
        {"url": f"https://pinned.test:{tls_target.port}/json"}, settings, resolve=dns
    )
    assert good["body"] == {"hello": "world"}

    wrong = await failure(
        {"url": f"https://other.test:{tls_target.port}/json"}, settings, resolve=dns
    )
    assert wrong.code == "http_network_error"
    assert "CERTIFICATE_VERIFY_FAILED" in wrong.message


# --- secrets -----------------------------------------------------------------------------------

SECRET = "s3cr3t-t0ken-value"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    ["/reflect", "/status/503", "/slow"],
)
async def test_header_values_never_reach_an_error_even_before_redaction(
    target: Target, path: str
) -> None:
    handler = HttpHandler(LOOPBACK)
    try:
        with pytest.raises(StepError) as raised:
            await handler.http(
                context(),
                url=f"{target.url}{path}?token={SECRET}",
                headers={"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET},
                timeout=0.5,
            )
    finally:
        await handler.aclose()
    assert target.received[0].headers["x-api-key"] == SECRET  # it was sent
    error = raised.value
    assert SECRET not in error.message and SECRET not in repr(error.details)


@pytest.mark.asyncio
async def test_a_header_h11_refuses_is_not_quoted_in_the_error(target: Target) -> None:
    error = await failure(
        {"url": f"{target.url}/json", "headers": {"X-Api-Key": f"{SECRET}\nInjected: yes"}},
        LOOPBACK,
    )
    assert (error.code, error.retryable) == ("bad_request", False)
    assert SECRET not in error.message


@pytest.mark.asyncio
async def test_a_sealed_secret_in_a_header_is_sent_and_never_recorded(target: Target) -> None:
    sealed: dict[str, JSON] = {"$concat": ["Bearer ", {"$secret": "TOKEN"}]}
    inputs: dict[str, JSON] = {"url": f"{target.url}/reflect", "headers": {"Authorization": sealed}}
    error = await failure(inputs, LOOPBACK, secrets={"TOKEN": SECRET})
    assert target.received[0].headers["authorization"] == f"Bearer {SECRET}"
    assert error.code == "http_401"
    assert SECRET not in error.message and "***" in error.message


# --- the connection pool -----------------------------------------------------------------------


def test_one_registry_serves_two_event_loops(target: Target) -> None:
    registry = builtin_registry(LOOPBACK)
    spec = registry.get("http")

    async def fetch() -> Outcome:
        return await execute(spec, {"url": f"{target.url}/json"}, context(), {})

    with warnings.catch_warnings():
        # The first loop's pooled connection cannot be closed from the second loop; it is
        # dropped, and the socket warns when collected. That is the cost of not failing.
        warnings.simplefilter("ignore", ResourceWarning)
        first = asyncio.run(fetch())

        async def fetch_and_close() -> Outcome:
            try:
                return await fetch()
            finally:
                await registry.aclose()

        second = asyncio.run(fetch_and_close())
        gc.collect()
    assert first.error is None and second.error is None

"""The ``http`` handler against real servers on loopback addresses: outputs, idempotency keys,
how a call ends (status, ``ok: false``, Retry-After), ``call`` and the base URL, its settings,
and secrets in headers and URLs.

Redirects, ``auth``, the SSRF guard and the limits (size, codings, timeout) have their own files
(test_http_redirects.py, test_http_auth.py, test_http_ssrf.py, test_http_limits.py). Attempts go through ``runtime.executor.execute`` (input
schema, error classification and redaction, as a worker runs them) unless a test must see exactly
what the handler raised.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from tests.support.http_target import (
    KEY,
    LOOPBACK,
    Target,
    context,
    failure,
    output,
    serve_target,
    target_app,
)

from overture.core.model import Workflow
from overture.demo.server import serving
from overture.errors import StepError
from overture.handlers.builtin import builtin_registry
from overture.handlers.http import HttpHandler, HttpSettings, retry_after
from overture.runtime.executor import Outcome, execute
from overture.runtime.local import LocalRunner
from overture.serde import JSON
from overture.testing import FakeClock


@pytest.fixture
def target() -> Iterator[Target]:
    """The server on 127.0.0.1."""
    yield from serve_target("127.0.0.1")


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
async def test_the_handler_names_itself_and_a_step_may_say_otherwise(target: Target) -> None:
    ours = await output({"url": f"{target.url}/headers"}, LOOPBACK)
    theirs = await output(
        {"url": f"{target.url}/headers", "headers": {"user-agent": "mine/1"}}, LOOPBACK
    )
    assert ours["body"]["user-agent"].startswith("overture/")
    assert ours["body"]["accept-encoding"] == "identity"
    assert target.received[1].headers.getlist("user-agent") == ["mine/1"]
    assert theirs["body"]["user-agent"] == "mine/1"


@pytest.mark.asyncio
async def test_cookies_a_server_sets_are_not_sent_on_later_calls(target: Target) -> None:
    handler = HttpHandler(LOOPBACK)
    try:
        await handler.http(context(), url=f"{target.url}/json")  # sets session=abc
        second = await handler.http(context(), url=f"{target.url}/headers")
    finally:
        await handler.aclose()
    assert isinstance(second["body"], dict) and "cookie" not in second["body"]


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


@pytest.mark.asyncio
async def test_a_retried_step_sends_the_same_key_on_every_attempt(target: Target) -> None:
    # Through the engine: two 503s, each retried, then a 200.
    workflow = Workflow.model_validate(
        {
            "name": "wf",
            "steps": [
                {
                    "id": "charge",
                    "uses": "http",
                    "retry": {"max_attempts": 3},
                    "with": {"method": "POST", "url": f"{target.url}/flaky?fail=2", "json": {}},
                }
            ],
        }
    )
    clock = FakeClock()
    async with builtin_registry(LOOPBACK) as registry:
        runner = LocalRunner(registry, clock=clock, sleep=clock.sleep, tenant="acme")
        result = await runner.run(workflow)
    assert result.status == "succeeded", result.state
    key = f"acme:{result.state.run_id}:charge"
    sent = [(r.headers["idempotency-key"], r.headers["x-idempotency-key"]) for r in target.received]
    assert sent == [(key, key)] * 3


# --- how calls end -----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "header", "delay"),
    [
        (503, "7", 7.0),
        (429, "0", 0.0),
        (425, "3", 3.0),
        (500, None, None),
        (408, None, None),
        (502, None, None),
        (503, "86400", 300.0),
    ],
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
    assert retry_after("\u0663", now) is None  # ARABIC-INDIC DIGIT THREE: no ASCII digit
    assert retry_after("\uff15", now) is None  # FULLWIDTH DIGIT FIVE


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
async def test_other_4xx_fail_at_once_with_the_status(target: Target, status: int) -> None:
    error = await failure({"url": f"{target.url}/status/{status}?retry_after=5"}, LOOPBACK)
    assert (error.code, error.retryable, error.retry_after) == (f"http_{status}", False, None)
    assert error.details == {"status": status}


@pytest.mark.asyncio
async def test_a_failures_message_names_the_url_without_its_query(target: Target) -> None:
    error = await failure({"url": f"{target.url}/status/404?secret=x"}, LOOPBACK)
    assert (
        error.message == f"GET {target.url}/status/404 answered 404 Not Found: status 404 for you"
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"ok": False, "error": "learner not found"}, ": learner not found"),
        ({"ok": False, "error": {"code": "E1", "message": "quota used up"}}, ": quota used up"),
        ({"ok": False, "message": "try another day"}, ": try another day"),
        ({"ok": False}, ""),
    ],
)
async def test_a_2xx_saying_ok_false_fails_the_step(
    target: Target, answer: dict[str, JSON], said: str
) -> None:
    error = await failure(
        {"url": f"{target.url}/agent", "method": "POST", "json": answer}, LOOPBACK
    )
    assert (error.code, error.retryable, error.details) == ("agent_not_ok", False, {"status": 200})
    assert error.message == f"POST {target.url}/agent answered 200 with ok: false{said}"


@pytest.mark.asyncio
async def test_ok_false_is_retried_when_the_body_says_retryable(target: Target) -> None:
    answer: dict[str, JSON] = {"ok": False, "error": "warming up", "retryable": True}
    inputs: dict[str, JSON] = {"url": f"{target.url}/agent?retry_after=4", "method": "POST"}
    error = await failure({**inputs, "json": answer}, LOOPBACK)
    assert (error.code, error.retryable, error.retry_after) == ("agent_not_ok", True, 4.0)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "answer",
    [{"ok": True, "plan": []}, {"ok": "false"}, {"ok": None}, [{"ok": False}], {"result": 1}],
)
async def test_only_a_json_object_with_ok_false_is_a_failure(target: Target, answer: JSON) -> None:
    out = await output({"url": f"{target.url}/agent", "method": "POST", "json": answer}, LOOPBACK)
    assert out["body"] == answer


@pytest.mark.asyncio
async def test_a_timeout_is_retryable(target: Target) -> None:
    error = await failure({"url": f"{target.url}/slow", "timeout": 0.2}, LOOPBACK)
    assert (error.code, error.retryable) == ("http_timeout", True)


@pytest.mark.asyncio
async def test_a_refused_connection_is_retryable() -> None:
    with serving(target_app(Target(""))) as gone:
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
        ({"url": "http://0177.0.0.1/"}, "bad_url"),
        ({"url": "http://a.example", "verb": "GET"}, "bad_input"),
        ({"url": "http://a.example", "timeout": 0}, "bad_input"),
        ({"url": "http://a.example", "max_redirects": 0}, "bad_input"),
        ({"url": "http://a.example", "max_response_bytes": 0}, "bad_input"),
    ],
)
async def test_inputs_that_make_no_request_fail_at_once(inputs: dict[str, JSON], code: str) -> None:
    error = await failure(inputs)
    assert (error.code, error.retryable) == (code, False)


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


def test_settings_are_normalised() -> None:
    settings = HttpSettings(
        base_url="http://127.0.0.1:8765/", allow=(" 10.0.0.0/8", " Agents.Internal. ", " ")
    )
    assert settings.base_url == "http://127.0.0.1:8765"
    assert settings.allow == ("10.0.0.0/8", "agents.internal")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"allow": ("http://x.example",)}, "OVERTURE_HTTP_ALLOWED_NETWORKS entries are host"),
        ({"allow": ("x.example:80",)}, "host names or CIDRs"),
        ({"base_url": "x.example"}, "OVERTURE_HTTP_BASE_URL"),
        ({"base_url": "https://u:pw@x.example"}, "may not carry credentials"),
        ({"timeout": 0}, "timeout"),
        ({"max_response_bytes": 0}, "max_response_bytes"),
    ],
)
def test_bad_settings_are_refused_naming_what_is_wrong(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        HttpSettings(**fields)


# --- secrets -----------------------------------------------------------------------------------

SECRET = "s3cr3t-t0ken-value"


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/reflect", "/status/503", "/slow"])
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
@pytest.mark.parametrize("userinfo", [f"u:{SECRET}@", f"{SECRET}@", "u:@"])
async def test_credentials_in_the_url_are_refused_pointing_to_auth(
    target: Target, userinfo: str
) -> None:
    url = target.url.replace("://", f"://{userinfo}") + "/json"
    error = await failure({"url": url}, LOOPBACK)
    assert (error.code, error.retryable) == ("bad_url", False)
    assert "`auth:`" in error.message and SECRET not in error.message
    assert target.received == []  # nothing was sent without them


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


@pytest.mark.asyncio
async def test_a_secret_the_server_echoes_is_masked_in_the_output(target: Target) -> None:
    inputs: dict[str, JSON] = {
        "url": f"{target.url}/headers",
        "headers": {"X-Api-Key": {"$secret": "KEY"}},
    }
    out = await output(inputs, LOOPBACK, secrets={"KEY": SECRET})
    assert target.received[0].headers["x-api-key"] == SECRET
    assert out["body"]["x-api-key"] == "***"


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

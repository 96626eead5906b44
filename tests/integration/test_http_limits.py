"""The ``http`` handler's limits against real servers on 127.0.0.1: the response size cap (as
the body arrives, and decoded, so a compressed bomb cannot inflate past it), the content codings
it reads and those it refuses, the ceiling the setting puts on a step's cap, and ``timeout`` as a
bound on the whole call."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from tests.support.http_target import (
    LOOPBACK,
    WORDS,
    Target,
    context,
    failure,
    gzip_bomb,
    output,
    serve_target,
)

from overture.handlers.loading import process_handlers
from overture.runtime.executor import execute
from overture.serde import JSON
from overture.settings import Settings

pytestmark = pytest.mark.asyncio
MIB = 1 << 20


@pytest.fixture
def target() -> Iterator[Target]:
    """The server on 127.0.0.1."""
    yield from serve_target("127.0.0.1")


# --- the response size cap ---------------------------------------------------------------------


async def test_a_response_declared_over_max_response_bytes_fails_the_step(target: Target) -> None:
    error = await failure({"url": f"{target.url}/big", "max_response_bytes": 1000}, LOOPBACK)
    assert (error.code, error.retryable) == ("response_too_large", False)
    assert "larger than 1000 bytes" in error.message and "max_response_bytes" in error.message


async def test_a_head_request_is_not_judged_by_the_size_it_announces(target: Target) -> None:
    out = await output(
        {"url": f"{target.url}/big", "method": "HEAD", "max_response_bytes": 1000}, LOOPBACK
    )
    assert (out["status"], out["body"]) == (200, "")


async def test_a_streamed_response_is_read_only_up_to_the_cap(target: Target) -> None:
    # 256 MiB, chunked, no Content-Length: the handler must stop reading, not buffer it all.
    size = 256 * MIB
    inputs: dict[str, JSON] = {"url": f"{target.url}/stream?size={size}"}
    error = await failure({**inputs, "max_response_bytes": 100_000}, LOOPBACK)
    assert (error.code, error.retryable) == ("response_too_large", False)
    await _until(lambda: bool(target.streamed))
    assert target.streamed != [-1]  # the server never got to send all of it

    small = await output({"url": f"{target.url}/stream?size=65536"}, LOOPBACK)
    assert len(small["body"]) == 65536  # at most the cap is fine


async def test_a_gzip_bomb_fails_the_step_without_inflating_past_the_cap(target: Target) -> None:
    # 64 MiB of zeros in about 64 KiB of gzip, sent although the handler asked for identity:
    # the wire bytes are under the 1 MiB cap, the decoded ones far over it.
    size = 64 * MIB
    assert len(gzip_bomb(size)) < MIB  # made before measuring
    tracemalloc.start()
    try:
        error = await failure(
            {"url": f"{target.url}/bomb?size={size}", "max_response_bytes": MIB}, LOOPBACK
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (error.code, error.retryable) == ("response_too_large", False)
    # The cap and a few copies of it, the server in its thread, the client: nowhere near 64 MiB.
    assert peak < 8 * MIB, f"{peak / MIB:.1f} MiB"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
async def test_a_gzip_or_deflate_body_is_decoded(target: Target, coding: str) -> None:
    out = await output({"url": f"{target.url}/compressed?coding={coding}"}, LOOPBACK)
    assert out["body"] == WORDS.decode()


async def test_the_cap_counts_the_decoded_body(target: Target) -> None:
    inputs: dict[str, JSON] = {"url": f"{target.url}/compressed?coding=gzip"}
    error = await failure({**inputs, "max_response_bytes": len(WORDS) - 1}, LOOPBACK)
    assert error.code == "response_too_large"
    out = await output({**inputs, "max_response_bytes": len(WORDS)}, LOOPBACK)
    assert out["body"] == WORDS.decode()


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, gzip", "rot13"])
async def test_a_body_in_another_coding_is_refused(target: Target, coding: str) -> None:
    error = await failure({"url": f"{target.url}/compressed?coding={coding}"}, LOOPBACK)
    assert (error.code, error.retryable) == ("unsupported_encoding", False)
    assert repr(coding) in error.message and error.details == {"status": 200}


async def test_a_failure_status_in_another_coding_fails_as_its_status(target: Target) -> None:
    error = await failure({"url": f"{target.url}/compressed?coding=br&status=503"}, LOOPBACK)
    assert (error.code, error.retryable) == ("http_503", True)
    assert error.message.endswith("answered 503 Service Unavailable")  # no garbled excerpt


# --- the setting is a ceiling ------------------------------------------------------------------


async def test_the_setting_caps_steps_that_set_no_cap_and_bounds_those_that_do(
    target: Target,
) -> None:
    settings = Settings(http_allowed_networks=("127.0.0.1",), http_max_response_bytes=1000)
    handlers = process_handlers(settings)
    try:
        spec = handlers.registry.get("http")

        async def big(**inputs: JSON) -> Any:
            return await execute(spec, {"url": f"{target.url}/big", **inputs}, context(), {})

        unset = await big()
        over = await big(max_response_bytes=10_000)
        under = await big(max_response_bytes=500)
        small = await execute(spec, {"url": f"{target.url}/text"}, context(), {})
    finally:
        await handlers.aclose()
    assert unset.error is not None and unset.error.code == "response_too_large"
    assert under.error is not None and "larger than 500 bytes" in under.error.message
    assert over.error is not None and not over.error.retryable
    assert over.error.code == "bad_input"
    assert "OVERTURE_HTTP_MAX_RESPONSE_BYTES) = 1000" in over.error.message
    assert len(target.received) == 3  # the step over the ceiling sent nothing
    assert small.error is None


# --- timeout bounds the whole call -------------------------------------------------------------


@pytest.mark.parametrize("via_redirect", [False, True])
async def test_a_server_that_trickles_its_body_times_out(
    target: Target, via_redirect: bool
) -> None:
    # A byte every 0.1 s for 6 s: no single read waits near the 1 s timeout, the call does.
    path = "/trickle?count=60&every=0.1"
    url = f"{target.url}/redirect?to={quote(path)}" if via_redirect else f"{target.url}{path}"
    inputs: dict[str, JSON] = {"url": url, "timeout": 1, "follow_redirects": True}
    error = await failure(inputs, LOOPBACK)
    assert (error.code, error.retryable) == ("http_timeout", True)
    assert "no complete response within 1s" in error.message


async def test_a_call_within_its_timeout_succeeds(target: Target) -> None:
    out = await output({"url": f"{target.url}/trickle?count=3&every=0.01", "timeout": 5}, LOOPBACK)
    assert out["body"] == "..."


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server did not finish its response")

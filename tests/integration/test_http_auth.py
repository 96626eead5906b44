"""``auth`` on a real server: a bearer token and a service JWT from sealed secrets are sent as
``Authorization: Bearer ...``, and neither they nor the signing key reach an output, an error, an
event or a log line, even when the server echoes them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.http_target import (
    LOOPBACK,
    Target,
    context,
    failure,
    output,
    serve_target,
)

from overture import serde
from overture.core import events as ev
from overture.core.model import Workflow
from overture.handlers.builtin import builtin_registry
from overture.handlers.http import HttpSettings
from overture.runtime.local import LocalRunner
from overture.serde import JSON
from overture.testing import FakeClock

pytestmark = pytest.mark.asyncio

TOKEN = "agent-t0ken-4f9c2b"
SIGNING_KEY = "super-secret-jwt-signing-key-0123456789"
SECRETS = {"TOKEN": TOKEN, "SERVICE_JWT_SECRET": SIGNING_KEY}
JWT: dict[str, JSON] = {
    "secret": {"$secret": "SERVICE_JWT_SECRET"},  # how `${secrets.SERVICE_JWT_SECRET}` arrives
    "claims": {"sub": "overture", "iss": "wisely-orchestrator", "role": "service_role"},
    "ttl": 300,
    "algorithm": "HS256",
}


@pytest.fixture
def target() -> Iterator[Target]:
    """The server on 127.0.0.1."""
    yield from serve_target("127.0.0.1")


def verified_claims(authorization: str, key: str) -> dict[str, Any]:
    """The claims of an HS256 ``Bearer`` JWT, after checking its signature as a server would."""
    scheme, token = authorization.split(" ")
    header, claims, signature = token.split(".")
    expected = hmac.new(key.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    assert scheme == "Bearer"
    assert base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)) == expected
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    return data


async def test_a_bearer_token_from_a_secret_is_sent_and_masked_in_the_output(
    target: Target,
) -> None:
    inputs: dict[str, JSON] = {
        "url": f"{target.url}/headers",
        "auth": {"bearer": {"$secret": "TOKEN"}},
    }
    out = await output(inputs, LOOPBACK, secrets=SECRETS)
    assert target.received[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert out["body"]["authorization"] == "Bearer ***"
    assert TOKEN not in serde.dumps_text(out)


async def test_a_service_jwt_is_signed_with_the_secret_and_expires(target: Target) -> None:
    ctx = context(secrets=SECRETS)
    out = await output(
        {"url": f"{target.url}/headers", "auth": {"jwt": JWT}}, LOOPBACK, ctx=ctx, secrets=SECRETS
    )
    sent = target.received[0].headers["authorization"]
    issued = int(ctx.clock.now().timestamp())
    assert verified_claims(sent, SIGNING_KEY) == {
        "sub": "overture",
        "iss": "wisely-orchestrator",
        "role": "service_role",
        "iat": issued,
        "exp": issued + 300,
    }
    echoed = serde.dumps_text(out)
    assert sent.removeprefix("Bearer ") not in echoed and SIGNING_KEY not in echoed
    assert out["body"]["authorization"] == "Bearer ***"


async def test_neither_jwt_nor_key_reach_an_error_or_a_log_line(target: Target) -> None:
    ctx = context(secrets=SECRETS)
    # /reflect answers 401 with every request header in its page, Authorization first: the
    # JWT straddles the end of the excerpt the message keeps, so it must be masked before the
    # message is cut, or its first part would show.
    url = f"{target.url}/reflect?first=authorization"
    error = await failure({"url": url, "auth": {"jwt": JWT}}, LOOPBACK, ctx=ctx, secrets=SECRETS)
    jwt = target.received[0].headers["authorization"].removeprefix("Bearer ")
    assert len(jwt) > 200 and error.code == "http_401"
    assert "401 Unauthorized: {'authorization': 'Bearer ***', 'host': " in error.message
    recorded = serde.dumps_text([error.message, error.details, [line.message for line in ctx.logs]])
    assert jwt[:20] not in recorded and SIGNING_KEY not in recorded


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"bearer": "x", "jwt": {"secret": "k"}},
        {"basic": "x"},
        {"jwt": {"secret": {"$secret": "SERVICE_JWT_SECRET"}, "algorithm": "none"}},
        {"jwt": {"secret": {"$secret": "SERVICE_JWT_SECRET"}, "algorithm": "RS256"}},
        {"jwt": {"secret": {"$secret": "SERVICE_JWT_SECRET"}, "ttl": 0}},
        {"jwt": {"secret": {"$secret": "SERVICE_JWT_SECRET"}, "claims": {"exp": 1}}},
        {"jwt": {"claims": {"sub": "x"}}},
    ],
)
async def test_an_auth_that_cannot_be_used_fails_at_once(target: Target, auth: JSON) -> None:
    error = await failure({"url": f"{target.url}/headers", "auth": auth}, LOOPBACK, secrets=SECRETS)
    assert (error.code, error.retryable) == ("bad_input", False)
    assert SIGNING_KEY not in error.message
    assert target.received == []


async def test_auth_and_an_authorization_header_are_not_both_given(target: Target) -> None:
    inputs: dict[str, JSON] = {
        "url": f"{target.url}/headers",
        "auth": {"bearer": "x"},
        "headers": {"authorization": "Bearer y"},
    }
    error = await failure(inputs, LOOPBACK)
    assert (error.code, error.retryable) == ("bad_input", False)
    assert target.received == []


async def test_a_workflow_step_with_a_service_jwt_leaves_no_secret_behind(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    # The Wisely seed's shape, through the engine: a `call:` on the base URL, the signing key a
    # `${secrets.X}` reference sealed in the step's recorded input.
    workflow = Workflow.model_validate(
        {
            "name": "weekly_seed",
            "steps": [
                {
                    "id": "clo_begin_week",
                    "uses": "http",
                    "with": {
                        "method": "POST",
                        "call": "/headers",
                        "auth": {
                            "jwt": {
                                "secret": "${secrets.SERVICE_JWT_SECRET}",
                                "claims": {"sub": "overture", "role": "service_role"},
                                "ttl": 300,
                                "algorithm": "HS256",
                            }
                        },
                    },
                }
            ],
        }
    )
    clock = FakeClock()
    caplog.set_level(logging.DEBUG)
    async with builtin_registry(HttpSettings(base_url=target.url)) as registry:
        runner = LocalRunner(registry, clock=clock, sleep=clock.sleep, secrets=SECRETS)
        result = await runner.run(workflow)
    assert result.status == "succeeded", result.state
    jwt = target.received[0].headers["authorization"].removeprefix("Bearer ")
    assert verified_claims(f"Bearer {jwt}", SIGNING_KEY)["role"] == "service_role"
    history = serde.dumps_text([ev.to_data(e) for e in result.events])
    assert '{"$secret":"SERVICE_JWT_SECRET"}' in history  # the reference, not the value
    for leaked in (jwt, SIGNING_KEY):
        assert leaked not in history
        assert leaked not in caplog.text

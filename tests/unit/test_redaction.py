"""Secret values never leave a step's memory: not in its log lines, the process log, or errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from overture.errors import StepError
from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import StepContext
from overture.runtime.executor import execute
from overture.runtime.redaction import masker, redact, short_secrets

SECRET = "s3cr3t-token-value"


def context() -> StepContext:
    return StepContext(run_id="r", step_id="s", attempt=1, workflow="w", secrets={"TOKEN": SECRET})


def test_a_logged_secret_is_masked_in_the_attempt_log_and_the_process_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = context()
    with caplog.at_level(logging.INFO, logger="overture.step"):
        ctx.log(f"calling with {SECRET}", header=f"Bearer {SECRET}", nested={"k": [SECRET]})
    (line,) = ctx.logs
    assert line.message == "calling with ***"
    assert line.fields == {"header": "Bearer ***", "nested": {"k": ["***"]}}
    assert SECRET not in caplog.text
    assert all(SECRET not in str(getattr(r, "overture", "")) for r in caplog.records)


def test_a_secret_in_a_step_errors_message_and_details_is_masked() -> None:
    registry = HandlerRegistry()

    @registry.handler("leaky")
    async def leaky(ctx: StepContext, **inputs: Any) -> None:
        raise StepError(f"refused {SECRET}", code="nope", details={"sent": SECRET})

    outcome = asyncio.run(execute(registry.get("leaky"), {}, context(), {"TOKEN": SECRET}))
    assert outcome.error is not None
    assert outcome.error.message == "refused ***"
    assert outcome.error.details == {"sent": "***"}


# --- one mask, whatever order the secrets come in ----------------------------------------------

# The shorter secret first, as the environment may list them: masking in that order would leave
# "***efgh" of the longer one.
NESTED = {"B": "abcd", "A": "abcdefgh"}


def test_a_secret_inside_another_leaves_nothing_of_the_longer_in_a_stored_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = StepContext(run_id="r", step_id="s", attempt=1, workflow="w", secrets=NESTED)
    with caplog.at_level(logging.INFO, logger="overture.step"):
        ctx.log("sent abcdefgh and abcd", token="abcdefgh", nested={"abcdefgh": ["xabcdefghx"]})
    (line,) = ctx.logs
    assert line.message == "sent *** and ***"
    assert line.fields == {"token": "***", "nested": {"***": ["x***x"]}}
    assert "efgh" not in caplog.text


def test_a_secret_inside_another_leaves_nothing_of_the_longer_in_a_step_error() -> None:
    registry = HandlerRegistry()

    @registry.handler("leaky")
    async def leaky(ctx: StepContext, **inputs: Any) -> None:
        raise StepError("refused abcdefgh", code="nope", details={"sent": ["abcdefgh"]})

    @registry.handler("crashy")
    async def crashy(ctx: StepContext, **inputs: Any) -> None:
        raise ValueError("crashed holding abcdefgh")

    ctx = StepContext(run_id="r", step_id="s", attempt=1, workflow="w", secrets=NESTED)
    refused = asyncio.run(execute(registry.get("leaky"), {}, ctx, NESTED)).error
    crashed = asyncio.run(execute(registry.get("crashy"), {}, ctx, NESTED)).error
    assert refused is not None and crashed is not None
    assert (refused.message, refused.details) == ("refused ***", {"sent": ["***"]})
    assert crashed.message == "crashed holding ***"


@pytest.mark.parametrize(
    ("secrets", "text", "masked"),
    [
        (NESTED, "abcdefgh abcd", "*** ***"),
        ({"X": "abcd", "Y": "cdef"}, "abcdef!", "***!"),  # overlapping: none of either is left
        ({"X": "*", "Y": "tok*en"}, "a tok*en b*", "a *** b***"),  # the mask is not masked again
        ({"X": "a.b", "Y": ""}, "a.b axb", "*** axb"),  # values are text, not patterns
        ({}, "nothing to hide", "nothing to hide"),
    ],
)
def test_every_occurrence_of_every_secret_is_masked_once(
    secrets: dict[str, str], text: str, masked: str
) -> None:
    assert redact(text, secrets) == masked
    assert masker(secrets)(text) == masked


def test_the_mask_is_built_once_per_set_of_values() -> None:
    assert masker({"A": "abcd", "B": "efgh"}) is masker({"C": "efgh", "D": "abcd"})
    assert masker(NESTED) is not masker(NESTED, credentials=True)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("refused ovt_AbCd1234_Zz9-_Zz9-_", "refused ovt_AbCd1234_***"),
        ("key=Xovt_AbCd1234_Zz9-_Zz9-_", "key=Xovt_AbCd1234_***"),  # after a word character
        (
            "sent Authorization: Bearer eyJhbGciOi.payload.sig now",
            "sent Authorization: Bearer *** now",
        ),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ("{'authorization': 'Basic dXNlcjpwYXNz'}", "{'authorization': 'Basic ***'}"),
        ('{"Proxy-Authorization": "Digest abc"}', '{"Proxy-Authorization": "Digest ***"}'),
        ("Authorization=tok3n&x=1", "Authorization=***&x=1"),
        ("bearer abc, then more", "bearer ***, then more"),
        ("a basic example of authorization", "a basic example of authorization"),
    ],
)
def test_credentials_are_masked_when_asked(text: str, masked: str) -> None:
    assert masker({}, credentials=True)(text) == masked
    assert masker({})(text) == text


def test_short_secrets_are_named() -> None:
    assert short_secrets({"PIN": "123", "EMPTY": "", "TOKEN": "abcd", "A": "x"}) == ["A", "PIN"]

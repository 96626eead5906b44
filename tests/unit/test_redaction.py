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

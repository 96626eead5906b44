"""Run one attempt of a step: reveal secrets, call the handler, classify what happened.

Shared by every shell (the in-process runner now, the durable worker later) so that an attempt
means the same thing everywhere. Never raises for a handler's failure; cancellation
(``asyncio.CancelledError``, ``overture.errors.Cancelled``) passes through untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from overture import serde
from overture.core.events import ErrorInfo
from overture.core.templates import reveal
from overture.errors import Retry, SecretMissing, StepError
from overture.handlers.registry import HandlerSpec
from overture.runtime.context import StepContext
from overture.runtime.redaction import Masker, masker
from overture.serde import JSON


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """How an attempt ended: ``output`` when ``error`` is None."""

    output: JSON = None
    error: ErrorInfo | None = None


async def execute(
    spec: HandlerSpec,
    input: JSON,
    ctx: StepContext,
    secrets: Mapping[str, str],
    *,
    timeout: float | None = None,
) -> Outcome:
    """Call ``spec``'s handler with ``input`` (secrets sealed) and return how the attempt ended."""
    mask = masker(secrets)
    try:
        inputs = reveal(input, secrets)
    except SecretMissing as missing:
        return _failed(missing.code, str(missing), retryable=False)
    if not isinstance(inputs, dict):
        return _failed("bad_input", "step inputs must be a mapping", retryable=False)
    if errors := spec.input_errors(inputs):
        return _failed("bad_input", mask("; ".join(errors)), retryable=False)
    try:
        async with asyncio.timeout(timeout):
            result = await spec.fn(ctx, **inputs)
    except TimeoutError:
        return _failed("timeout", f"did not finish within {timeout:g}s", retryable=True)
    except StepError as error:
        delay = error.delay if isinstance(error, Retry) else None
        return Outcome(
            error=ErrorInfo(
                code=error.code,
                message=mask(error.message),
                retryable=error.retryable,
                retry_after=delay,
                details=_masked_details(error.details, mask),
            )
        )
    except Exception as error:  # user code: any failure is a retryable step failure
        return _failed(type(error).__name__, mask(str(error) or repr(error)))
    try:
        output: JSON = serde.loads(serde.dumps(result))
    except TypeError as error:
        return _failed("bad_output", f"handler returned data that is not JSON: {error}", False)
    if errors := spec.output_errors(output):
        return _failed("bad_output", mask("; ".join(errors)), retryable=False)
    return Outcome(output=output)


def _failed(code: str, message: str, retryable: bool = True) -> Outcome:
    return Outcome(error=ErrorInfo(code=code, message=message, retryable=retryable))


def _masked_details(details: dict[str, object], mask: Masker) -> dict[str, JSON]:
    """A step error's details as JSON, secret values masked (they go into events)."""
    masked = mask.json(details)
    return masked if isinstance(masked, dict) else {}

"""Handlers every worker has, for tests, demos and benchmarks: ``noop``, ``echo`` and ``fail``."""

from __future__ import annotations

from typing import Any

from overture.errors import StepError
from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import StepContext

FAIL_INPUT = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "code": {"type": "string"},
        "retryable": {"type": "boolean"},
    },
    "additionalProperties": False,
}


async def noop(ctx: StepContext, **inputs: Any) -> None:
    """Do nothing and succeed (output: null)."""


async def echo(ctx: StepContext, **inputs: Any) -> dict[str, Any]:
    """Succeed with the step's inputs as output."""
    return inputs


async def fail(
    ctx: StepContext,
    *,
    message: str = "failed on purpose",
    code: str = "failed",
    retryable: bool = False,
) -> None:
    """Fail with ``code`` and ``message``; ``retryable`` lets the retry policy try again."""
    raise StepError(message, code=code, retryable=retryable)


def basic_registry() -> HandlerRegistry:
    """A registry holding ``noop``, ``echo`` and ``fail``."""
    registry = HandlerRegistry()
    registry.register("noop", noop)
    registry.register("echo", echo)
    registry.register("fail", fail, input_schema=FAIL_INPUT)
    return registry

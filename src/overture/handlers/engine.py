"""The handlers of the engine's own steps: ``sleep``, ``wait`` and ``workflow``.

The engine does their waiting (see ``overture.core.builtin_steps``): a ``sleep`` job is queued
for the time it ends and a ``wait`` job for its deadline, so these handlers run once the time
has come and return at once. A ``workflow`` step never reaches a worker (the store starts the
child run); its handler is registered so that every process knows the name, and says so if it
is ever called.
"""

from __future__ import annotations

from typing import Any

from overture.core.builtin_steps import SLEEP, WAIT, WORKFLOW, timeout_outcome
from overture.errors import NonRetryable, StepError
from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import StepContext
from overture.serde import JSON

_DURATION = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}

SLEEP_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "seconds": {"type": "number", "minimum": 0},
        "duration": _DURATION,
        "until": {"type": "string"},
    },
    "additionalProperties": False,
}
WAIT_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "signal": {"type": "string", "minLength": 1, "maxLength": 200},
        "timeout": _DURATION,
        "on_timeout": {"enum": ["fail", "succeed"]},
        "default": {},
        "approval": {"type": "boolean"},
    },
    "additionalProperties": False,
}
WORKFLOW_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "workflow": {"type": "string", "minLength": 1},
        "version": {"type": "integer", "minimum": 1},
        "input": {"type": "object"},
        "wait": {"type": "boolean"},
    },
    "required": ["workflow"],
    "additionalProperties": False,
}


async def sleep(ctx: StepContext, **inputs: JSON) -> dict[str, JSON]:
    """End a sleep: its job was queued for the moment the sleep ends."""
    return {"slept_until": ctx.clock.now().isoformat()}


async def wait(ctx: StepContext, **inputs: JSON) -> JSON:
    """End a wait whose deadline came before its signal: the ``on_timeout`` outcome."""
    output, error = timeout_outcome(inputs)
    if error is not None:
        raise StepError(error.message, code=error.code, retryable=False)
    return output


async def workflow(ctx: StepContext, **inputs: JSON) -> None:
    """Never run: the store starts a ``workflow`` step's child run itself."""
    raise NonRetryable(
        "a workflow step starts a child run through the store, not a worker; it cannot run "
        "in a runner without a store",
        code="workflow_not_supported",
    )


def engine_registry() -> HandlerRegistry:
    """A registry holding ``sleep``, ``wait`` and ``workflow``."""
    registry = HandlerRegistry()
    registry.register(SLEEP, sleep, input_schema=SLEEP_INPUT)
    registry.register(WAIT, wait, input_schema=WAIT_INPUT)
    registry.register(WORKFLOW, workflow, input_schema=WORKFLOW_INPUT)
    return registry

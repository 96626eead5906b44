"""Overture: a durable orchestrator for AI-agent workflows.

from overture import HandlerRegistry, LocalRunner, load_workflow

registry = HandlerRegistry()

@registry.handler("greet")
async def greet(ctx, *, name):
    return {"text": f"hello {name}"}

result = await LocalRunner(registry).run(load_workflow("greet.yml"), {"name": "ana"})
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from overture.core.loader import load_workflow, parse_workflow
    from overture.core.model import (
        Compensation,
        Concurrency,
        Defaults,
        RateLimit,
        RetryPolicy,
        Step,
        Triggers,
        Workflow,
    )
    from overture.errors import (
        Cancelled,
        DocumentInvalid,
        HandlerNotFound,
        InputInvalid,
        NonRetryable,
        OvertureError,
        Problem,
        Retry,
        StepError,
        WorkflowInvalid,
    )
    from overture.handlers.registry import HandlerRegistry
    from overture.remote import RemoteClient
    from overture.runtime.context import StepContext
    from overture.runtime.local import LocalRunner, RunResult

# Names are imported on first use, so that ``import overture.core`` stays free of the runtime
# (and of asyncio): the pure core must be importable on its own.
_EXPORTS = {
    "load_workflow": "overture.core.loader",
    "parse_workflow": "overture.core.loader",
    **dict.fromkeys(
        [
            "Compensation",
            "Concurrency",
            "Defaults",
            "RateLimit",
            "RetryPolicy",
            "Step",
            "Triggers",
            "Workflow",
        ],
        "overture.core.model",
    ),
    **dict.fromkeys(
        [
            "Cancelled",
            "DocumentInvalid",
            "HandlerNotFound",
            "InputInvalid",
            "NonRetryable",
            "OvertureError",
            "Problem",
            "Retry",
            "StepError",
            "WorkflowInvalid",
        ],
        "overture.errors",
    ),
    "HandlerRegistry": "overture.handlers.registry",
    "StepContext": "overture.runtime.context",
    "LocalRunner": "overture.runtime.local",
    "Client": "overture.client",
    "RemoteClient": "overture.remote",
    "Worker": "overture.runtime.worker",
    **dict.fromkeys(["Conflict", "NotFound", "NotRetryable"], "overture.errors"),
    "RunResult": "overture.runtime.local",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'overture' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Cancelled",
    "Client",
    "Compensation",
    "Concurrency",
    "Conflict",
    "Defaults",
    "DocumentInvalid",
    "HandlerNotFound",
    "HandlerRegistry",
    "InputInvalid",
    "LocalRunner",
    "NonRetryable",
    "NotFound",
    "NotRetryable",
    "OvertureError",
    "Problem",
    "RateLimit",
    "RemoteClient",
    "Retry",
    "RetryPolicy",
    "RunResult",
    "Step",
    "StepContext",
    "StepError",
    "Triggers",
    "Worker",
    "Workflow",
    "WorkflowInvalid",
    "__version__",
    "load_workflow",
    "parse_workflow",
]

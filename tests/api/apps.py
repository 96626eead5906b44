"""Handlers the API suites' servers run (``--app tests.api.apps:registry``).

``gate`` holds its step open until a file exists, so a test decides, without sleeping, when a
run moves on: while a gate is closed the run is certainly ``running``. Touching ``OPEN_ALL``
in the gate's directory opens every gate there, so a server can always be stopped promptly.
``chatty`` writes log lines (``GET /v1/runs/{id}/logs``); ``text.upper`` has a dotted name. ``slow`` and its pid output come from
``tests.apps.handlers``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.apps.handlers import registry as process_handlers

from overture import HandlerRegistry, StepContext

OPEN_ALL = "OPEN_ALL"
POLL = 0.02

registry = HandlerRegistry()


@registry.handler()
async def gate(ctx: StepContext, *, path: str) -> dict[str, str]:
    """Wait until the file ``path`` (or ``OPEN_ALL`` beside it) exists."""
    file = Path(path)

    def opened() -> bool:
        return file.exists() or (file.parent / OPEN_ALL).exists()

    # The test that opens the gate is another process: a file is the simplest shared signal.
    while not await asyncio.to_thread(opened):  # noqa: ASYNC110
        await asyncio.sleep(POLL)
    return {"opened": file.name}


@registry.handler()
async def chatty(ctx: StepContext, *, lines: int) -> dict[str, int]:
    """Log ``lines`` numbered lines, then succeed."""
    for n in range(1, lines + 1):
        ctx.log(f"line {n}", level="warning" if n == lines else "info", n=n)
    return {"lines": lines}


@registry.handler("text.upper")
async def upper(ctx: StepContext, *, text: str) -> dict[str, str]:
    """A handler with a dotted name, as teams namespace theirs."""
    return {"text": text.upper()}


registry.include(process_handlers)

"""Handlers for tests that run real worker processes (``--app tests.apps.handlers:registry``).

``slow`` leaves files in ``marker`` (a directory) so a test can see, from outside the worker,
that a step started, finished or was cancelled, and in which process.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from overture import HandlerRegistry, StepContext

registry = HandlerRegistry()


def _mark(marker: str, ctx: StepContext, what: str) -> None:
    folder = Path(marker)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{ctx.run_id}.{ctx.step_id}.{os.getpid()}.{what}").touch()


@registry.handler()
async def slow(ctx: StepContext, *, seconds: float, marker: str) -> dict[str, int]:
    """Sleep ``seconds``; output the pid of the process that ran it."""
    _mark(marker, ctx, "started")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _mark(marker, ctx, "cancelled")
        raise
    _mark(marker, ctx, "finished")
    return {"pid": os.getpid()}

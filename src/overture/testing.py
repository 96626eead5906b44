"""Helpers for testing workflows and handlers: a fake clock and echoing handlers.

clock = FakeClock()
runner = LocalRunner(registry, clock=clock, sleep=clock.sleep)   # backoff takes no real time
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from overture.errors import NonRetryable
from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import StepContext

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to, or when something sleeps on it."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` at once, yielding to the event loop like a real sleep."""
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


class PlaceholderSecrets(Mapping[str, str]):
    """Every secret exists and reads ``<secret NAME>``: dry runs must reveal nothing."""

    def __getitem__(self, name: str) -> str:
        return f"<secret {name}>"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def echo_registry(names: Collection[str], *, fail: Collection[str] = ()) -> HandlerRegistry:
    """A handler for each name that returns its inputs; steps in ``fail`` fail for good instead."""
    registry = HandlerRegistry()
    failing = frozenset(fail)

    for name in sorted(set(names)):

        async def echo(ctx: StepContext, **inputs: Any) -> dict[str, Any]:
            if ctx.step_id in failing and not ctx.compensation:
                raise NonRetryable(
                    f"dry run: step {ctx.step_id!r} was told to fail", code="dry_run"
                )
            return inputs

        registry.register(name, echo, description=f"dry-run stand-in for {name!r}")
    return registry

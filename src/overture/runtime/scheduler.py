"""The scheduler: fires the due ticks of cron schedules, in any number of processes at once.

Each pass asks the store to fire what is due (``Store.fire_schedules``: one transaction, one row
per tick, so a tick fires once however many schedulers share the database), then sleeps until
the next tick is due, or ``poll`` seconds, whichever is sooner: a schedule made by another
process is seen within ``poll``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from overture.store import Store
from overture.store.records import Tick

logger = logging.getLogger("overture.scheduler")

POLL = 1.0
"""Longest sleep between passes, in seconds."""
BATCH = 100
"""Schedules fired per transaction; a pass goes on while batches come back full."""
SHORTEST_SLEEP = 0.05
"""Even when a tick is due now by this machine's clock: the database's may be a little behind."""


class Scheduler:
    """Fires cron schedules' ticks until ``stop()``."""

    def __init__(
        self,
        store: Store,
        *,
        poll: float = POLL,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.poll = poll
        self.clock = clock
        """None: the database's clock decides what is due (the same on every machine)."""
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.fire_due()
                pause = await self._pause()
            except Exception:  # the database may be briefly away: try again next pass
                logger.exception("firing schedules failed")
                pause = self.poll
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)

    async def fire_due(self) -> list[Tick]:
        """One pass: fire every tick due now (batch after batch, until one fires nothing)."""
        fired: list[Tick] = []
        while True:
            now = None if self.clock is None else self.clock()
            batch = await self.store.fire_schedules(now=now, limit=BATCH)
            if not batch:
                return fired
            fired += batch
            for tick in batch:
                _report(tick)

    async def _pause(self) -> float:
        """Seconds until the next tick is due, within [SHORTEST_SLEEP, poll]."""
        due = await self.store.next_schedule_at()
        if due is None:
            return self.poll
        now = self.clock() if self.clock is not None else datetime.now(UTC)
        return min(self.poll, max(SHORTEST_SLEEP, (due - now).total_seconds()))


def _report(tick: Tick) -> None:
    if tick.run_id is not None:
        logger.info(
            "schedule %s fired its %s tick: run %s",
            tick.schedule_id,
            tick.tick.isoformat(),
            tick.run_id,
        )
    else:
        logger.warning(
            "schedule %s fired its %s tick but started no run: %s",
            tick.schedule_id,
            tick.tick.isoformat(),
            tick.error,
        )

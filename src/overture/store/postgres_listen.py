"""Wake-ups for idle workers: ``LISTEN overture_jobs`` on a connection of its own.

Every transaction that queues jobs notifies the channel (delivered on commit). If the listening
connection drops, waiting degrades to the caller's polling timeout while it is re-established
in the background; once it is back, waiters are woken once, since jobs may have been queued
while nobody was listening.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from overture.store.postgres_tx import CHANNEL, Q

logger = logging.getLogger("overture.store.postgres")

LISTENER_PING = 30.0
"""Seconds between checks that the LISTEN connection is still alive while idle."""


class JobListener:
    """Says when new jobs may be claimable."""

    def __init__(self, dsn: str, url: str) -> None:
        self._dsn = dsn
        self.url = url
        """The URL without credentials, for logs."""
        self._ready = asyncio.Event()
        self._conn: Any = None
        self._lost: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._keep_listening(), name="overture-listen")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._drop()

    def wake(self, *_: object) -> None:
        """Wake waiters (a notification, or a claim that left a busy run's job behind)."""
        self._ready.set()

    async def wait(self, timeout: float) -> None:
        """Return on a wake-up, or after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return
        self._ready.clear()

    async def _connect(self, *, wake: bool = False) -> bool:
        """Open the LISTEN connection; False (logged) if the database cannot be reached."""
        conn: Any = None
        try:
            conn = await asyncpg.connect(self._dsn, timeout=10)
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _: lost.set())
            await conn.add_listener(CHANNEL, self.wake)
        except Exception as error:  # the database may come back: keep polling meanwhile
            logger.warning("cannot LISTEN on %s (%s); polling until it can", self.url, error)
            if conn is not None:
                conn.terminate()
            return False
        self._conn, self._lost = conn, lost
        if wake:
            self.wake()
        return True

    async def _keep_listening(self) -> None:
        backoff = 0.5
        while True:
            if self._conn is None:
                if not await self._connect(wake=True):
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                logger.info("listening for jobs on %s again", self.url)
                backoff = 0.5
            conn, lost = self._conn, self._lost
            assert lost is not None
            try:
                async with asyncio.timeout(LISTENER_PING):
                    await lost.wait()
                logger.warning("the LISTEN connection to %s closed; reconnecting", self.url)
            except TimeoutError:
                try:  # idle for a while: make sure it is still there
                    await conn.fetchval(Q["ping"], timeout=10)
                    continue
                except Exception as error:
                    logger.warning("the LISTEN connection to %s is gone (%s)", self.url, error)
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            async with asyncio.timeout(5):
                await conn.close()
        except Exception:
            conn.terminate()

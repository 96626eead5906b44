"""``Store.observe`` in the embedded store: the gauges every process reports the same."""

from __future__ import annotations

import sqlite3
import time

from overture import serde
from overture.store.observe import UNFINISHED, observation
from overture.store.records import Observation
from overture.store.sqlite_base import Q, SQLiteBase, when

_UNFINISHED = serde.dumps_text(list(UNFINISHED))


class SQLiteObserve(SQLiteBase):
    """Queues, unfinished runs and dead letters, read on one reader connection's snapshot."""

    async def observe(self) -> Observation:
        def read(conn: sqlite3.Connection) -> Observation:
            # The host's clock is the database's here, as for every write (``Tx.now``).
            now = time.time_ns() // 1000
            return observation(
                when(now),
                conn.execute(Q["observe_queues"], {"now": now}),
                conn.execute(Q["observe_runs"], {"unfinished": _UNFINISHED}),
                conn.execute(Q["observe_dead_letters"]),
                when,
            )

        return await self._read(read)

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
    """Queues, unfinished runs and dead letters, read in one snapshot (``_read``)."""

    async def observe(self, tenant: str | None = None) -> Observation:
        of = "" if tenant is None else "_of"

        def read(conn: sqlite3.Connection) -> Observation:
            # The host's clock is the database's here, as for every write (``Tx.now``).
            now = time.time_ns() // 1000
            return observation(
                when(now),
                conn.execute(Q[f"observe_queues{of}"], {"now": now, "tenant": tenant}),
                conn.execute(Q[f"observe_runs{of}"], {"unfinished": _UNFINISHED, "tenant": tenant}),
                conn.execute(Q[f"observe_dead_letters{of}"], {"tenant": tenant}),
                when,
            )

        return await self._read(read)

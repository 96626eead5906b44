"""``Store.observe`` in the scale-out store: the gauges every process reports the same."""

from __future__ import annotations

from overture.store.observe import UNFINISHED, observation
from overture.store.postgres_base import PostgresBase
from overture.store.postgres_tx import Q, when
from overture.store.records import Observation


class PostgresObserve(PostgresBase):
    """Queues, unfinished runs and dead letters, read in one read-only snapshot."""

    async def observe(self, tenant: str | None = None) -> Observation:
        # One snapshot (and one now()) for the three reads, so two processes scraping the same
        # committed state report the same numbers.
        async with (
            self._connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            at = await conn.fetchval(Q["now"])
            if tenant is None:
                queues = await conn.fetch(Q["observe_queues"])
                runs = await conn.fetch(Q["observe_runs"], list(UNFINISHED))
                dead = await conn.fetch(Q["observe_dead_letters"])
            else:
                queues = await conn.fetch(Q["observe_queues_of"], tenant)
                runs = await conn.fetch(Q["observe_runs_of"], tenant, list(UNFINISHED))
                dead = await conn.fetch(Q["observe_dead_letters_of"], tenant)
        return observation(when(at), queues, runs, dead, when)

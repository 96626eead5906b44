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
            of, tenants = ("", ()) if tenant is None else ("_of", (tenant,))
            queues = await conn.fetch(Q[f"observe_queues{of}"], *tenants)
            runs = await conn.fetch(Q[f"observe_runs{of}"], *tenants, list(UNFINISHED))
            dead = await conn.fetch(Q[f"observe_dead_letters{of}"], *tenants)
        return observation(when(at), queues, runs, dead, when)

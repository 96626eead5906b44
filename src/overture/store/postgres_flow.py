"""Flow control in the scale-out store: which due jobs a claim starts, and circuit outcomes.

Many claims run at once here. Each takes an advisory lock per flow key its candidates name
(sorted, so two claims never wait on each other in a circle) before it reads the holders, tokens
and circuits, so a limit of 1 holds however many workers claim together. Completions take the
lock of the circuit they count against; releasing a slot takes none (see migration 004).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from overture.core import admission
from overture.core.admission import CIRCUIT_MARK, Admission, FlowKeys, FlowState, TenantLimits
from overture.core.events import ErrorInfo
from overture.core.gates import Breaker
from overture.errors import NotFound
from overture.store import flow
from overture.store.postgres_base import PostgresBase
from overture.store.postgres_tx import CHANNEL, Q, Tx, when
from overture.store.records import CircuitRecord


def _lock_name(kind: str, tenant: str, key: str) -> str:
    return f"{kind}\x1f{tenant}\x1f{key}"


def _lock_names(wanted: FlowKeys) -> list[str]:
    names = {_lock_name("slot", t, k) for t, k in wanted.slots}
    names |= {_lock_name("bucket", t, k) for t, k in wanted.buckets}
    names |= {_lock_name("circuit", t, k) for t, k in wanted.circuits}
    return sorted(names)


def _columns(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    found = list(pairs)
    return [t for t, _ in found], [k for _, k in found]


class PostgresFlow(flow.DeferredWakeups, PostgresBase):
    """Admission at claim time, circuit outcomes at completion, and the circuits' API."""

    async def _admit(
        self,
        tx: Tx,
        candidates: Sequence[admission.Candidate],
        now: float,
        limit: int,
        limits: TenantLimits,
    ) -> Admission:
        wanted = admission.keys(candidates, limits)
        if not wanted:
            return Admission(admitted=[c.id for c in candidates[:limit]])
        await tx.conn.fetchval(Q["flow_lock"], _lock_names(wanted))
        decision = admission.admit(
            candidates, await self._flow_state(tx, wanted), now, limit, limits
        )
        await self._take(tx, decision, wanted)
        self._deferred(d.run_at for d in decision.deferred.values())
        tenants = {c.id: c.tenant for c in candidates}
        tx.deferred.extend((tenants[i], d.reason) for i, d in decision.deferred.items())
        return decision

    async def _flow_state(self, tx: Tx, wanted: FlowKeys) -> FlowState:
        conn, state = tx.conn, FlowState()
        if wanted.slots:
            for t, k in wanted.slots:
                state.holders[(t, k)] = 0
            for t, k, by_run, run_id in await conn.fetch(
                Q["flow_slot_holders"], *_columns(wanted.slots)
            ):
                state.holders[(t, k)] += 1
                if by_run:
                    state.run_holders.add((t, k, run_id))
        if wanted.buckets:
            for t, k, tokens, updated, promised in await conn.fetch(
                Q["rate_buckets_get"], *_columns(wanted.buckets)
            ):
                state.buckets[(t, k)] = admission.BucketState(tokens, updated, promised)
        if wanted.circuits:
            for row in await conn.fetch(Q["circuits_get"], *_columns(wanted.circuits)):
                state.circuits[(row[0], row[1])] = flow.circuit_state(*row[2:])
        return state

    async def _take(self, tx: Tx, decision: Admission, wanted: FlowKeys) -> None:
        conn = tx.conn
        if decision.acquired:
            a = decision.acquired
            await conn.execute(
                Q["flow_slots_insert"],
                [x.tenant for x in a],
                [x.key for x in a],
                [f"run:{x.run_id}" if x.job_id is None else f"job:{x.job_id}" for x in a],
                [x.job_id for x in a],
                [x.run_id for x in a],
            )
        if decision.buckets:
            items = list(decision.buckets.items())
            defs = [wanted.buckets[bk] for bk, _ in items]
            await conn.execute(
                Q["rate_buckets_put"],
                [t for (t, _), _ in items],
                [k for (_, k), _ in items],
                [s.tokens for _, s in items],
                [s.updated for _, s in items],
                [b.rate for b in defs],
                [b.burst for b in defs],
                [s.promised for _, s in items],
            )
        for (tenant, key), state in decision.circuits.items():
            await self._put_circuit(tx, tenant, wanted.circuits[(tenant, key)], state)
        if decision.deferred:
            deferred = list(decision.deferred.items())
            await conn.execute(
                Q["jobs_defer"],
                [job_id for job_id, _ in deferred],
                [d.run_at for _, d in deferred],
                [d.blocked_on for _, d in deferred],
            )

    async def _put_circuit(
        self, tx: Tx, tenant: str, breaker: Breaker, state: admission.CircuitState
    ) -> None:
        await tx.conn.execute(
            Q["circuit_put"],
            *flow.breaker_row(tenant, breaker, state),
            state.opened_at,
            state.open_until,
        )

    async def _count_outcomes(
        self, tx: Tx, finished: Sequence[tuple[str, str | None, int, ErrorInfo | None]]
    ) -> None:
        """Count finished attempts (tenant, gates, job id, error) against their circuits."""
        counted = []
        for tenant, gates, job_id, error in finished:
            if (outcome := flow.counted_outcome(gates, error)) is not None:
                counted.append((tenant, *outcome, job_id))
        if not counted:
            return
        conn = tx.conn
        breakers = {(t, b.key): b for t, b, _, _ in counted}  # (tenant, breaker, failed, job)
        pairs = set(breakers)
        await conn.fetchval(Q["flow_lock"], _lock_names(FlowKeys(circuits=breakers)))
        now = (await tx.clock()).timestamp()
        found = {
            (row[0], row[1]): flow.circuit_state(*row[2:])
            for row in await conn.fetch(Q["circuits_get"], *_columns(pairs))
        }
        changed: dict[tuple[str, str], tuple[Breaker, admission.CircuitState]] = {}
        for tenant, breaker, failed, job_id in counted:
            ck = (tenant, breaker.key)
            before = changed[ck][1] if ck in changed else found.get(ck, admission.CircuitState())
            after = admission.circuit_after(before, breaker, job_id, failed, now)
            if after != before or ck not in found:
                changed[ck] = (breaker, after)
        for (tenant, _), (breaker, state) in sorted(changed.items()):
            await self._put_circuit(tx, tenant, breaker, state)

    # --- the circuits' API -----------------------------------------------------------------
    async def list_circuits(self, *, tenant: str | None = None) -> list[CircuitRecord]:
        pool = self._need_pool()
        async with pool.acquire() as conn:
            found = await conn.fetch(Q["circuit_list"], tenant)
        return [_record(row) for row in found]

    async def reset_circuit(self, key: str, *, tenant: str) -> CircuitRecord:
        async def write(tx: Tx) -> CircuitRecord:
            # Under the circuit's lock, as completions count under it: none writes back a
            # state it read before the reset.
            await tx.conn.fetchval(Q["flow_lock"], [_lock_name("circuit", tenant, key)])
            row = await tx.conn.fetchrow(Q["circuit_reset"], tenant, key)
            if row is None:
                raise NotFound("circuit", key)
            await tx.conn.execute(Q["circuit_unpark"], tenant, CIRCUIT_MARK + key, CHANNEL)
            return _record(row)

        return await self._write(write)


def _record(row: Sequence[Any]) -> CircuitRecord:
    return flow.circuit_record(row, when, when(row[10]))

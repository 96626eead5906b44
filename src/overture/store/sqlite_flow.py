"""Flow control in the embedded store: which due jobs a claim starts, and circuit outcomes.

Every write goes through the one writer, so a claim sees the slots, buckets and circuits of
every other claim that committed before it: no lock beyond that is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from overture.core import admission
from overture.core.admission import CIRCUIT_MARK, Admission, FlowKeys, FlowState, TenantLimits
from overture.core.events import ErrorInfo
from overture.core.gates import Breaker
from overture.errors import NotFound
from overture.store import flow
from overture.store.codec import from_micros
from overture.store.records import CircuitRecord
from overture.store.sqlite_base import Q, SQLiteBase
from overture.store.sqlite_writer import Tx

_MICROS = 1_000_000
RECHECK = 5.0
"""Transactions here run one at a time, so a holder letting go always wakes the first waiting
job; the re-check covers a woken job that another control then refuses (the slot stays free
for the others, which look again after this long)."""


def _micros(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * _MICROS)


def _seconds(micros: int | None) -> float | None:
    return None if micros is None else micros / _MICROS


class SQLiteFlow(flow.DeferredWakeups, SQLiteBase):
    """Admission at claim time, circuit outcomes at completion, and the circuits' API."""

    def _admit(
        self, tx: Tx, limit: int, handlers: str | None, limits: TenantLimits
    ) -> tuple[list[int], bool]:
        """The ids of the jobs to lease, in claim order; True if some due job was deferred."""
        params = {"now": tx.now, "handlers": handlers, "per_tenant": limit * flow.PER_TENANT}
        found = flow.fair_order(tx.conn.execute(Q["jobs_candidates"], params).fetchall())
        candidates = [flow.candidate(r[0], r[1], r[2], r[5]) for r in found]
        wanted = admission.keys(candidates, limits)
        if not wanted:
            return [c.id for c in candidates[:limit]], False
        now = tx.now / _MICROS
        state = self._flow_state(tx, wanted)
        decision = admission.admit(candidates, state, now, limit, limits, recheck=RECHECK)
        self._take(tx, decision, wanted)
        self._deferred(d.run_at for d in decision.deferred.values())
        tenants = {c.id: c.tenant for c in candidates}
        tx.deferred.extend((tenants[i], d.reason) for i, d in decision.deferred.items())
        return decision.admitted, bool(decision.deferred)

    def _flow_state(self, tx: Tx, wanted: FlowKeys) -> FlowState:
        state = FlowState()
        for tenant, key in wanted.slots:
            held = tx.conn.execute(Q["flow_slot_holders"], (tenant, key)).fetchall()
            state.holders[(tenant, key)] = len(held)
            state.run_holders.update((tenant, key, run_id) for by_run, run_id in held if by_run)
        for tenant, key in wanted.buckets:
            row = tx.one("rate_bucket_get", tenant, key)
            if row is not None:
                state.buckets[(tenant, key)] = admission.BucketState(
                    row[0], row[1] / _MICROS, row[2]
                )
        for tenant, key in wanted.circuits:
            row = tx.one("circuit_get", tenant, key)
            if row is not None:
                status, failures, opened, until, probe, running = row
                state.circuits[(tenant, key)] = flow.circuit_state(
                    status, failures, _seconds(opened), _seconds(until), probe, running
                )
        return state

    def _take(self, tx: Tx, decision: Admission, wanted: FlowKeys) -> None:
        conn, now = tx.conn, tx.now
        conn.executemany(
            Q["flow_slot_insert"],
            [(a.tenant, a.key, _holder(a), a.job_id, a.run_id, now) for a in decision.acquired],
        )
        conn.executemany(
            Q["rate_bucket_put"],
            [
                (
                    t,
                    k,
                    s.tokens,
                    _micros(s.updated),
                    wanted.buckets[(t, k)].rate,
                    wanted.buckets[(t, k)].burst,
                    s.promised,
                )
                for (t, k), s in decision.buckets.items()
            ],
        )
        for (tenant, key), state in decision.circuits.items():
            self._put_circuit(tx, tenant, wanted.circuits[(tenant, key)], state)
        conn.executemany(
            Q["job_defer"],
            [(_micros(d.run_at), d.blocked_on, job_id) for job_id, d in decision.deferred.items()],
        )

    def _put_circuit(
        self, tx: Tx, tenant: str, breaker: Breaker, state: admission.CircuitState
    ) -> None:
        tx.conn.execute(
            Q["circuit_put"],
            (
                *flow.breaker_row(tenant, breaker, state),
                _micros(state.opened_at),
                _micros(state.open_until),
                tx.now,
            ),
        )

    def _count_outcome(
        self, tx: Tx, tenant: str, gates: str | None, job_id: int, error: ErrorInfo | None
    ) -> None:
        """Count a finished attempt against its circuit, in the completion's transaction."""
        counted = flow.counted_outcome(gates, error)
        if counted is None:
            return
        breaker, failed = counted
        row = tx.one("circuit_get", tenant, breaker.key)
        before = admission.CircuitState()
        if row is not None:
            status, failures, opened, until, probe, running = row
            before = flow.circuit_state(
                status, failures, _seconds(opened), _seconds(until), probe, running
            )
        after = admission.circuit_after(before, breaker, job_id, failed, tx.now / _MICROS)
        if after != before or row is None:
            self._put_circuit(tx, tenant, breaker, after)

    # --- the circuits' API -----------------------------------------------------------------
    async def list_circuits(self, *, tenant: str | None = None) -> list[CircuitRecord]:
        def read(conn: Any) -> list[CircuitRecord]:
            found = conn.execute(Q["circuit_list"], {"tenant": tenant}).fetchall()
            now = datetime.now(UTC)
            return [_record(row, now) for row in found]

        return await self._read(read)

    async def reset_circuit(self, key: str, *, tenant: str) -> CircuitRecord:
        def write(tx: Tx) -> CircuitRecord:
            params = {"tenant": tenant, "key": key, "now": tx.now}
            row = tx.conn.execute(Q["circuit_reset"], params).fetchone()
            if row is None:
                raise NotFound("circuit", key)
            parked = {"tenant": tenant, "parked": CIRCUIT_MARK + key, "now": tx.now}
            tx.conn.execute(Q["circuit_unpark"], parked)
            tx.enqueued = True
            return _record(row, from_micros(tx.now))

        return await self._write(write)


def _holder(a: admission.Acquired) -> str:
    return f"run:{a.run_id}" if a.job_id is None else f"job:{a.job_id}"


def _record(row: Sequence[Any], now: datetime) -> CircuitRecord:
    return flow.circuit_record(row, from_micros, now)

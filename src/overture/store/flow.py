"""What both stores share to enforce flow control: the rows of the flow tables as the pure
admission sees them, and back (see ``overture.core.admission``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from overture import serde
from overture.core.admission import Candidate, CircuitState
from overture.core.events import ErrorInfo
from overture.core.gates import Breaker, Gates
from overture.store.records import CircuitRecord

PER_TENANT = 1
"""A claim of N looks at up to ``PER_TENANT * N`` due jobs of each tenant. More would let a
claim fill up past deferred jobs, but on PostgreSQL every job looked at stays locked until the
claim commits, hidden from the other claims; a claim that deferred some asks to claim again."""


def gates_text(gates: Gates) -> str | None:
    """A job's gates as stored (None for a job without any, the common case)."""
    return serde.dumps_text(gates.to_data()) if gates else None


def candidate(job_id: int, tenant: str, run_id: str, gates: str | None) -> Candidate:
    return Candidate(job_id, tenant, run_id, Gates.from_data(serde.loads(gates) if gates else None))


def fair_order(rows: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
    """Due jobs in claim order: priority first, then tenants in turn, then FIFO.

    ``rows`` are (id, tenant, run_id, priority, run_at, ...), each tenant's in its own order;
    the n-th job of a tenant at a priority goes with the n-th of every other tenant there.
    """
    rank: dict[tuple[str, int], int] = {}
    keyed = []
    for row in sorted(rows, key=lambda r: (r[1], r[3], r[4], r[0])):
        slot = (row[1], row[3])
        rank[slot] = rank.get(slot, 0) + 1
        keyed.append(((row[3], rank[slot], row[4], row[0]), row))
    keyed.sort(key=lambda pair: pair[0])
    return [row for _, row in keyed]


def failure_counts(error: ErrorInfo | None) -> bool | None:
    """Whether an attempt's outcome counts against its circuit: a failure (True), a success
    (False), or neither (None: a non-retryable error is the caller's fault, not the
    downstream's)."""
    if error is None:
        return False
    if error.retryable or error.code == "timeout":
        return True
    return None


def circuit_state(
    status: str,
    failures: str,
    opened_at: float | None,
    open_until: float | None,
    probe: int | None,
    probe_running: bool,
) -> CircuitState:
    return CircuitState(
        status=status,  # type: ignore[arg-type]
        failures=tuple(serde.loads(failures)),
        opened_at=opened_at,
        open_until=open_until,
        probe=probe,
        probe_running=bool(probe_running),
    )


def failures_text(state: CircuitState) -> str:
    return serde.dumps_text(list(state.failures))


def circuit_record(
    row: Sequence[Any], moment: Callable[[Any], datetime], now: datetime
) -> CircuitRecord:
    """A circuit as shown, from a ``circuit_list`` row (``moment`` reads its stored times)."""
    tenant, key, status, failures, threshold, window, cooldown, opened, until, updated = row[:10]
    since = now.timestamp() - window
    return CircuitRecord(
        tenant=tenant,
        key=key,
        status=status,
        failures=sum(1 for t in serde.loads(failures) if t > since),
        threshold=threshold,
        window=window,
        cooldown=cooldown,
        opened_at=None if opened is None else moment(opened),
        open_until=None if until is None else moment(until),
        updated_at=moment(updated),
    )


def breaker_row(tenant: str, b: Breaker, state: CircuitState) -> tuple[Any, ...]:
    """(tenant, key, status, failures, probe, threshold, window, cooldown) for an upsert."""
    return (
        tenant,
        b.key,
        state.status,
        failures_text(state),
        state.probe,
        b.threshold,
        b.window,
        b.cooldown,
    )


def seconds(moment: datetime) -> float:
    return moment.timestamp()


def moment(at: float | None) -> datetime | None:
    return None if at is None else datetime.fromtimestamp(at, UTC)

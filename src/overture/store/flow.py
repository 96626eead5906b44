"""What both stores share to enforce flow control: the rows of the flow tables as the pure
admission sees them, and back (see ``overture.core.admission``)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
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


def counted_outcome(gates: str | None, error: ErrorInfo | None) -> tuple[Breaker, bool] | None:
    """The circuit a finished attempt counts against and whether it failed there, or None
    when it has no circuit or its outcome does not count (see ``failure_counts``)."""
    breaker = None if gates is None else Gates.from_data(serde.loads(gates)).breaker
    failed = failure_counts(error)
    if breaker is None or failed is None:
        return None
    return breaker, failed


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


class SoonestDeferred:
    """When the jobs this process's claims deferred come due, so an idle worker wakes for each.

    A deferred job wakes nobody when its time comes: without this a worker would find it only at
    its next poll, and a rate faster than the poll (or whose burst is smaller than a poll's
    worth) would lose the tokens in between. Jobs other processes deferred are found by polling.
    """

    __slots__ = ("times",)
    KEPT = 10_000
    """Times remembered at most (the soonest ones): a bound, not a working limit."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def note(self, deferred: Iterable[float]) -> None:
        for at in deferred:
            heapq.heappush(self.times, at)
        if len(self.times) > self.KEPT:
            self.times = heapq.nsmallest(self.KEPT // 2, self.times)

    def bound(self, timeout: float) -> float:
        """``timeout``, shortened to when the next deferred job comes due."""
        now = time.time()
        while self.times and self.times[0] <= now:
            heapq.heappop(self.times)  # due already: the claim before this wait looked
        if not self.times:
            return timeout
        return max(0.0, min(timeout, self.times[0] - now))


class DeferredWakeups:
    """Mixed into a store before its base: claims note what they deferred, and
    ``wait_for_jobs`` wakes its worker when the soonest comes due."""

    _soonest: SoonestDeferred | None = None

    def _deferred(self, deferred: Iterable[float]) -> None:
        if self._soonest is None:
            self._soonest = SoonestDeferred()
        self._soonest.note(deferred)

    async def wait_for_jobs(self, timeout: float) -> None:
        soonest = self._soonest
        bounded = timeout if soonest is None else soonest.bound(timeout)
        await super().wait_for_jobs(bounded)  # type: ignore[misc]

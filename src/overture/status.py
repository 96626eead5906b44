"""One tenant's operational status: what ``overture status``, ``GET /v1/status`` and
``Client.status()`` report, and the rule for when it needs attention.

It needs attention (``overture status`` exits 1) when

- attempts are ready and no worker is live: nothing will run them;
- a circuit is open or half-open: a downstream is failing and its jobs are parked. An open
  circuit whose cooldown has passed is shown but does not count: nothing has called its
  downstream since (the next call half-opens it), so it says nothing about the downstream now.

Dead letters are reported but do not count: the dead-letter queue only empties by requeueing,
so letters kept on purpose would make the status fail for good; their growth is what the
``DeadLetterQueueGrowing`` alert (``deploy/prometheus/alerts.yml``) watches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from overture.store.base import Store
from overture.store.records import (
    CircuitRecord,
    Observation,
    QueueGauge,
    RunGauge,
    WorkerRecord,
    live_workers,
)

FAILING_CIRCUIT = frozenset({"open", "half_open"})


def stale(circuit: CircuitRecord, now: datetime) -> bool:
    """An open circuit whose cooldown ended at or before ``now`` and that nobody called since."""
    return circuit.status == "open" and circuit.open_until is not None and circuit.open_until <= now


@dataclass(frozen=True, kw_only=True, slots=True)
class Status:
    """A tenant's queues, unfinished runs, dead letters and failing circuits, with the workers
    that serve every tenant, read at the database's time ``observed.at``."""

    tenant: str | None
    """None: every tenant's (what an operator's ``GET /metrics`` reports)."""
    observed: Observation
    """Only this tenant's gauges (``Store.observe(tenant)``)."""
    dead_letters: int
    """Steps in the tenant's dead-letter queue, not requeued."""
    circuits: tuple[CircuitRecord, ...]
    """The tenant's open or half-open circuits, stale ones included (see ``stale``)."""
    live_workers: int
    """Workers live now, any tenant's work they run (a count says nothing of other tenants)."""
    workers: tuple[WorkerRecord, ...] | None
    """The workers running and seen within ``WORKER_RECENT_WITHIN``, live or not; None where
    the caller may not see them."""

    @property
    def queues(self) -> tuple[QueueGauge, ...]:
        return self.observed.queues

    @property
    def runs(self) -> tuple[RunGauge, ...]:
        return self.observed.runs

    @property
    def ready(self) -> int:
        """Attempts due and not started: waiting for a worker or held by a flow control."""
        return sum(q.ready for q in self.queues)

    @property
    def attention(self) -> tuple[str, ...]:
        """Why the status needs attention, one sentence each; empty when healthy."""
        reasons: list[str] = []
        if self.ready and not self.live_workers:
            reasons.append(f"{self.ready} ready attempt(s) and no live worker to run them")
        reasons += [
            f"circuit {c.key!r} is {c.status.replace('_', '-')}"
            for c in self.circuits
            if not stale(c, self.observed.at)
        ]
        return tuple(reasons)

    @property
    def healthy(self) -> bool:
        return not self.attention


async def read_status(store: Store, *, tenant: str | None, with_workers: bool = True) -> Status:
    """The status of ``tenant`` (None: every tenant; ``with_workers``: list the workers too,
    not only count them)."""
    observed = await store.observe(tenant)
    workers = await store.list_workers()
    circuits = await store.list_circuits(tenant=tenant)
    return status_of(observed, workers, circuits, tenant=tenant, with_workers=with_workers)


def status_of(
    observed: Observation,
    workers: Iterable[WorkerRecord],
    circuits: Iterable[CircuitRecord],
    *,
    tenant: str | None,
    with_workers: bool = True,
) -> Status:
    """What is worth reporting of what was read: workers running and seen lately (a crashed
    one never says it stopped), circuits not closed."""
    recent = tuple(w for w in workers if w.recent(observed.at))
    return Status(
        tenant=tenant,
        observed=observed,
        dead_letters=sum(count for _, count in observed.dead_letters),
        circuits=tuple(c for c in circuits if c.status in FAILING_CIRCUIT),
        live_workers=live_workers(recent, observed.at),
        workers=recent if with_workers else None,
    )

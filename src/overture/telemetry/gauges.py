"""What ``GET /metrics`` shows: the shared gauges, read from the database at each scrape, and
this process's own series, with only the tenants the caller may see.

Shared gauges carry no ``worker`` label: every API process reads the same database and reports
the same values, so a query picks any one (``max without (instance) (...)``). Nothing is
cached between scrapes: a scrape costs one snapshot read and two small listings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from overture.store.records import CircuitRecord, Observation, WorkerRecord

CIRCUIT_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
"""``overture_circuit_state`` values: higher is worse, so ``max`` over keys means something."""


def shared_gauges(
    seen: Observation, workers: Sequence[WorkerRecord], circuits: Sequence[CircuitRecord]
) -> list[Metric]:
    """The gauges of the deployment as a whole, as of ``seen.at`` (the database's time)."""
    depth = GaugeMetricFamily(
        "overture_queue_depth",
        "Attempts due now and waiting for a worker, by queue (handler) and tenant.",
        labels=["queue", "tenant"],
    )
    delayed = GaugeMetricFamily(
        "overture_queue_delayed",
        "Attempts queued to start later (retry backoff, delayed run, deferred by a limit).",
        labels=["queue", "tenant"],
    )
    running = GaugeMetricFamily(
        "overture_queue_running",
        "Attempts claimed by a worker and not finished yet, by queue (handler) and tenant.",
        labels=["queue", "tenant"],
    )
    oldest = GaugeMetricFamily(
        "overture_queue_oldest_age_seconds",
        "Seconds the longest-waiting due attempt has been due (0 when none is).",
        labels=["queue", "tenant"],
    )
    for q in seen.queues:
        labels = [q.queue, q.tenant]
        depth.add_metric(labels, q.ready)
        delayed.add_metric(labels, q.delayed)
        running.add_metric(labels, q.running)
        due = q.oldest_ready_at
        oldest.add_metric(labels, 0.0 if due is None else _since(due, seen.at))
    dead = GaugeMetricFamily(
        "overture_dead_letters",
        "Steps in the dead-letter queue, not requeued.",
        labels=["tenant"],
    )
    for tenant, count in seen.dead_letters:
        dead.add_metric([tenant], count)
    runs = GaugeMetricFamily(
        "overture_active_runs",
        "Runs not finished yet, by workflow, tenant and status.",
        labels=["workflow", "tenant", "status"],
    )
    for r in seen.runs:
        runs.add_metric([r.workflow, r.tenant, r.status], r.count)
    circuit = GaugeMetricFamily(
        "overture_circuit_state",
        "Circuit breakers: 0 closed, 1 half-open (one probe runs), 2 open (jobs parked).",
        labels=["key", "tenant"],
    )
    for c in circuits:
        circuit.add_metric([c.key, c.tenant], CIRCUIT_STATES.get(c.status, 0.0))
    return [depth, delayed, running, oldest, dead, runs, circuit, *_worker_gauges(seen, workers)]


def _worker_gauges(seen: Observation, workers: Sequence[WorkerRecord]) -> list[Metric]:
    running = [w for w in workers if w.running]
    live = GaugeMetricFamily(
        "overture_workers_live",
        "Workers running and heartbeating (seen within store.records.WORKER_LIVE_WITHIN).",
        value=sum(1 for w in running if w.live(seen.at)),
    )
    last_seen = GaugeMetricFamily(
        "overture_worker_last_seen_seconds",
        "Seconds since each running worker's last heartbeat, on the database's clock.",
        labels=["worker"],
    )
    for w in running:
        last_seen.add_metric([w.id], _since(w.last_seen, seen.at))
    return [live, last_seen]


def _since(then: datetime, now: datetime) -> float:
    # Never negative: a time written a moment after the snapshot's now() is "just now".
    return max(0.0, (now - then).total_seconds())


def visible(families: Iterable[Metric], tenant: str | None) -> Iterator[Metric]:
    """``families`` with only the series of ``tenant`` and those of no tenant (None: all)."""
    for family in families:
        if tenant is None:
            yield family
            continue
        kept = Metric(family.name, family.documentation, family.type, family.unit)
        kept.samples = [s for s in family.samples if s.labels.get("tenant", tenant) == tenant]
        yield kept


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(families: Iterable[Metric], *, tenant: str | None) -> bytes:
    """The Prometheus text format of ``families``, as ``tenant`` may see them (None: all)."""
    return generate_latest(_Families(visible(families, tenant)))

"""What ``GET /metrics`` shows: the shared gauges, read from the database at each scrape, and
this process's own series, with only the tenants the caller may see.

Shared gauges carry no ``worker`` label: every API process reads the same database and reports
the same values, so a query picks any one (``max without (instance) (...)``). Nothing is
cached between scrapes: a scrape costs one snapshot read (of the caller's tenant only, unless
it sees every tenant) and two small listings.

Series stay bounded however long the deployment lives: circuits only while not closed, workers
only while running and seen within ``WORKER_RECENT_WITHIN`` (a crashed worker never says it
stopped).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from overture.status import Status
from overture.store.records import seconds_since

CIRCUIT_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
"""``overture_circuit_state`` values: higher is worse, so ``max`` over keys means something."""
TENANT_FREE = frozenset(
    {"overture_worker_heartbeats", "overture_workers_live", "overture_worker_last_seen_seconds"}
)
"""The families a key of any tenant sees whole: workers serve every tenant, and their ids are
infrastructure names (as ``GET /v1/status`` shows any key how many are live). Every other
series without a ``tenant`` label is the operator's only."""


def shared_gauges(status: Status) -> list[Metric]:
    """The gauges of the deployment as a whole (``status.read_status``), as of the database's
    time when they were read."""
    seen = status.observed
    depth = GaugeMetricFamily(
        "overture_queue_depth",
        "Attempts due and not started: waiting for a worker or held by a flow control.",
        labels=["queue", "tenant"],
    )
    delayed = GaugeMetricFamily(
        "overture_queue_delayed",
        "Attempts not due yet: retry backoff, a delayed run, a sleep step's timer.",
        labels=["queue", "tenant"],
    )
    running = GaugeMetricFamily(
        "overture_queue_running",
        "Attempts claimed by a worker and not finished yet, by queue (handler) and tenant.",
        labels=["queue", "tenant"],
    )
    oldest = GaugeMetricFamily(
        "overture_queue_oldest_age_seconds",
        "Seconds the longest-waiting due attempt has been due, held or not (0 when none is).",
        labels=["queue", "tenant"],
    )
    for q in seen.queues:
        labels = [q.queue, q.tenant]
        depth.add_metric(labels, q.ready)
        delayed.add_metric(labels, q.delayed)
        running.add_metric(labels, q.running)
        due = q.oldest_ready_at
        oldest.add_metric(labels, 0.0 if due is None else seconds_since(due, seen.at))
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
        "Circuit breakers not closed: 1 half-open (one probe runs), 2 open (jobs parked).",
        labels=["key", "tenant"],
    )
    for c in status.circuits:  # not closed: else every key ever called would have a series
        circuit.add_metric([c.key, c.tenant], CIRCUIT_STATES.get(c.status, 0.0))
    return [depth, delayed, running, oldest, dead, runs, circuit, *_worker_gauges(status)]


def _worker_gauges(status: Status) -> list[Metric]:
    live = GaugeMetricFamily(
        "overture_workers_live",
        "Workers running and heartbeating (seen within store.records.WORKER_LIVE_WITHIN).",
        value=status.live_workers,
    )
    last_seen = GaugeMetricFamily(
        "overture_worker_last_seen_seconds",
        "Seconds since the last heartbeat of each running worker seen within a day, on the "
        "database's clock.",
        labels=["worker"],
    )
    for w in status.workers or ():
        last_seen.add_metric([w.id], seconds_since(w.last_seen, status.observed.at))
    return [live, last_seen]


def visible(families: Iterable[Metric], tenant: str | None) -> Iterator[Metric]:
    """``families`` with only the series of ``tenant`` and the workers' (None: all)."""
    for family in families:
        if tenant is None or family.name in TENANT_FREE:
            yield family
            continue
        kept = Metric(family.name, family.documentation, family.type, family.unit)
        kept.samples = [s for s in family.samples if s.labels.get("tenant") == tenant]
        yield kept


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(families: Iterable[Metric], *, tenant: str | None) -> bytes:
    """The Prometheus text format of ``families``, as ``tenant`` may see them (None: all)."""
    return generate_latest(_Families(visible(families, tenant)))

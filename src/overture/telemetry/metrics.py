"""Prometheus series counted by this process: what its transactions, its worker and its webhook
route did, each labelled with the process's ``worker`` id.

    metrics = Metrics(worker=worker_id)
    store.observers.append(metrics)       # runs started, finished, retried; deferrals
    Worker(store, registry, metrics=metrics, ...)

Counts are per process and start at zero with it, so never add up raw counters across
processes (a restarted process starts again from zero and the sum falls): add up their
increases, ``sum(increase(overture_runs_started_total[1h]))``, or their rates,
``sum by (tenant) (rate(...[5m]))``; PromQL's ``increase``/``rate`` see through each process's
resets. What every process reads the same from the database (queue depths, unfinished runs,
dead letters) is not here: ``telemetry.gauges`` builds it per scrape. The registry is the
instance's own, never ``prometheus_client``'s global one, so two stores or two test servers in
one process never share counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from overture.core import events as ev
from overture.core.advance import Transition
from overture.settings import SettingsInvalid

disable_created_metrics()  # type: ignore[no-untyped-call]
"""No ``*_created`` series: a counter's start time doubles the series for what Prometheus's own
reset detection already does (process-wide: prometheus_client keeps this setting globally)."""

STEP_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0
)  # fmt: skip
"""Seconds: from a cache hit or a quick tool call (5 ms) to a long agent turn (10 min)."""
RUN_BUCKETS = (
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 3 * 3600.0, 6 * 3600.0,
    24 * 3600.0,
)  # fmt: skip
"""Seconds: a run spans its steps, their retries and backoffs, and its waits (up to a day)."""

FINISHED_AS: dict[type[ev.Event], str] = {
    ev.RunSucceeded: "succeeded",
    ev.RunFailed: "failed",
    ev.RunCancelled: "cancelled",
    ev.CompensationSucceeded: "compensated",
    ev.CompensationFailed: "failed",
}
"""The events that end a run, and the status each ends it in (``core.state``): a run that
fails with compensations ends with a compensation event, never ``RunFailed``."""
UNKNOWN_HANDLER = "unknown"
"""The ``handler`` label where the transition does not say (it always does once written)."""


class Metrics:
    """This process's counters and histograms; a ``StoreObserver``, and told by the worker and
    the webhook route what they did. Thread-safe: the SQLite store calls it from its writer
    thread."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.registry = CollectorRegistry()
        registry = self.registry
        self._runs_started = Counter(
            "overture_runs_started_total",
            "Runs started (by a request, an event, a schedule or a parent run).",
            ["worker", "workflow", "tenant"],
            registry=registry,
        )
        self._runs_finished = Counter(
            "overture_runs_finished_total",
            "Runs that reached a final status: succeeded, failed, cancelled or compensated.",
            ["worker", "workflow", "tenant", "status"],
            registry=registry,
        )
        self._run_duration = Histogram(
            "overture_run_duration_seconds",
            "Seconds from a run's start to its final status.",
            ["worker", "workflow", "tenant", "status"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self._scheduled = Counter(
            "overture_steps_scheduled_total",
            "Attempts queued: first attempts, retries, reruns after a crash, compensations.",
            ["worker", "workflow", "tenant", "handler"],
            registry=registry,
        )
        self._retries = Counter(
            "overture_step_retries_total",
            "Attempts queued again because the previous one failed with a retryable error.",
            ["worker", "workflow", "tenant", "handler"],
            registry=registry,
        )
        self._lease_expiries = Counter(
            "overture_lease_expiries_total",
            "Attempts whose worker stopped heartbeating (crashed, hung or cut off).",
            ["worker", "workflow", "tenant"],
            registry=registry,
        )
        self._dead_lettered = Counter(
            "overture_steps_dead_lettered_total",
            "Steps that failed for good and went to the dead-letter queue.",
            ["worker", "workflow", "tenant", "handler"],
            registry=registry,
        )
        self._deferrals = Counter(
            "overture_flow_deferrals_total",
            "Claim decisions that left a due attempt queued: slot (concurrency), rate or circuit.",
            ["worker", "tenant", "reason"],
            registry=registry,
        )
        self._executions = Counter(
            "overture_step_executions_total",
            "Attempts this worker ran, by how they ended: succeeded, failed or cancelled.",
            ["worker", "handler", "tenant", "status"],
            registry=registry,
        )
        self._step_duration = Histogram(
            "overture_step_duration_seconds",
            "Seconds an attempt ran in this worker, by handler and tenant.",
            ["worker", "handler", "tenant"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self._heartbeats = Counter(
            "overture_worker_heartbeats_total",
            "Heartbeats this worker recorded (its liveness, as the database saw it).",
            ["worker"],
            registry=registry,
        )
        self._webhooks = Counter(
            "overture_webhook_verifications_total",
            "Webhook deliveries checked: verified, or refused with the reason's code.",
            ["worker", "source", "tenant", "result"],
            registry=registry,
        )
        # No heartbeat series until a worker records one: a process without a worker (an API
        # server with --workers 0) must not show a worker heartbeating zero times.

    # --- StoreObserver ---------------------------------------------------------------------
    def recorded(self, transitions: Sequence[Transition]) -> None:
        """Count runs started and finished, attempts queued, retried and dead-lettered, and lost
        leases."""
        for t in transitions:
            state, worker = t.state, self.worker
            for job in t.schedule:
                self._scheduled.labels(worker, state.workflow, state.tenant, job.uses).inc()
            for (step_id, compensation), _ in t.dead:
                handler = t.handler_of(step_id, compensation) or UNKNOWN_HANDLER
                self._dead_lettered.labels(worker, state.workflow, state.tenant, handler).inc()
            for event in t.events:
                if isinstance(event, ev.RunStarted):
                    self._runs_started.labels(worker, state.workflow, state.tenant).inc()
                elif isinstance(event, ev.StepRetryScheduled):
                    if event.reason == "error":
                        handler = t.handler_of(event.step_id, event.compensation) or UNKNOWN_HANDLER
                        self._retries.labels(worker, state.workflow, state.tenant, handler).inc()
                elif isinstance(event, ev.StepLeaseExpired):
                    self._lease_expiries.labels(worker, state.workflow, state.tenant).inc()
                elif (status := FINISHED_AS.get(type(event))) is not None:
                    labels = (worker, state.workflow, state.tenant, status)
                    self._runs_finished.labels(*labels).inc()
                    if state.created_at is not None:
                        seconds = (event.at - state.created_at).total_seconds()
                        self._run_duration.labels(*labels).observe(max(seconds, 0.0))

    def deferred(self, deferrals: Sequence[tuple[str, str]]) -> None:
        """Count ``(tenant, reason)`` of each due attempt a claim left queued: once per claim
        decision, so a job held for a minute and looked at by ten claims counts ten times."""
        for tenant, reason in deferrals:
            self._deferrals.labels(self.worker, tenant, reason).inc()

    # --- the worker and the API ------------------------------------------------------------
    def attempt_finished(self, *, handler: str, tenant: str, status: str, seconds: float) -> None:
        """One attempt this worker ran ended (``succeeded``, ``failed`` or ``cancelled``)."""
        self._executions.labels(self.worker, handler, tenant, status).inc()
        self._step_duration.labels(self.worker, handler, tenant).observe(max(seconds, 0.0))

    def heartbeat(self) -> None:
        """This worker recorded a heartbeat."""
        self._heartbeats.labels(self.worker).inc()

    def webhook_verified(self, *, source: str, tenant: str, result: str) -> None:
        """A delivery to ``source`` was ``verified``, or refused with ``result`` as the code."""
        self._webhooks.labels(self.worker, source, tenant, result).inc()


def serve_metrics(metrics: Metrics, *, host: str, port: int) -> Callable[[], None]:
    """Serve ``metrics`` without a key at ``http://host:port/metrics`` from a thread of this
    process (``overture worker --metrics-port``); returns what stops it."""
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except (OSError, OverflowError) as error:  # taken, not allowed, or not a port number
        raise SettingsInvalid(f"metrics_port: cannot listen on {host}:{port}: {error}") from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop

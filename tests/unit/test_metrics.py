"""``telemetry.metrics`` counts what committed transitions did (built here with the pure engine,
as both stores build them), and ``telemetry.gauges`` shows each tenant only its own series."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from tests.support.prometheus import Sample, sample, samples

from overture.core import events as ev
from overture.core.advance import Transition, advance
from overture.core.events import ErrorInfo
from overture.core.loader import parse_workflow
from overture.core.model import Workflow
from overture.settings import SETTINGS, Settings, SettingsInvalid
from overture.status import status_of
from overture.store.records import (
    CircuitRecord,
    Observation,
    QueueGauge,
    RunGauge,
    WorkerRecord,
)
from overture.telemetry.gauges import TENANT_FREE, exposition, shared_gauges
from overture.telemetry.metrics import UNKNOWN_HANDLER, Metrics, serve_metrics
from overture.testing import EPOCH

FLAKY = parse_workflow(
    textwrap.dedent(
        """
        name: flaky
        steps:
          - id: call
            uses: agent
            retry: {max_attempts: 3, initial: 1s, jitter: 0}
        """
    )
)
SAGA = parse_workflow(
    textwrap.dedent(
        """
        name: saga
        steps:
          - {id: book, uses: booker, compensate: {uses: unbook}}
          - {id: pay, uses: payer, depends_on: [book]}
        """
    )
)
SECRET_PLAN = parse_workflow(
    textwrap.dedent(
        """
        name: secret-plan
        steps:
          - {id: scheme, uses: classified}
        """
    )
)
RETRYABLE = ErrorInfo(code="overloaded", message="try later", retryable=True)
FATAL = ErrorInfo(code="declined", message="no", retryable=False)


@dataclass
class Run:
    """One run moved by the pure engine; every transition is kept, as a store commits it."""

    workflow: Workflow
    tenant: str
    run_id: str = "run-1"
    now: datetime = EPOCH
    transitions: list[Transition] = field(default_factory=list)

    def __post_init__(self) -> None:
        started = ev.RunStarted(
            at=self.now,
            run_id=self.run_id,
            workflow=self.workflow.name,
            version=1,
            input={},
            tenant=self.tenant,
        )
        self._advance([started])

    def _advance(self, incoming: Sequence[ev.Event]) -> Transition:
        state = self.transitions[-1].state if self.transitions else None
        t = advance(self.workflow, state, incoming, self.now)
        self.transitions.append(t)
        return t

    def queued(self) -> list[tuple[str, int, bool]]:
        return [(j.step_id, j.attempt, j.compensation) for j in self.transitions[-1].schedule]

    def attempt(self, step: str, result: ErrorInfo | None = None, *, comp: bool = False) -> None:
        """Ten seconds on, start the step's queued attempt and end it (failed with ``result``)."""
        self.now += timedelta(seconds=10)
        attempt = max(a for s, a, c in self.queued() if s == step and c == comp)
        began = ev.StepStarted(at=self.now, step_id=step, attempt=attempt, compensation=comp)
        ended: ev.Event = (
            ev.StepSucceeded(
                at=self.now, step_id=step, attempt=attempt, output={}, compensation=comp
            )
            if result is None
            else ev.StepFailed(
                at=self.now, step_id=step, attempt=attempt, error=result, compensation=comp
            )
        )
        self._advance([began, ended])

    def lose_lease(self, step: str) -> None:
        self.now += timedelta(seconds=10)
        (attempt,) = [a for s, a, _ in self.queued() if s == step]
        self._advance([ev.StepStarted(at=self.now, step_id=step, attempt=attempt)])
        self._advance([ev.StepLeaseExpired(at=self.now, step_id=step, attempt=attempt)])


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, {"worker": "w1", **labels})
    return 0.0 if found is None else found


def test_a_run_that_succeeds_after_two_retries() -> None:
    run = Run(FLAKY, "acme")
    run.attempt("call", RETRYABLE)
    run.attempt("call", RETRYABLE)
    run.attempt("call")
    metrics = Metrics(worker="w1")

    for t in run.transitions:  # one commit each, as the stores notify
        metrics.recorded([t])

    assert value(metrics, "overture_runs_started_total", workflow="flaky", tenant="acme") == 1
    retries = {"workflow": "flaky", "tenant": "acme", "handler": "agent"}
    assert value(metrics, "overture_step_retries_total", **retries) == 2
    assert value(metrics, "overture_steps_scheduled_total", **retries) == 3
    done = {"workflow": "flaky", "tenant": "acme", "status": "succeeded"}
    assert value(metrics, "overture_runs_finished_total", **done) == 1
    assert value(metrics, "overture_run_duration_seconds_count", **done) == 1
    assert value(metrics, "overture_run_duration_seconds_sum", **done) == 30.0
    failed = {**done, "status": "failed"}
    assert value(metrics, "overture_runs_finished_total", **failed) == 0


def test_a_run_that_fails_for_good_counts_as_failed_without_a_retry() -> None:
    run = Run(FLAKY, "acme")
    run.attempt("call", FATAL)
    metrics = Metrics(worker="w1")

    metrics.recorded(run.transitions)  # several transitions in one commit

    failed = {"workflow": "flaky", "tenant": "acme", "status": "failed"}
    assert value(metrics, "overture_runs_finished_total", **failed) == 1
    retries = {"workflow": "flaky", "tenant": "acme", "handler": "agent"}
    assert value(metrics, "overture_step_retries_total", **retries) == 0
    assert value(metrics, "overture_steps_dead_lettered_total", **retries) == 1


def test_a_step_dead_lettered_after_its_retries_is_counted_once_with_its_handler() -> None:
    run = Run(FLAKY, "acme")
    for _ in range(3):
        run.attempt("call", RETRYABLE)
    assert run.transitions[-1].dead  # the third retryable failure was the last allowed
    metrics = Metrics(worker="w1")

    for t in run.transitions:
        metrics.recorded([t])

    dead = {"workflow": "flaky", "tenant": "acme", "handler": "agent"}
    assert value(metrics, "overture_steps_dead_lettered_total", **dead) == 1


def test_a_dead_letter_is_counted_with_its_handler_by_any_process() -> None:
    """The attempt was queued by another process (an API server): the transition that
    dead-letters it still names the step's handler, from the workflow."""
    run = Run(FLAKY, "acme")
    run.attempt("call", FATAL)
    metrics = Metrics(worker="w1")

    metrics.recorded(run.transitions[-1:])

    dead = {"workflow": "flaky", "tenant": "acme"}
    assert value(metrics, "overture_steps_dead_lettered_total", **dead, handler="agent") == 1
    unknown = value(metrics, "overture_steps_dead_lettered_total", **dead, handler=UNKNOWN_HANDLER)
    assert unknown == 0


def test_a_compensated_run_finishes_as_compensated() -> None:
    run = Run(SAGA, "globex")
    run.attempt("book")
    run.attempt("pay", FATAL)
    assert run.queued() == [("book", 1, True)]
    run.attempt("book", comp=True)
    assert run.transitions[-1].state.status == "compensated"
    metrics = Metrics(worker="w1")

    metrics.recorded(run.transitions)

    done = {"workflow": "saga", "tenant": "globex"}
    assert value(metrics, "overture_runs_finished_total", **done, status="compensated") == 1
    assert value(metrics, "overture_runs_finished_total", **done, status="failed") == 0


def test_a_lost_lease_is_counted_and_its_rerun_is_not_a_retry() -> None:
    run = Run(FLAKY, "acme")
    run.lose_lease("call")
    metrics = Metrics(worker="w1")

    metrics.recorded(run.transitions)

    labels = {"workflow": "flaky", "tenant": "acme"}
    assert value(metrics, "overture_lease_expiries_total", **labels) == 1
    assert value(metrics, "overture_step_retries_total", **labels, handler="agent") == 0
    reasons = [e.reason for e in run.transitions[-1].events if isinstance(e, ev.StepRetryScheduled)]
    assert reasons == ["crash"]  # requeued, but a crash is not a retry after an error


def test_worker_and_webhook_counts() -> None:
    metrics = Metrics(worker="w1")
    heartbeats = {"worker": "w1"}
    # No series before a worker heartbeats: an API process without one shows none at all.
    assert metrics.registry.get_sample_value("overture_worker_heartbeats_total", heartbeats) is None

    metrics.deferred([("acme", "slot"), ("acme", "slot"), ("globex", "rate")])
    metrics.heartbeat()
    metrics.attempt_finished(handler="agent", tenant="acme", status="succeeded", seconds=0.02)
    metrics.attempt_finished(handler="agent", tenant="acme", status="failed", seconds=120.0)
    metrics.webhook_verified(source="gh", tenant="acme", result="verified")
    metrics.webhook_verified(source="gh", tenant="acme", result="bad_signature")

    assert value(metrics, "overture_flow_deferrals_total", tenant="acme", reason="slot") == 2
    assert value(metrics, "overture_flow_deferrals_total", tenant="globex", reason="rate") == 1
    assert value(metrics, "overture_worker_heartbeats_total") == 1
    ran = {"handler": "agent", "tenant": "acme"}
    assert value(metrics, "overture_step_executions_total", **ran, status="succeeded") == 1
    assert value(metrics, "overture_step_executions_total", **ran, status="failed") == 1
    assert value(metrics, "overture_step_duration_seconds_count", **ran) == 2
    assert value(metrics, "overture_step_duration_seconds_bucket", **ran, le="0.025") == 1
    assert value(metrics, "overture_step_duration_seconds_bucket", **ran, le="600.0") == 2
    hooks = {"source": "gh", "tenant": "acme"}
    assert value(metrics, "overture_webhook_verifications_total", **hooks, result="verified") == 1
    refused = value(
        metrics, "overture_webhook_verifications_total", **hooks, result="bad_signature"
    )
    assert refused == 1


def test_two_instances_never_share_counts() -> None:
    first, second = Metrics(worker="w1"), Metrics(worker="w1")
    first.heartbeat()
    assert value(second, "overture_worker_heartbeats_total") == 0


# --- the exposition --------------------------------------------------------------------------

AT = EPOCH + timedelta(hours=1)
SEEN = Observation(
    at=AT,
    queues=(
        QueueGauge(
            queue="agent",
            tenant="acme",
            ready=3,
            delayed=1,
            oldest_ready_at=AT - timedelta(seconds=42),
            running=4,
        ),
        QueueGauge(queue="agent", tenant="globex", ready=0, delayed=2, oldest_ready_at=None),
    ),
    runs=(RunGauge(workflow="secret-plan", tenant="globex", status="running", count=5),),
    dead_letters=(("acme", 2), ("globex", 1)),
)


def worker(worker_id: str, last_seen: datetime, stopped: bool = False) -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        host="h",
        pid=1,
        concurrency=1,
        handlers=(),
        started_at=EPOCH,
        last_seen=last_seen,
        stopped_at=last_seen if stopped else None,
    )


WORKERS = [
    worker("live", AT - timedelta(seconds=5)),
    worker("silent", AT - timedelta(minutes=5)),
    worker("gone", AT - timedelta(seconds=1), stopped=True),
    worker("crashed-long-ago", AT - timedelta(days=2)),  # never said it stopped
]


def circuit(key: str, status: str) -> CircuitRecord:
    return CircuitRecord(
        tenant="globex",
        key=key,
        status=status,
        failures=5,
        threshold=5,
        window=60,
        cooldown=30,
        opened_at=AT,
        open_until=AT,
        updated_at=AT,
    )


CIRCUITS = [circuit("host:api.example.com", "open"), circuit("host:fine.example.com", "closed")]


def scrape(metrics: Metrics, tenant: str | None) -> dict[Sample, float]:
    gauges = shared_gauges(status_of(SEEN, WORKERS, CIRCUITS, tenant=None))
    families = [*metrics.registry.collect(), *gauges]
    return samples(exposition(families, tenant=tenant).decode())


def busy_metrics() -> Metrics:
    """Two tenants whose workflows and handlers have different names, so a series of one
    showing up in the other's scrape is visible by its name alone."""
    metrics = Metrics(worker="w1")
    for tenant, workflow, handler in (
        ("acme", FLAKY, "agent"),
        ("globex", SECRET_PLAN, "classified"),
    ):
        run = Run(workflow, tenant)
        run.attempt(workflow.steps[0].id, FATAL)
        metrics.recorded(run.transitions)
        metrics.attempt_finished(handler=handler, tenant=tenant, status="failed", seconds=1)
        metrics.deferred([(tenant, "slot")])
    metrics.heartbeat()
    return metrics


def test_everything_is_shown_to_the_operator() -> None:
    seen = scrape(busy_metrics(), None)

    assert seen[sample("overture_queue_depth", queue="agent", tenant="acme")] == 3
    assert seen[sample("overture_queue_delayed", queue="agent", tenant="globex")] == 2
    assert seen[sample("overture_queue_running", queue="agent", tenant="acme")] == 4
    assert seen[sample("overture_queue_running", queue="agent", tenant="globex")] == 0
    assert seen[sample("overture_queue_oldest_age_seconds", queue="agent", tenant="acme")] == 42
    assert seen[sample("overture_queue_oldest_age_seconds", queue="agent", tenant="globex")] == 0
    assert seen[sample("overture_dead_letters", tenant="globex")] == 1
    active = sample(
        "overture_active_runs", workflow="secret-plan", tenant="globex", status="running"
    )
    assert seen[active] == 5
    assert seen[sample("overture_circuit_state", key="host:api.example.com", tenant="globex")] == 2
    assert (
        sample("overture_circuit_state", key="host:fine.example.com", tenant="globex") not in seen
    )
    assert seen[sample("overture_workers_live")] == 1
    assert seen[sample("overture_worker_last_seen_seconds", worker="silent")] == 300
    assert sample("overture_worker_last_seen_seconds", worker="gone") not in seen
    assert sample("overture_worker_last_seen_seconds", worker="crashed-long-ago") not in seen
    started = sample(
        "overture_runs_started_total", worker="w1", workflow="secret-plan", tenant="globex"
    )
    assert seen[started] == 1
    ran = sample(
        "overture_step_duration_seconds_count", worker="w1", handler="classified", tenant="globex"
    )
    assert seen[ran] == 1


def test_a_tenant_sees_its_own_series_and_the_workers_only() -> None:
    seen = scrape(busy_metrics(), "acme")

    assert seen[sample("overture_queue_depth", queue="agent", tenant="acme")] == 3
    assert seen[sample("overture_dead_letters", tenant="acme")] == 2
    assert seen[sample("overture_workers_live")] == 1
    assert seen[sample("overture_worker_heartbeats_total", worker="w1")] == 1
    started = sample("overture_runs_started_total", worker="w1", workflow="flaky", tenant="acme")
    assert seen[started] == 1
    held = sample("overture_flow_deferrals_total", worker="w1", tenant="acme", reason="slot")
    assert seen[held] == 1
    dead = {"worker": "w1", "workflow": "flaky", "tenant": "acme", "handler": "agent"}
    assert seen[sample("overture_steps_dead_lettered_total", **dead)] == 1
    for name, labels in seen:
        found = dict(labels)
        assert found.get("tenant", "acme") == "acme", name
        assert found.get("workflow", "flaky") == "flaky", name  # globex's is secret-plan
        assert found.get("handler", "agent") == "agent", name  # globex's is classified
        if "tenant" not in found:  # only the workers' series belong to no tenant
            assert any(name.startswith(family) for family in TENANT_FREE), name


def test_a_metrics_port_beyond_the_last_one_is_refused_naming_the_setting() -> None:
    with pytest.raises(SettingsInvalid, match="metrics_port must be <= 65535"):
        SETTINGS["metrics_port"].parse("70000", "OVERTURE_METRICS_PORT")
    # Given in code, past the settings: the socket layer's OverflowError, said the same way.
    with pytest.raises(SettingsInvalid, match=r"metrics_port: cannot listen on 127\.0\.0\.1:70000"):
        serve_metrics(Metrics(worker="w1"), host="127.0.0.1", port=70000)
    assert Settings().metrics_host == "127.0.0.1"  # never the API's host unless told


def test_no_created_series_double_the_counters() -> None:
    from prometheus_client import generate_latest

    metrics = Metrics(worker="w1")
    metrics.attempt_finished(handler="h", tenant="t", status="succeeded", seconds=0.1)
    text = generate_latest(metrics.registry).decode()
    assert "overture_step_executions_total{" in text
    assert "_created" not in text

"""The pure flow-control decisions: gates rendered at scheduling, admission at claim time,
circuits after outcomes, and the claim order between tenants."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from overture.core import admission
from overture.core import commands as cmd
from overture.core import events as ev
from overture.core.admission import (
    BucketState,
    Candidate,
    CircuitState,
    FlowState,
    TenantLimits,
    admit,
    circuit_after,
)
from overture.core.decide import decide
from overture.core.events import ErrorInfo
from overture.core.gates import NO_GATES, Breaker, Bucket, Gates, Slot
from overture.core.loader import parse_workflow
from overture.core.model import Workflow
from overture.core.state import fold
from overture.errors import WorkflowInvalid
from overture.store.flow import failure_counts, fair_order

NOW = 1_000_000.0
T0 = datetime(2026, 11, 21, tzinfo=UTC)


def job(n: int, gates: Gates = NO_GATES, tenant: str = "t", run: str | None = None) -> Candidate:
    return Candidate(n, tenant, run or f"run-{n}", gates)


def only_slot(key: str = "k", limit: int = 1, scope: admission.SlotScope = "job") -> Gates:
    return Gates(slots=(Slot(key, limit, scope),))


# --- gates, rendered when the step is scheduled ---------------------------------------------
def scheduled_job(workflow: Workflow, data: dict[str, object]) -> cmd.Job:
    state = fold([ev.RunStarted(at=T0, run_id="r1", workflow=workflow.name, version=1, input=data)])
    (command,) = decide(workflow, state, T0)
    assert isinstance(command, cmd.ScheduleStep), command
    return command.job


def test_flow_keys_are_rendered_from_the_run_when_the_step_is_scheduled() -> None:
    workflow = parse_workflow(
        """
name: book
concurrency: {key: "trip-${input.trip}", limit: 2}
steps:
  - id: pay
    uses: echo
    concurrency: {key: "flight-${input.flight}", limit: 1}
    rate_limit: {key: "user:${input.user}:agent:clo", rate: 10/s, burst: 20}
    circuit: payments
    max_in_flight: 3
"""
    )
    gates = scheduled_job(workflow, {"flight": 42, "user": "u1", "trip": "t9"}).gates
    assert gates.slots == (
        Slot("trip-t9", 2, "run"),
        Slot("flight-42", 1, "job"),
        Slot("agent:echo", 3, "job"),
    )
    assert gates.buckets == (Bucket("user:u1:agent:clo", 10.0, 20.0),)
    assert gates.breaker == Breaker("payments", 5, 30.0, 30.0)
    assert Gates.from_data(gates.to_data()) == gates


def test_http_steps_get_a_circuit_per_host_unless_turned_off() -> None:
    on = parse_workflow(
        "name: a\nsteps:\n  - {id: s, uses: http, with: {url: 'https://API.example.com/x'}}"
    )
    off = parse_workflow(
        "name: b\nsteps:\n  - {id: s, uses: http, circuit: false, with: {url: 'https://x.io'}}"
    )
    assert scheduled_job(on, {}).gates.breaker == Breaker("host:api.example.com")
    assert scheduled_job(off, {}).gates == Gates()


def test_a_key_that_renders_to_nothing_fails_the_step_unrun() -> None:
    workflow = parse_workflow(
        "name: c\nsteps:\n  - {id: s, uses: echo, concurrency: {key: '${input.missing}'}}"
    )
    state = fold([ev.RunStarted(at=T0, run_id="r", workflow="c", version=1, input={"a": 1})])
    command = decide(workflow, state, T0)[0]  # then the run fails
    assert isinstance(command, cmd.FailStep)
    assert command.error.retryable is False
    assert "concurrency key" in command.error.message


def test_a_step_without_controls_carries_no_gates() -> None:
    workflow = parse_workflow("name: d\nsteps:\n  - {id: s, uses: echo}")
    assert not scheduled_job(workflow, {}).gates


# --- slots ---------------------------------------------------------------------------------
def test_a_full_slot_defers_the_job_and_names_the_key_it_waits_for() -> None:
    jobs = [job(n, only_slot("k", 2)) for n in range(1, 5)]
    out = admit(jobs, FlowState(), NOW, limit=10)
    assert out.admitted == [1, 2]
    assert out.deferred[3] == admission.Deferred(NOW + admission.RECHECK, "k", "slot")
    assert [a.job_id for a in out.acquired] == [1, 2]


def test_holders_stored_by_other_claims_count() -> None:
    state = FlowState(holders={("t", "k"): 1})
    out = admit([job(1, only_slot())], state, NOW, limit=1)
    assert out.admitted == [] and 1 in out.deferred


def test_slots_are_per_tenant() -> None:
    jobs = [job(1, only_slot(), tenant="a"), job(2, only_slot(), tenant="b")]
    assert admit(jobs, FlowState(), NOW, limit=5).admitted == [1, 2]


def test_a_run_holds_its_workflow_slot_for_all_its_steps() -> None:
    gates = only_slot("flight", 1, "run")
    state = FlowState(holders={("t", "flight"): 1}, run_holders={("t", "flight", "r1")})
    out = admit([job(1, gates, run="r1"), job(2, gates, run="r2")], state, NOW, limit=5)
    assert out.admitted == [1], "the holding run goes on; another run waits"
    assert out.acquired == [], "a run takes its slot once"


def test_a_job_takes_every_slot_or_none() -> None:
    gates = Gates(slots=(Slot("a", 5), Slot("b", 1)))
    state = FlowState(holders={("t", "b"): 1})
    out = admit([job(1, gates)], state, NOW, limit=1)
    assert out.acquired == [] and out.deferred[1].blocked_on == "b"


# --- buckets -------------------------------------------------------------------------------
def test_a_bucket_lets_a_burst_through_then_spaces_the_rest_by_its_rate() -> None:
    gates = Gates(buckets=(Bucket("api", 10.0, 3.0),))
    out = admit([job(n, gates) for n in range(1, 7)], FlowState(), NOW, limit=10)
    assert out.admitted == [1, 2, 3]
    waits = [round(out.deferred[n].run_at - NOW, 6) for n in (4, 5, 6)]
    assert waits == [0.1, 0.2, 0.3], "each deferred job waits one more token"
    assert out.buckets[("t", "api")].tokens == pytest.approx(0.0)
    later = admit([job(7, gates)], FlowState(buckets=dict(out.buckets)), NOW, limit=10)
    assert later.deferred[7].run_at == pytest.approx(NOW + 0.4), "it queues behind them"


def test_a_bucket_refills_with_time_up_to_its_burst() -> None:
    bucket = Bucket("api", 2.0, 4.0)
    assert BucketState(0.0, NOW - 1.0).refilled(bucket, NOW) == 2.0
    assert BucketState(0.0, NOW - 100).refilled(bucket, NOW) == 4.0
    state = FlowState(buckets={("t", "api"): BucketState(0.5, NOW)})
    out = admit([job(1, Gates(buckets=(bucket,)))], state, NOW, limit=1)
    assert out.deferred[1].run_at == pytest.approx(NOW + 0.25)
    assert out.deferred[1].reason == "rate"


def test_tenant_limits_apply_to_every_job() -> None:
    limits = TenantLimits(rate=1.0, max_in_flight=2)
    jobs = [job(n) for n in range(1, 4)]
    out = admit(jobs, FlowState(), NOW, limit=10, limits=limits)
    assert out.admitted == [1]
    assert out.deferred[2].reason == "rate"


# --- circuits ------------------------------------------------------------------------------
BREAKER = Breaker("agent", threshold=3, window=30.0, cooldown=10.0)


def test_a_circuit_opens_after_the_threshold_of_failures_within_the_window() -> None:
    c = CircuitState()
    c = circuit_after(c, BREAKER, 1, True, NOW)
    c = circuit_after(c, BREAKER, 2, True, NOW + 40)  # the first is out of the window now
    c = circuit_after(c, BREAKER, 3, True, NOW + 41)
    assert c.status == "closed"
    c = circuit_after(c, BREAKER, 4, True, NOW + 42)
    assert c.status == "open" and c.open_until == NOW + 52


def test_an_open_circuit_parks_its_jobs_until_the_cooldown_ends() -> None:
    gates = Gates(breaker=BREAKER)
    state = FlowState(circuits={("t", "agent"): CircuitState("open", (), NOW, NOW + 5)})
    out = admit([job(1, gates)], state, NOW, limit=1)
    parked = admission.CIRCUIT_MARK + "agent"
    assert out.deferred[1] == admission.Deferred(NOW + 5, parked, "circuit")


def test_after_the_cooldown_one_probe_goes_through_and_its_outcome_decides() -> None:
    gates = Gates(breaker=BREAKER)
    state = FlowState(circuits={("t", "agent"): CircuitState("open", (), NOW - 20, NOW - 1)})
    out = admit([job(1, gates), job(2, gates)], state, NOW, limit=5)
    assert out.admitted == [1]
    assert out.deferred[2].reason == "circuit"
    probing = out.circuits[("t", "agent")]
    assert probing.status == "half_open" and probing.probe == 1
    assert circuit_after(probing, BREAKER, 1, False, NOW + 1).status == "closed"
    assert circuit_after(probing, BREAKER, 1, True, NOW + 1).status == "open"


def test_a_probe_that_died_does_not_block_the_circuit() -> None:
    crashed = CircuitState("half_open", (), NOW - 20, NOW - 10, probe=7, probe_running=False)
    state = FlowState(circuits={("t", "agent"): crashed})
    out = admit([job(1, Gates(breaker=BREAKER))], state, NOW, limit=1)
    assert out.admitted == [1]


def test_only_failures_a_downstream_causes_count() -> None:
    assert failure_counts(None) is False
    assert failure_counts(ErrorInfo(code="http_503", message="")) is True
    assert failure_counts(ErrorInfo(code="timeout", message="", retryable=False)) is True
    assert failure_counts(ErrorInfo(code="http_404", message="", retryable=False)) is None


# --- claim order ---------------------------------------------------------------------------
def test_claim_order_is_priority_then_tenants_in_turn_then_fifo() -> None:
    rows = [
        (1, "big", "r", 100, 1),
        (2, "big", "r", 100, 2),
        (3, "big", "r", 100, 3),
        (4, "small", "r", 100, 9),
        (5, "small", "r", 10, 10),
    ]
    assert [r[0] for r in fair_order(rows)] == [5, 1, 4, 2, 3]


def test_admission_stops_at_the_limit_and_leaves_the_rest_untouched() -> None:
    out = admit([job(n) for n in range(1, 6)], FlowState(), NOW, limit=2)
    assert out.admitted == [1, 2] and out.deferred == {}


# --- what a review found -------------------------------------------------------------------
def test_a_run_never_waits_on_its_own_slot_when_a_step_names_the_same_key() -> None:
    gates = Gates(slots=(Slot("trip", 1, "run"), Slot("trip", 1, "job")))
    state = FlowState(holders={("t", "trip"): 1}, run_holders={("t", "trip", "r1")})
    out = admit([job(1, gates, run="r1"), job(2, gates, run="r2")], state, NOW, limit=5)
    assert out.admitted == [1], "the holding run's step goes on"
    assert out.deferred[2].blocked_on == "trip"


def test_no_rate_defers_a_job_past_the_horizon() -> None:
    gates = Gates(buckets=(Bucket("slow", 1e-12, 1.0),))
    state = FlowState(buckets={("t", "slow"): BucketState(0.0, NOW)})
    out = admit([job(1, gates)], state, NOW, limit=1)
    assert out.deferred[1].run_at == NOW + admission.MAX_DEFER


def test_a_bucket_written_later_by_another_claim_keeps_its_time() -> None:
    bucket = Bucket("api", 10.0, 5.0)
    state = FlowState(buckets={("t", "api"): BucketState(2.0, NOW + 0.5)})
    out = admit([job(1, Gates(buckets=(bucket,)))], state, NOW, limit=1)
    assert out.buckets[("t", "api")] == BucketState(1.0, NOW + 0.5, 0.0), "no double refill"


@pytest.mark.parametrize(
    ("key", "why"),
    [("a\x00b", "NUL"), ("overture:tenant", "Overture's")],
)
def test_keys_the_database_cannot_keep_or_overture_reserves_fail_the_step(
    key: str, why: str
) -> None:
    workflow = parse_workflow(
        "name: k\nsteps:\n  - {id: s, uses: echo, concurrency: {key: '${input.k}'}}"
    )
    state = fold([ev.RunStarted(at=T0, run_id="r", workflow="k", version=1, input={"k": key})])
    command = decide(workflow, state, T0)[0]
    assert isinstance(command, cmd.FailStep) and why in command.error.message


@pytest.mark.parametrize("rate", ["1/99999999999999d", "2000000000/s"])
def test_rates_outside_a_sane_range_are_refused_when_the_workflow_loads(rate: str) -> None:
    text = f"name: r\nsteps:\n  - {{id: s, uses: echo, rate_limit: {{key: k, rate: '{rate}'}}}}"
    with pytest.raises(WorkflowInvalid, match="rate"):
        parse_workflow(text)


def test_a_workflows_concurrency_key_may_read_the_run_only() -> None:
    text = "name: x\nconcurrency: {key: '${steps.a.output.x}'}\nsteps:\n  - {id: a, uses: echo}\n"
    with pytest.raises(WorkflowInvalid, match=r"2:15: a workflow's concurrency key may read"):
        parse_workflow(text)

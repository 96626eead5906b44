"""decide(): which steps run, skip, retry, time out, fail, and how a failed run compensates."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from overture.core import commands as cmd
from overture.core import events as ev
from overture.core.decide import decide
from overture.core.events import ErrorInfo
from overture.core.model import Workflow
from overture.core.state import fold
from overture.testing import EPOCH

from .simulate import Simulation, started, succeed

BOOM = ErrorInfo(code="boom", message="downstream said no", retryable=False)
FLAKY = ErrorInfo(code="http_503", message="unavailable", retryable=True)


def workflow(*steps: dict[str, Any], **extra: Any) -> Workflow:
    return Workflow.model_validate({"name": "wf", "steps": list(steps), **extra})


def run(wf: Workflow, outcome: Any = succeed, input: Any = None, choose: Any = None) -> Simulation:
    sim = Simulation(wf, outcome, **({"choose": choose} if choose else {}))
    sim.start(input)
    return sim


def test_roots_are_scheduled_together_and_dependents_wait_for_all() -> None:
    wf = workflow(
        {"id": "a", "uses": "x"},
        {"id": "b", "uses": "x"},
        {"id": "join", "uses": "x", "depends_on": ["a", "b"]},
    )
    state = fold([ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={})])
    first = decide(wf, state, EPOCH)
    assert [c.job.step_id for c in first if isinstance(c, cmd.ScheduleStep)] == ["a", "b"]
    # a succeeds, b still running: join must not start
    history = [
        ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={}),
        *(cmd.to_event(c, EPOCH) for c in first),
        ev.StepStarted(at=EPOCH, step_id="a", attempt=1),
        ev.StepStarted(at=EPOCH, step_id="b", attempt=1),
        ev.StepSucceeded(at=EPOCH, step_id="a", attempt=1, output=1),
    ]
    assert decide(wf, fold(history), EPOCH) == []
    history.append(ev.StepSucceeded(at=EPOCH, step_id="b", attempt=1, output=2))
    (schedule,) = decide(wf, fold(history), EPOCH)
    assert isinstance(schedule, cmd.ScheduleStep) and schedule.job.step_id == "join"


def test_inputs_are_resolved_when_scheduled_and_recorded_in_the_event() -> None:
    wf = workflow(
        {"id": "fetch", "uses": "x", "with": {"user": "${input.user_id}"}},
        {"id": "use", "uses": "x", "with": {"got": "${steps.fetch.output.user}", "n": 2}},
    )
    sim = run(wf, input={"user_id": "u-7"})
    scheduled = {e.step_id: e.input for e in sim.events if isinstance(e, ev.StepScheduled)}
    assert scheduled == {"fetch": {"user": "u-7"}, "use": {"got": "u-7", "n": 2}}
    assert sim.state is not None and sim.state.output == {"use": {"got": "u-7", "n": 2}}


def test_a_with_template_naming_a_mapping_passes_the_whole_mapping() -> None:
    wf = workflow({"id": "task", "uses": "x", "with": "${input}"})
    state = fold([ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={"a": 1})])
    (schedule,) = decide(wf, state, EPOCH)
    assert isinstance(schedule, cmd.ScheduleStep) and schedule.job.input == {"a": 1}


def test_a_with_template_naming_something_else_fails_the_step_unrun() -> None:
    wf = workflow({"id": "task", "uses": "x", "with": "${input.n}"})
    state = fold([ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={"n": 3})])
    failed = decide(wf, state, EPOCH)[0]
    assert isinstance(failed, cmd.FailStep)
    assert failed.error.code == "bad_input" and "not a mapping" in failed.error.message


def test_secret_stays_a_reference_in_every_event() -> None:
    wf = workflow({"id": "call", "uses": "x", "with": {"auth": "Bearer ${secrets.TOKEN}"}})
    sim = run(wf)
    (scheduled,) = [e for e in sim.events if isinstance(e, ev.StepScheduled)]
    assert scheduled.input == {"auth": {"$concat": ["Bearer ", {"$secret": "TOKEN"}]}}


def test_false_condition_skips_the_step_and_its_dependents() -> None:
    wf = workflow(
        {"id": "check", "uses": "x", "with": {"tier": "${input.tier}"}},
        {"id": "upsell", "uses": "x", "when": "steps.check.output.tier == 'free'"},
        {"id": "email", "uses": "x", "depends_on": ["upsell"]},
        {"id": "log", "uses": "x", "depends_on": ["check"]},
    )
    sim = run(wf, input={"tier": "pro"})
    assert sim.state is not None
    assert sim.state.status == "succeeded"
    assert sim.state.step("upsell").status == "skipped"
    assert "condition is false" in (sim.state.step("upsell").reason or "")
    assert sim.state.step("email").status == "skipped"
    assert sim.state.step("email").reason == "dependency 'upsell' was skipped"
    assert started(sim.events) == ["check", "log"]


def test_true_condition_runs_the_step() -> None:
    wf = workflow({"id": "go", "uses": "x", "when": "input.n > 2 and not input.off"})
    sim = run(wf, input={"n": 3})
    assert started(sim.events) == ["go"]


def test_condition_that_cannot_be_evaluated_fails_the_step_without_running_it() -> None:
    wf = workflow({"id": "cmp", "uses": "x", "when": "input.n > 'a'"})
    sim = run(wf, input={"n": 3})
    assert sim.state is not None and sim.state.status == "failed"
    assert started(sim.events) == []
    assert "cannot compare" in (sim.state.error.message if sim.state.error else "")


def test_missing_input_fails_the_step_with_a_clear_error() -> None:
    wf = workflow({"id": "greet", "uses": "x", "with": {"to": "${input.name}"}})
    sim = run(wf, input={})
    assert sim.state is not None and sim.state.status == "failed"
    assert sim.state.failed_step == "greet"
    assert sim.state.error is not None and "name" in sim.state.error.message
    assert started(sim.events) == []


def test_retryable_failure_is_retried_with_growing_backoff_until_success() -> None:
    wf = workflow(
        {"id": "flaky", "uses": "x", "retry": {"max_attempts": 4, "initial": "1s", "jitter": False}}
    )
    attempts = iter([FLAKY, FLAKY, {"ok": True}])
    sim = run(wf, lambda job: next(attempts))
    assert sim.state is not None and sim.state.status == "succeeded"
    retries = [e for e in sim.events if isinstance(e, ev.StepRetryScheduled)]
    assert [(r.attempt, r.delay) for r in retries] == [(2, 1.0), (3, 2.0)]
    assert sim.state.step("flaky").attempt == 3


def test_retries_stop_at_max_attempts() -> None:
    wf = workflow({"id": "flaky", "uses": "x", "retry": {"max_attempts": 3, "initial": 0}})
    sim = run(wf, lambda job: FLAKY)
    assert sim.state is not None and sim.state.status == "failed"
    assert started(sim.events) == ["flaky"] * 3
    assert sim.state.error is not None
    assert sim.state.error.message == "step 'flaky' failed after 3 attempts: unavailable"


def test_non_retryable_codes_fail_at_once() -> None:
    wf = workflow(
        {"id": "pay", "uses": "x", "retry": {"max_attempts": 5, "non_retryable": ["http_503"]}}
    )
    sim = run(wf, lambda job: FLAKY)
    assert started(sim.events) == ["pay"]


def test_handler_retry_delay_replaces_the_backoff() -> None:
    wf = workflow({"id": "limited", "uses": "x", "retry": {"initial": "1s", "max": "2s"}})
    asked = ErrorInfo(code="http_429", message="slow down", retry_after=30.0)
    attempts = iter([asked, None])
    sim = run(wf, lambda job: next(attempts))
    (retry,) = [e for e in sim.events if isinstance(e, ev.StepRetryScheduled)]
    assert retry.delay == 30.0
    assert retry.run_at == retry.at + timedelta(seconds=30)


def test_defaults_apply_field_by_field_under_the_step_policy() -> None:
    wf = workflow(
        {"id": "a", "uses": "x", "retry": {"max_attempts": 2}},
        defaults={"retry": {"initial": "5s", "jitter": 0}, "timeout": "30s", "priority": 7},
    )
    policy = wf.retry_policy(wf.step("a"))
    assert (policy.max_attempts, policy.initial, policy.jitter) == (2, 5.0, 0.0)
    assert wf.timeout(wf.step("a")) == 30.0
    assert wf.priority(wf.step("a"), run_priority=None) == 7


def test_a_running_step_past_its_timeout_fails_as_retryable_timeout() -> None:
    wf = workflow({"id": "slow", "uses": "x", "timeout": "10s", "retry": {"max_attempts": 1}})
    history = [
        ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={}),
        ev.StepScheduled(at=EPOCH, step_id="slow", attempt=1, input={}, run_at=EPOCH),
        ev.StepStarted(at=EPOCH, step_id="slow", attempt=1),
    ]
    assert decide(wf, fold(history), EPOCH + timedelta(seconds=9)) == []
    commands = decide(wf, fold(history), EPOCH + timedelta(seconds=10))
    assert isinstance(commands[0], cmd.FailStep)
    assert commands[0].error.code == "timeout" and commands[0].error.retryable
    assert isinstance(commands[-1], cmd.FailRun)


def test_lost_worker_is_redelivered_within_the_crash_budget_then_fails() -> None:
    wf = workflow({"id": "crashy", "uses": "x", "retry": {"max_crashes": 2}})
    history: list[ev.Event] = [
        ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={}),
        ev.StepScheduled(at=EPOCH, step_id="crashy", attempt=1, input={}, run_at=EPOCH),
    ]
    for crash in range(1, 4):
        history += [
            ev.StepStarted(at=EPOCH, step_id="crashy", attempt=1),
            ev.StepLeaseExpired(at=EPOCH, step_id="crashy", attempt=1),
        ]
        commands = decide(wf, fold(history), EPOCH)
        if crash <= 2:
            (retry,) = commands
            assert isinstance(retry, cmd.RetryStep)
            # a crash does not use up an attempt
            assert (retry.reason, retry.job.attempt, retry.delay) == ("crash", 1, 0.0)
            history.append(cmd.to_event(retry, EPOCH))
        else:
            assert isinstance(commands[0], cmd.FailStep)
            assert commands[0].error.code == "crash_budget_exhausted"
            assert isinstance(commands[-1], cmd.FailRun)


def test_failure_cancels_queued_steps_lets_running_ones_finish_then_compensates() -> None:
    wf = workflow(
        {"id": "book_flight", "uses": "x", "compensate": {"uses": "cancel_flight"}},
        {"id": "book_hotel", "uses": "x", "compensate": {"uses": "cancel_hotel"}},
        {"id": "charge", "uses": "x", "depends_on": ["book_flight", "book_hotel"]},
    )
    history: list[ev.Event] = [
        ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={}),
        ev.StepScheduled(at=EPOCH, step_id="book_flight", attempt=1, input={}, run_at=EPOCH),
        ev.StepScheduled(at=EPOCH, step_id="book_hotel", attempt=1, input={}, run_at=EPOCH),
        ev.StepStarted(at=EPOCH, step_id="book_flight", attempt=1),
        ev.StepStarted(at=EPOCH, step_id="book_hotel", attempt=1),
        ev.StepFailed(at=EPOCH, step_id="book_hotel", attempt=1, error=BOOM),
    ]
    assert decide(wf, fold(history), EPOCH) == []  # book_flight still running: wait for it
    history.append(ev.StepSucceeded(at=EPOCH, step_id="book_flight", attempt=1, output={}))
    start, schedule = decide(wf, fold(history), EPOCH)
    assert isinstance(start, cmd.StartCompensation)
    assert start.steps == ("book_flight",) and start.failed_step == "book_hotel"
    assert isinstance(schedule, cmd.ScheduleStep)
    assert (schedule.job.uses, schedule.job.compensation) == ("cancel_flight", True)


def test_compensation_runs_in_reverse_completion_order_and_ends_compensated() -> None:
    wf = workflow(
        {
            "id": "a",
            "uses": "x",
            "compensate": {"uses": "undo", "with": {"id": "${steps.a.output}"}},
        },
        {"id": "b", "uses": "x", "depends_on": ["a"]},
        {"id": "c", "uses": "x", "depends_on": ["b"], "compensate": {"uses": "undo"}},
        {"id": "d", "uses": "x", "depends_on": ["c"]},
    )
    sim = run(wf, lambda job: BOOM if job.step_id == "d" else job.step_id)
    assert sim.state is not None and sim.state.status == "compensated"
    assert started(sim.events, compensation=True) == ["c", "a"]
    assert sim.state.compensation("a").input == {"id": "a"}
    assert sim.state.error is not None and sim.state.failed_step == "d"


def test_failed_compensation_is_retried_then_reported_and_the_rest_still_run() -> None:
    wf = workflow(
        {"id": "a", "uses": "x", "compensate": {"uses": "undo", "retry": {"max_attempts": 2}}},
        {"id": "b", "uses": "x", "depends_on": ["a"], "compensate": {"uses": "undo_b"}},
        {"id": "c", "uses": "x", "depends_on": ["b"]},
        defaults={"retry": {"initial": 0}},
    )

    def outcome(job: cmd.Job) -> Any:
        if job.step_id == "c" or (job.compensation and job.step_id == "b"):
            return BOOM
        if job.compensation and job.step_id == "a":
            return FLAKY if job.attempt == 1 else {}
        return {}

    sim = run(wf, outcome)
    assert sim.state is not None and sim.state.status == "failed"
    assert started(sim.events, compensation=True) == ["b", "a", "a"]
    assert sim.state.compensation("a").status == "succeeded"
    assert sim.state.error is not None and sim.state.error.code == "compensation_failed"
    assert "'b'" in sim.state.error.message


def test_failure_without_compensations_fails_the_run() -> None:
    sim = run(workflow({"id": "a", "uses": "x"}), lambda job: BOOM)
    assert sim.state is not None and sim.state.status == "failed"
    assert sim.state.error is not None
    assert sim.state.error.message == "step 'a' failed: downstream said no"


def test_cancelled_run_cancels_queued_and_running_steps() -> None:
    wf = workflow({"id": "a", "uses": "x"}, {"id": "b", "uses": "x"})
    history = [
        ev.RunStarted(at=EPOCH, run_id="r", workflow="wf", version=1, input={}),
        ev.StepScheduled(at=EPOCH, step_id="a", attempt=1, input={}, run_at=EPOCH),
        ev.StepScheduled(at=EPOCH, step_id="b", attempt=1, input={}, run_at=EPOCH),
        ev.StepStarted(at=EPOCH, step_id="a", attempt=1),
        ev.RunCancelled(at=EPOCH, reason="user asked"),
    ]
    commands = decide(wf, fold(history), EPOCH)
    assert {(c.step_id, type(c)) for c in commands} == {
        ("a", cmd.CancelStep),
        ("b", cmd.CancelStep),
    }
    state = fold([*history, *(cmd.to_event(c, EPOCH) for c in commands)])
    assert state.status == "cancelled"
    assert decide(wf, state, EPOCH) == []


def test_run_output_template_and_its_failure() -> None:
    wf = workflow(
        {"id": "a", "uses": "x", "with": {"v": 1}}, output={"result": "${steps.a.output.v}"}
    )
    assert run(wf).state.output == {"result": 1}  # type: ignore[union-attr]
    broken = workflow({"id": "a", "uses": "x"}, output="${steps.a.output.missing}")
    state = run(broken).state
    assert state is not None and state.status == "failed"
    assert state.error is not None and state.error.code == "output_error"


def test_priority_comes_from_step_then_run_then_defaults() -> None:
    wf = workflow({"id": "a", "uses": "x"}, {"id": "b", "uses": "x", "priority": 1})
    started_event = ev.RunStarted(
        at=EPOCH, run_id="r", workflow="wf", version=1, input={}, priority=5
    )
    jobs = {c.job.step_id: c.job.priority for c in decide(wf, fold([started_event]), EPOCH)}  # type: ignore[union-attr]
    assert jobs == {"a": 5, "b": 1}


# --- properties -------------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 10) -> Workflow:
    """A random acyclic workflow: each step depends on a random subset of earlier steps."""
    n = draw(st.integers(1, max_steps))
    steps = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        steps.append(
            {
                "id": f"s{i}",
                "uses": "x",
                "depends_on": [f"s{d}" for d in sorted(deps)],
                "compensate": {"uses": "undo"},
            }
        )
    return Workflow.model_validate({"name": "dag", "steps": steps})


@settings(max_examples=150, deadline=None)
@given(wf=dags(), data=st.data())
def test_each_step_runs_exactly_once_and_only_after_its_dependencies(
    wf: Workflow, data: Any
) -> None:
    choose = lambda n: data.draw(st.integers(0, n - 1))
    sim = run(wf, choose=choose)
    order = started(sim.events)
    assert sorted(order) == sorted(s.id for s in wf.steps)
    succeeded_at = {
        e.step_id: i for i, e in enumerate(sim.events) if isinstance(e, ev.StepSucceeded)
    }
    started_at = {e.step_id: i for i, e in enumerate(sim.events) if isinstance(e, ev.StepStarted)}
    for step in wf.steps:
        for dep in wf.needs(step.id):
            assert succeeded_at[dep] < started_at[step.id]
    assert sim.state is not None and sim.state.status == "succeeded"


@settings(max_examples=150, deadline=None)
@given(wf=dags(), data=st.data())
def test_compensation_order_is_the_reverse_of_completion(wf: Workflow, data: Any) -> None:
    failing = data.draw(st.sampled_from([s.id for s in wf.steps]))
    choose = lambda n: data.draw(st.integers(0, n - 1))
    sim = run(
        wf,
        lambda job: BOOM if job.step_id == failing and not job.compensation else {},
        choose=choose,
    )
    completed = [
        e.step_id for e in sim.events if isinstance(e, ev.StepSucceeded) and not e.compensation
    ]
    assert started(sim.events, compensation=True) == list(reversed(completed))
    assert sim.state is not None
    assert sim.state.status == ("compensated" if completed else "failed")


@settings(max_examples=100, deadline=None)
@given(wf=dags(), data=st.data())
def test_fold_gives_the_same_state_when_the_events_are_replayed(wf: Workflow, data: Any) -> None:
    failing = data.draw(st.sampled_from([None, *[s.id for s in wf.steps]]))
    choose = lambda n: data.draw(st.integers(0, n - 1))
    sim = run(wf, lambda job: FLAKY if job.step_id == failing else {"n": 1}, choose=choose)
    assert fold(sim.events) == sim.state
    stored = [ev.from_data(ev.to_data(e)) for e in sim.events]  # through JSON and back
    assert stored == sim.events
    assert fold(stored) == sim.state
    # and the engine, given the replayed state, has nothing left to do
    assert decide(wf, fold(stored), sim.now) == []

"""attempts(): every attempt of every step, from the history alone; and whose log line is whose."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from overture.core import events as ev
from overture.core.attempts import Attempt, attempts, lines_by_attempt
from overture.core.events import ErrorInfo
from overture.core.model import Workflow
from overture.testing import EPOCH

from .simulate import Simulation

FLAKY = ErrorInfo(code="http_503", message="unavailable", details={"status": 503})
GONE = ErrorInfo(code="http_404", message="not found", retryable=False)


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def started_run() -> ev.RunStarted:
    return ev.RunStarted(at=at(0), run_id="r", workflow="wf", version=1, input={})


def scheduled(step: str, t: float, attempt: int = 1, **kw: Any) -> ev.StepScheduled:
    return ev.StepScheduled(at=at(t), step_id=step, attempt=attempt, input={}, run_at=at(t), **kw)


def retried(
    step: str, t: float, attempt: int, reason: Any, delay: float = 0, **kw: Any
) -> ev.Event:
    return ev.StepRetryScheduled(
        at=at(t),
        step_id=step,
        attempt=attempt,
        run_at=at(t + delay),
        delay=delay,
        reason=reason,
        **kw,
    )


def begun(step: str, t: float, attempt: int = 1, worker: str = "w1", **kw: Any) -> ev.Event:
    return ev.StepStarted(at=at(t), step_id=step, attempt=attempt, worker_id=worker, **kw)


def done(step: str, t: float, attempt: int = 1, output: Any = None, **kw: Any) -> ev.Event:
    return ev.StepSucceeded(at=at(t), step_id=step, attempt=attempt, output=output, **kw)


def failed(step: str, t: float, error: ErrorInfo, attempt: int = 1, **kw: Any) -> ev.Event:
    return ev.StepFailed(at=at(t), step_id=step, attempt=attempt, error=error, **kw)


def summary(found: list[Attempt]) -> list[tuple[str, int, str, str | None, str | None]]:
    return [(a.step_id, a.attempt, a.status, a.queued_after, a.worker_id) for a in found]


def test_each_retry_after_an_error_is_an_attempt_with_its_own_timing_and_error() -> None:
    found = attempts(
        [
            started_run(),
            scheduled("fetch", 1),
            begun("fetch", 2),
            failed("fetch", 2.5, FLAKY),
            retried("fetch", 2.5, 2, "error", delay=4),
            begun("fetch", 7, 2, worker="w2"),
            done("fetch", 7.25, 2, output={"status": 200, "headers": {}, "body": "ok"}),
        ]
    )
    assert summary(found) == [
        ("fetch", 1, "failed", None, "w1"),
        ("fetch", 2, "succeeded", "error", "w2"),
    ]
    first, second = found
    assert (first.scheduled_at, first.started_at, first.finished_at) == (at(1), at(2), at(2.5))
    assert first.duration == 0.5 and first.error == FLAKY and first.status_code == 503
    assert (second.scheduled_at, second.run_at) == (at(2.5), at(6.5))
    assert second.duration == 0.25 and second.error is None and second.status_code == 200


def test_a_crashed_worker_leaves_an_expired_attempt_and_the_same_number_runs_again() -> None:
    found = attempts(
        [
            started_run(),
            scheduled("slow", 1),
            begun("slow", 2, worker="dead"),
            ev.StepLeaseExpired(at=at(40), step_id="slow", attempt=1, worker_id="dead"),
            retried("slow", 40, 1, "crash"),
            begun("slow", 41, worker="alive"),
            done("slow", 45),
        ]
    )
    assert summary(found) == [
        ("slow", 1, "expired", None, "dead"),
        ("slow", 1, "succeeded", "crash", "alive"),
    ]
    assert found[0].error is not None and found[0].error.code == "lease_expired"
    assert found[0].finished_at == at(40)


def test_an_attempt_given_back_on_shutdown_is_released_and_queued_again() -> None:
    found = attempts(
        [
            started_run(),
            scheduled("slow", 1),
            begun("slow", 2, worker="stopping"),
            retried("slow", 3, 1, "released"),
            begun("slow", 4, worker="other"),
            done("slow", 5),
        ]
    )
    assert summary(found) == [
        ("slow", 1, "released", None, "stopping"),
        ("slow", 1, "succeeded", "released", "other"),
    ]
    assert (found[0].finished_at, found[0].error) == (at(3), None)


def test_compensation_attempts_are_apart_from_the_steps_own() -> None:
    found = attempts(
        [
            started_run(),
            scheduled("book", 1),
            begun("book", 1),
            done("book", 2),
            scheduled("pay", 2),
            begun("pay", 2),
            failed("pay", 3, GONE),
            ev.CompensationStarted(at=at(3), steps=("book",), error=GONE, failed_step="pay"),
            scheduled("book", 3, compensation=True),
            begun("book", 3, compensation=True),
            failed("book", 4, FLAKY, compensation=True),
            retried("book", 4, 2, "error", delay=1, compensation=True),
            begun("book", 5, 2, compensation=True),
            done("book", 6, 2, compensation=True),
        ]
    )
    assert [(a.step_id, a.compensation, a.attempt, a.status) for a in found] == [
        ("book", False, 1, "succeeded"),
        ("pay", False, 1, "failed"),
        ("book", True, 1, "failed"),
        ("book", True, 2, "succeeded"),
    ]
    assert found[1].status_code == 404  # from the error's code, without details


def test_queued_running_and_cancelled_attempts() -> None:
    found = attempts(
        [
            started_run(),
            scheduled("a", 1),
            scheduled("b", 1),
            scheduled("c", 1),
            begun("a", 2),
            begun("b", 2),
            ev.StepCancelled(at=at(3), step_id="b", reason="run cancelled"),
        ]
    )
    assert [(a.step_id, a.status) for a in found] == [
        ("a", "running"),
        ("b", "cancelled"),
        ("c", "queued"),
    ]
    assert found[0].duration is None and found[2].started_at is None
    assert found[1].error == ErrorInfo(code="cancelled", message="run cancelled", retryable=False)


def test_a_step_that_failed_before_running_has_no_attempt() -> None:
    bad = ErrorInfo(code="template_error", message="no such input", retryable=False)
    spent = ErrorInfo(code="crash_budget_exhausted", message="died twice", retryable=False)
    found = attempts(
        [
            started_run(),
            failed("a", 1, bad, attempt=0),
            scheduled("b", 1),
            begun("b", 1),
            ev.StepLeaseExpired(at=at(9), step_id="b", attempt=1),
            failed("b", 9, spent),
            ev.StepSkipped(at=at(9), step_id="c", reason="dependency b failed"),
        ]
    )
    assert [(a.step_id, a.status) for a in found] == [("b", "expired")]


def test_a_start_without_a_schedule_still_makes_an_attempt() -> None:
    (found,) = attempts([started_run(), begun("a", 1), done("a", 2, output={"status": "ok"})])
    assert (found.status, found.scheduled_at, found.status_code) == ("succeeded", at(1), None)


def test_status_codes_only_from_http_shaped_values() -> None:
    def code(output: Any = None, error: ErrorInfo | None = None) -> int | None:
        end = done("a", 2, output=output) if error is None else failed("a", 2, error)
        (found,) = attempts([started_run(), scheduled("a", 1), begun("a", 1), end])
        return found.status_code

    assert code({"status": 201}) == 201
    assert code({"status": True}) is None
    assert code({"status": 42}) is None
    assert code([200]) is None
    assert code(error=ErrorInfo(code="http_429", message="slow down")) == 429
    assert code(error=ErrorInfo(code="http_timeout", message="timed out")) is None
    assert code(error=ErrorInfo(code="broke", message="x", details={"status": 502})) == 502


# --- log lines ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    step_id: str
    attempt: int
    at: datetime
    compensation: bool = False


def test_lines_go_to_the_attempt_that_completed_not_the_one_that_crashed() -> None:
    found = attempts(
        [
            started_run(),
            scheduled("a", 1),
            begun("a", 1),
            failed("a", 2, FLAKY),
            retried("a", 2, 2, "error"),
            begun("a", 3, 2, worker="dead"),
            ev.StepLeaseExpired(at=at(30), step_id="a", attempt=2),
            retried("a", 30, 2, "crash"),
            begun("a", 31, 2),
            done("a", 32, 2),
            scheduled("b", 32),
            begun("b", 32),
        ]
    )
    one, two, other = Line("a", 1, at(1.5)), Line("a", 2, at(31.5)), Line("zz", 1, at(1))
    running = Line("b", 1, at(32.5))  # its completion was stored after the history was read
    assert lines_by_attempt(found, [one, two, other, running]) == [[one], [], [two], [running]]


def test_lines_of_a_retried_run_go_to_the_attempt_of_their_time() -> None:
    found = attempts(
        [
            started_run(),
            scheduled("a", 1),
            begun("a", 1),
            failed("a", 2, GONE),
            ev.RunFailed(at=at(2), error=GONE, failed_step="a"),
            ev.RunRetried(at=at(100), steps=("a",)),
            scheduled("a", 100),
            begun("a", 100),
            done("a", 101),
        ]
    )
    # The worker's clock runs a little ahead of the store's: still told apart.
    first = [Line("a", 1, at(1.5)), Line("a", 1, at(2.2))]
    second = [Line("a", 1, at(99.9)), Line("a", 1, at(100.5))]
    assert lines_by_attempt(found, first + second) == [first, second]


def test_lines_of_a_retried_run_whose_last_attempt_seems_still_running() -> None:
    found = attempts(
        [
            started_run(),
            scheduled("a", 1),
            begun("a", 1),
            done("a", 2),
            ev.RunRetried(at=at(50), steps=("a",)),
            scheduled("a", 50),
            begun("a", 50),
        ]
    )
    old, new = Line("a", 1, at(1.5)), Line("a", 1, at(51))
    assert lines_by_attempt(found, [old, new]) == [[old], [new]]


# --- property --------------------------------------------------------------------------------

LAST_STATUS = {"scheduled": "queued", "running": "running"}


@st.composite
def flaky_workflows(draw: st.DrawFn) -> Workflow:
    n = draw(st.integers(1, 6))
    steps = [
        {
            "id": f"s{i}",
            "uses": "x",
            "depends_on": [f"s{d}" for d in sorted(draw(st.sets(st.integers(0, i - 1))))]
            if i
            else [],
            "retry": {"max_attempts": draw(st.integers(1, 3)), "jitter": 0},
            "compensate": {"uses": "undo"},
        }
        for i in range(n)
    ]
    return Workflow.model_validate({"name": "wf", "steps": steps})


@settings(max_examples=100, deadline=None)
@given(wf=flaky_workflows(), data=st.data())
def test_the_last_attempt_of_each_step_agrees_with_the_folded_state(
    wf: Workflow, data: Any
) -> None:
    fails = data.draw(
        st.sets(st.tuples(st.sampled_from([s.id for s in wf.steps]), st.integers(1, 3)))
    )
    sim = Simulation(
        wf,
        lambda job: FLAKY if (job.step_id, job.attempt) in fails and not job.compensation else {},
        choose=lambda n: data.draw(st.integers(0, n - 1)),
    )
    state = sim.start()
    found = attempts(sim.events)
    queued = [e for e in sim.events if isinstance(e, ev.StepScheduled | ev.StepRetryScheduled)]
    assert len(found) == len(queued)
    assert sum(a.started_at is not None for a in found) == sum(
        isinstance(e, ev.StepStarted) for e in sim.events
    )
    for table, compensation in ((state.steps, False), (state.compensations, True)):
        for step in table.values():
            mine = [a for a in found if (a.step_id, a.compensation) == (step.id, compensation)]
            if step.attempt == 0:
                assert mine == []
                continue
            last = mine[-1]
            assert last.status == LAST_STATUS.get(step.status, step.status)
            assert last.attempt == step.attempt
            if last.started_at is not None:  # a retry cancelled while queued never started
                assert last.started_at == step.started_at
            if step.status == "failed":
                assert last.error == step.error

"""Events: frozen, and every type round-trips through JSON unchanged."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from overture import serde
from overture.core import events as ev
from overture.core.events import ErrorInfo
from overture.testing import EPOCH

ERROR = ErrorInfo(code="http_503", message="down", retry_after=2.5, details={"status": 503})
LATER = EPOCH + timedelta(seconds=3)

SAMPLES: list[ev.Event] = [
    ev.RunStarted(
        at=EPOCH,
        run_id="r1",
        workflow="wf",
        version=2,
        input={"a": [1, {"b": None}]},
        tenant="acme",
        priority=3,
        correlation_id="c",
        idempotency_key="k",
        parent_run_id="p",
    ),
    ev.StepScheduled(at=EPOCH, step_id="s", attempt=1, input={"x": {"$secret": "T"}}, run_at=LATER),
    ev.StepStarted(at=EPOCH, step_id="s", attempt=1, worker_id="w1"),
    ev.StepHeartbeat(at=EPOCH, step_id="s", attempt=1),
    ev.StepSucceeded(at=EPOCH, step_id="s", attempt=1, output=[1, "two", 3.5, True, None]),
    ev.StepFailed(at=EPOCH, step_id="s", attempt=2, error=ERROR, compensation=True),
    ev.StepRetryScheduled(at=EPOCH, step_id="s", attempt=3, run_at=LATER, delay=3.0),
    ev.StepLeaseExpired(at=EPOCH, step_id="s", attempt=1, worker_id="w2"),
    ev.StepSkipped(at=EPOCH, step_id="s", reason="condition is false"),
    ev.StepCancelled(at=EPOCH, step_id="s", reason="run cancelled"),
    ev.SignalReceived(at=EPOCH, name="approve", payload={"by": "ana"}),
    ev.PlanGenerated(at=EPOCH, step_id="plan", plan={"steps": []}),
    ev.PlanCacheHit(at=EPOCH, step_id="plan", key="k", similarity=0.93),
    ev.PlanCacheMiss(at=EPOCH, step_id="plan", key="k"),
    ev.CompensationStarted(at=EPOCH, steps=("b", "a"), error=ERROR, failed_step="c"),
    ev.CompensationSucceeded(at=EPOCH),
    ev.CompensationFailed(at=EPOCH, steps=("b",), error=ERROR),
    ev.RunSucceeded(at=EPOCH, output={"ok": True}),
    ev.RunFailed(at=EPOCH, error=ERROR, failed_step="c"),
    ev.RunCancelled(at=EPOCH, reason="user"),
    ev.RunRetried(at=EPOCH, steps=("a", "b")),
    # Fields added later, set.
    ev.RunStarted(
        at=EPOCH, run_id="c", workflow="w", version=1, input={}, parent_run_id="p", parent_step="s"
    ),
    ev.StepStarted(at=EPOCH, step_id="s", attempt=1, child_run_id="c"),
    ev.StepSucceeded(at=EPOCH, step_id="w", attempt=1, output={"payload": 1}, signal=0),
    ev.StepFailed(at=EPOCH, step_id="w", attempt=1, error=ERROR, signal=3),
]


def test_every_event_type_has_a_sample() -> None:
    assert {type(e) for e in SAMPLES} == set(ev.EVENT_TYPES.values())


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_event_round_trips_through_json(event: ev.Event) -> None:
    data = serde.loads(serde.dumps(ev.to_data(event)))
    assert data["type"] == event.type
    assert ev.from_data(data) == event


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_events_are_frozen(event: ev.Event) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.at = LATER  # type: ignore[misc]


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(KeyError):
        ev.from_data({"type": "Nope", "at": EPOCH.isoformat()})


def test_fields_added_later_are_written_only_when_set() -> None:
    """Histories of runs without child runs or signals stay as they were stored before."""
    data = ev.to_data(ev.StepSucceeded(at=EPOCH, step_id="s", attempt=1, output=None))
    assert set(data) == {"type", "at", "step_id", "attempt", "output", "compensation"}
    old = {"type": "StepStarted", "at": EPOCH.isoformat(), "step_id": "s", "attempt": 1}
    assert ev.from_data(old) == ev.StepStarted(at=EPOCH, step_id="s", attempt=1)


def test_trace_fields_are_written_only_when_set() -> None:
    """A run started before traces (or a retry without one) is stored as it always was."""
    plain = ev.RunStarted(at=EPOCH, run_id="r", workflow="w", version=1, input=None)
    assert not {"traceparent", "parent_span_id"} & set(ev.to_data(plain))
    assert not {"traceparent", "parent_span_id"} & set(
        ev.to_data(ev.RunRetried(at=EPOCH, steps=("s",)))
    )
    traced = dataclasses.replace(plain, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    assert ev.from_data(serde.loads(serde.dumps(ev.to_data(traced)))) == traced


def test_fields_a_newer_version_wrote_are_ignored() -> None:
    """A rolling upgrade: an older process reads what a newer one added, and keeps the rest."""
    data = ev.to_data(ev.StepStarted(at=EPOCH, step_id="s", attempt=1))
    assert ev.from_data({**data, "added_later": {"x": 1}}) == ev.StepStarted(
        at=EPOCH, step_id="s", attempt=1
    )

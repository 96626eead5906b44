"""The steps the engine runs itself: ``sleep``, ``wait`` and ``workflow`` (a child run).

None of them holds a worker while it waits:

- ``sleep`` is a job queued for the moment it ends: the queue row is the durable timer, so a
  restart loses nothing. Its handler only says that the time came.
- ``wait`` is a job queued for its deadline (no job at all without a ``timeout``). A signal with
  its name resolves it first (``resolve_waits``, on every decision): the step ends without its
  job running, and the store drops the job. If the deadline comes first, the handler runs and
  returns the ``on_timeout`` outcome (``timeout_outcome``).
- ``workflow`` is never queued: the store starts the child run in the transaction that schedules
  the step, and ends the step when the child ends (``overture.core.children``).

Their inputs are checked when the step is scheduled: a bad value fails the step (``bad_input``,
not retried) before anything waits. None can be a ``compensate`` action (validation refuses it:
no compensation is queued as a timer or starts a child). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from overture.core import commands as cmd
from overture.core import events as ev
from overture.core.durations import MAX_DURATION, parse_duration
from overture.core.events import ErrorInfo
from overture.core.model import Workflow
from overture.core.state import RunState, StepState
from overture.serde import JSON

SLEEP = "sleep"
WAIT = "wait"
WORKFLOW = "workflow"
ENGINE_STEPS = frozenset({SLEEP, WAIT, WORKFLOW})

NEVER = datetime(9999, 12, 31, tzinfo=UTC)
"""The ``run_at`` of a wait without a timeout: it has no job, only a signal ends it."""

APPROVAL = "approval"
"""The signal an approval ``wait`` expects unless it names another."""

OnTimeout = Literal["fail", "succeed"]


@dataclass(frozen=True, kw_only=True, slots=True)
class WaitSpec:
    """What a ``wait`` step waits for, and what happens if it does not come."""

    signal: str
    timeout: float | None = None
    on_timeout: OnTimeout = "fail"
    default: JSON = None
    """The ``value`` of the output when the wait times out with ``on_timeout: succeed``."""
    approval: bool = False
    """The signal's payload says ``{"approved": true|false, ...}``; false fails the step."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ChildSpec:
    """The run a ``workflow`` step starts."""

    workflow: str
    version: int | None = None
    """None: the latest version."""
    input: JSON = None
    wait: bool = True
    """False: fire and forget; the step succeeds with the child's id as soon as it starts."""


def due_at(uses: str, inputs: Mapping[str, JSON], start: datetime) -> datetime:
    """When a step's job is due if it were queued at ``start``: later for ``sleep`` and
    ``wait``, ``start`` for anything else; ``ValueError`` (a message for the author) if the
    inputs of an engine step are wrong."""
    if uses == SLEEP:
        return sleep_until(inputs, start)
    if uses == WAIT:
        timeout = parse_wait(inputs).timeout
        return NEVER if timeout is None else start + timedelta(seconds=timeout)
    if uses == WORKFLOW:
        parse_child(inputs)
    return start


def sleep_until(inputs: Mapping[str, JSON], start: datetime) -> datetime:
    """The end of a sleep that starts at ``start``: ``seconds``, ``duration`` or ``until``."""
    _only(inputs, ("seconds", "duration", "until"), SLEEP)
    given = [name for name in ("seconds", "duration", "until") if name in inputs]
    if len(given) != 1:
        raise ValueError(
            "sleep takes one of seconds (a number), duration (e.g. '2s', '1h30m') "
            f"or until (an ISO-8601 time); got {', '.join(given) or 'none'}"
        )
    (name,) = given
    value = inputs[name]
    if name == "until":
        until = _moment(value)
        if until - start > timedelta(seconds=MAX_DURATION):
            raise ValueError(f"sleep until {value!r} is more than a year away")
        return max(start, until)
    if name == "seconds" and not isinstance(value, int | float):
        raise ValueError(f"sleep seconds must be a number, got {value!r}")
    return start + timedelta(seconds=parse_duration(value))


def parse_wait(inputs: Mapping[str, JSON]) -> WaitSpec:
    """A ``wait`` step's inputs, checked (``ValueError`` naming what is wrong)."""
    _only(inputs, ("signal", "timeout", "on_timeout", "default", "approval"), WAIT)
    approval = inputs.get("approval", False)
    if not isinstance(approval, bool):
        raise ValueError(f"wait approval must be true or false, got {approval!r}")
    signal = inputs.get("signal", APPROVAL if approval else None)
    if not isinstance(signal, str) or not 1 <= len(signal) <= 200:
        raise ValueError(
            "wait needs the name of the signal it waits for (signal: NAME, 1 to 200 characters)"
            f"{'' if signal is None else f', got {signal!r}'}"
        )
    timeout = inputs.get("timeout")
    seconds = None if timeout is None else parse_duration(timeout)
    on_timeout = inputs.get("on_timeout", "fail")
    if on_timeout not in ("fail", "succeed"):
        raise ValueError(f"wait on_timeout must be 'fail' or 'succeed', got {on_timeout!r}")
    return WaitSpec(
        signal=signal,
        timeout=seconds,
        on_timeout="succeed" if on_timeout == "succeed" else "fail",
        default=inputs.get("default"),
        approval=approval,
    )


def parse_child(inputs: Mapping[str, JSON]) -> ChildSpec:
    """A ``workflow`` step's inputs, checked (``ValueError`` naming what is wrong)."""
    _only(inputs, ("workflow", "version", "input", "wait"), WORKFLOW)
    name = inputs.get("workflow")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a workflow step needs the name of the workflow to run, got {name!r}")
    version = inputs.get("version")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise ValueError(f"workflow version must be a whole number from 1, got {version!r}")
    data = inputs.get("input", {})
    if not isinstance(data, dict):
        raise ValueError(f"workflow input must be a mapping, got {type(data).__name__}")
    wait = inputs.get("wait", True)
    if not isinstance(wait, bool):
        raise ValueError(f"workflow wait must be true or false, got {wait!r}")
    return ChildSpec(workflow=name, version=version, input=data, wait=wait)


def timeout_outcome(inputs: Mapping[str, JSON]) -> tuple[JSON, ErrorInfo | None]:
    """How a ``wait`` ends when its deadline comes first: the output, or the error."""
    spec = parse_wait(inputs)
    if spec.on_timeout == "succeed":
        return {"timed_out": True, "value": spec.default}, None
    limit = "" if spec.timeout is None else f" within {spec.timeout:g}s"
    message = f"no {spec.signal!r} signal came{limit}"
    return None, ErrorInfo(code="wait_timeout", message=message, retryable=False)


def own_timeouts(workflow: Workflow, timeouts: list[cmd.Command]) -> list[cmd.Command]:
    """The timeouts that apply: a ``workflow`` step's child run is bounded by the step's own
    ``timeout`` only, not the workflow's default (which is for handlers)."""
    return [
        c
        for c in timeouts
        if not isinstance(c, cmd.FailStep)
        or c.compensation
        or _uses(workflow, c.step_id) != WORKFLOW
        or workflow.step(c.step_id).timeout is not None
    ]


def resolve_waits(workflow: Workflow, state: RunState) -> list[cmd.Command]:
    """End the queued ``wait`` steps that a signal they wait for has reached.

    Each signal is consumed by one step at most (recorded in its end event); a step takes the
    first signal with its name that no step has consumed, even one sent before the step was
    scheduled. Steps waiting for the same name take them in the order they were scheduled. A
    signal that comes while the step's timer runs (its deadline has come) is too late for it.
    """
    if not state.signals or len(state.signals_taken) == len(state.signals):
        return []
    waiting = [
        s for s in state.steps.values() if s.status == "scheduled" and _uses(workflow, s.id) == WAIT
    ]
    out: list[cmd.Command] = []
    taken = set(state.signals_taken)
    for s in sorted(waiting, key=lambda s: (s.scheduled_at or NEVER, s.id)):
        try:
            spec = parse_wait(s.input if isinstance(s.input, dict) else {})
        except ValueError:
            continue  # refused when it was scheduled; a retry of the run may bring it here
        for index, signal in enumerate(state.signals):
            if index not in taken and signal.name == spec.signal:
                taken.add(index)
                out.append(_resolved(s, spec, index, signal))
                break
    return out


def _resolved(
    s: StepState, spec: WaitSpec, index: int, signal: ev.SignalReceived
) -> cmd.CompleteStep:
    output: dict[str, JSON] = {
        "signal": signal.name,
        "payload": signal.payload,
        "received_at": signal.at.isoformat(),
    }
    if not spec.approval:
        return cmd.CompleteStep(step_id=s.id, attempt=s.attempt, output=output, signal=index)
    payload = signal.payload
    if isinstance(payload, dict) and payload.get("approved") is True:
        output["approved"] = True
        return cmd.CompleteStep(step_id=s.id, attempt=s.attempt, output=output, signal=index)
    if isinstance(payload, dict) and payload.get("approved") is False:
        comment = payload.get("comment")
        message = f"not approved{f': {comment}' if isinstance(comment, str) and comment else ''}"
    else:
        message = f'not approved: the {signal.name!r} signal did not say "approved": true'
    error = ErrorInfo(
        code="not_approved",
        message=message,
        retryable=False,
        details={"signal": signal.name, "payload": payload},
    )
    return cmd.CompleteStep(step_id=s.id, attempt=s.attempt, error=error, signal=index)


def _uses(workflow: Workflow, step_id: str) -> str | None:
    step = workflow.graph.steps.get(step_id)
    return None if step is None else step.uses


def _only(inputs: Mapping[str, JSON], names: tuple[str, ...], handler: str) -> None:
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise ValueError(
            f"{handler} does not take {', '.join(map(repr, unknown))}; it takes {', '.join(names)}"
        )


def _moment(value: JSON) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"sleep until must be an ISO-8601 time, got {value!r}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"sleep until must be an ISO-8601 time such as 2030-01-31T09:00:00Z, got {value!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

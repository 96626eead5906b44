"""Events: what a run started by an event sees, and which workflows an event starts.

Pure: the store calls ``routes`` inside the transaction that records the event, so an event and
the runs it starts are committed together (or not at all).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from overture.core.conditions import evaluate, parse_condition
from overture.core.model import EventTrigger, Workflow
from overture.core.references import Scope
from overture.errors import TemplateError
from overture.store.records import NewEvent

OPTIONAL_FIELDS = ("user_id", "correlation_id", "idempotency_key", "source")
RESERVED = frozenset({"id", "type", "payload", *OPTIONAL_FIELDS})
CONDITION_FALSE = "condition_false"
WORKFLOW_DISABLED = "workflow_disabled"


def event_input(event_id: str, event: NewEvent) -> dict[str, Any]:
    """The input of a run the event starts: the event itself (fields the sender left out are
    absent, so a workflow's input schema can require them)."""
    data: dict[str, Any] = {"id": event_id, "type": event.type, "payload": event.payload}
    for name in OPTIONAL_FIELDS:
        value = getattr(event, name)
        if value is not None:
            data[name] = value
    # What else the sender said never stands in for the event's own fields (a ``source`` in
    # it must not pass for a verified webhook's).
    extras = {k: v for k, v in event.meta.items() if k not in RESERVED}
    return {**extras, **data}


def event_run_key(tenant: str, event_id: str, workflow: str) -> str:
    """The idempotency key of the run an event starts for one workflow: never two."""
    return f"event:{tenant}:{event_id}:{workflow}"


def type_matches(pattern: str, event_type: str) -> bool:
    """``github.pull_request`` matches itself; ``github.*`` every ``github.`` type; ``*`` all."""
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


WEBHOOK_SOURCE = "webhook:"
"""An event's ``source`` when a verified webhook delivery made it (``webhook:<source name>``);
an event sent through the API cannot claim it."""


def routes(
    candidates: Iterable[tuple[Workflow, bool]], data: dict[str, Any]
) -> list[tuple[Workflow, str | None]]:
    """For each (latest version, disabled) that listens for the event's type, or for every
    delivery of its webhook source (``on.webhook``): start a run (None) or the reason not to.
    Workflows that do not listen are left out."""
    found: list[tuple[Workflow, str | None]] = []
    for workflow, disabled in candidates:
        triggers = listening(workflow, data["type"])
        if not triggers and not _from_its_webhook(workflow, data.get("source")):
            continue
        if disabled:
            found.append((workflow, WORKFLOW_DISABLED))
        elif not triggers:  # every delivery of the source, whatever its type
            found.append((workflow, None))
        else:
            found.append((workflow, _first_reason(triggers, data)))
    return found


def _from_its_webhook(workflow: Workflow, source: object) -> bool:
    if not isinstance(source, str) or not source.startswith(WEBHOOK_SOURCE):
        return False
    return source.removeprefix(WEBHOOK_SOURCE) in workflow.on.webhook


def listening(workflow: Workflow, event_type: str) -> list[EventTrigger]:
    return [t for t in workflow.on.event_triggers() if type_matches(t.type, event_type)]


def _first_reason(triggers: list[EventTrigger], data: dict[str, Any]) -> str | None:
    """None if any trigger's condition holds, else why none did."""
    scope = Scope(input=data, steps={}, run={})
    reason = CONDITION_FALSE
    for trigger in triggers:
        if trigger.when is None:
            return None
        try:
            if evaluate(parse_condition(trigger.when), scope):
                return None
        except TemplateError as error:  # e.g. comparing a string with a number
            reason = f"condition_error: {error}"
    return reason

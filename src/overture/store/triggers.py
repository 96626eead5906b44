"""What both stores do alike when triggers start runs: the requests, the errors, the secrets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from overture import serde
from overture.core.model import Workflow
from overture.errors import Conflict, InputInvalid, NotFound
from overture.store.records import (
    NewEvent,
    ScheduleRecord,
    ScheduleSpec,
    StartRun,
    Tick,
    WebhookSecret,
)
from overture.triggers.events import event_run_key
from overture.triggers.schedules import first_tick, schedule_run_key

logger = logging.getLogger("overture.scheduler")

ROUTE_ERRORS = (InputInvalid, NotFound, Conflict)
"""Why a trigger may not start a run (bad input, a workflow gone or disabled): the trigger
records the reason and goes on; the event or tick is not refused."""


def route_error(error: Exception) -> str:
    """``code: message``, with the codes the API answers for the same errors."""
    match error:
        case InputInvalid():
            code = "input_invalid"
        case NotFound():
            code = "not_found"
        case _:
            code = getattr(error, "code", "conflict")
    return f"{code}: {error}"


def start_request(
    event: NewEvent, event_id: str, workflow: Workflow, data: dict[str, Any]
) -> StartRun:
    """The run an event starts for one workflow that listens for it."""
    return StartRun(
        workflow=workflow.name,
        version=workflow.version,
        input=data,
        tenant=event.tenant,
        idempotency_key=event_run_key(event.tenant, event_id, workflow.name),
        correlation_id=event.correlation_id,
        traceparent=event.traceparent,
    )


def tick_request(schedule: ScheduleRecord, tick: datetime) -> StartRun:
    """The run a schedule's tick starts (of the workflow's latest enabled version)."""
    return StartRun(
        workflow=schedule.workflow,
        input=schedule.input,
        tenant=schedule.tenant,
        idempotency_key=schedule_run_key(schedule.tenant, schedule.id, tick),
    )


def source_taken(name: str) -> Conflict:
    return Conflict(
        f"a webhook source named {name!r} exists (names are unique across tenants)",
        code="webhook_source_exists",
    )


def schedule_taken(schedule_id: str) -> Conflict:
    return Conflict(f"a schedule with id {schedule_id!r} exists", code="schedule_exists")


def new_secrets(secrets: Sequence[WebhookSecret], now: datetime) -> list[WebhookSecret]:
    """A new source's secrets, stamped with the time they were stored."""
    return [replace(s, added_at=now) for s in secrets]


def rotated(
    secrets: Sequence[WebhookSecret], secret: str, now: datetime, retire_after: float
) -> list[WebhookSecret]:
    """``secret`` first, then the secrets still active, each retiring ``retire_after`` seconds
    from now at the latest (0: at once), so senders can switch over without a failed delivery.

    Five in all at most (the newest kept): every delivery is checked against each of them, and
    rotating often with a long overlap would otherwise pile them up."""
    most = 5
    retire_at = now + timedelta(seconds=retire_after)
    active = [
        s
        for s in secrets
        if (s.expires_at is None or s.expires_at > now) and s.value != secret and retire_after > 0
    ]
    # Stable: secrets added together (a new source's) keep their order.
    newest = sorted(active, key=lambda s: s.added_at, reverse=True)[: most - 1]
    kept = [
        replace(s, expires_at=retire_at if s.expires_at is None else min(s.expires_at, retire_at))
        for s in newest
    ]
    return [WebhookSecret(value=secret, added_at=now), *kept]


def schedule_params(
    spec: ScheduleSpec, previous: ScheduleRecord | None, now: datetime, origin: str = "workflow"
) -> dict[str, Any]:
    """A schedule's stored columns. Made again from a workflow's new version, a schedule whose
    expression and zone did not change keeps its next tick and its pause."""
    if previous is not None and (previous.cron, previous.timezone) == (spec.cron, spec.timezone):
        paused, next_fire_at = previous.paused, previous.next_fire_at
    else:
        paused = spec.paused if previous is None else previous.paused
        next_fire_at = None if paused else first_tick(spec.cron, spec.timezone, now)
    return {
        "tenant": spec.tenant,
        "id": spec.id,
        "workflow": spec.workflow,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "input": None if spec.input is None else serde.dumps_text(spec.input),
        "catch_up": spec.catch_up,
        "origin": origin,
        "paused": paused,
        "next_fire_at": next_fire_at,
    }


def schedule_from_workflow(schedule_id: str) -> Conflict:
    return Conflict(
        f"schedule {schedule_id!r} comes from its workflow's on.cron: remove it there, or pause it",
        code="schedule_from_workflow",
    )


def cannot_plan(schedule: ScheduleRecord, error: Exception) -> None:
    """A schedule this process cannot compute ticks for (its time zone is missing from this
    machine's tzdata): it is left as it is, for a scheduler on a machine that can."""
    logger.warning(
        "schedule %s (tenant %s) left for another scheduler: %s",
        schedule.id,
        schedule.tenant,
        error,
    )


def fired_tick(
    schedule: ScheduleRecord,
    tick: datetime,
    fired_at: datetime,
    run_id: str | None,
    error: str | None,
) -> Tick:
    return Tick(
        tenant=schedule.tenant,
        schedule_id=schedule.id,
        tick=tick,
        fired_at=fired_at,
        run_id=run_id,
        error=error,
    )

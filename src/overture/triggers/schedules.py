"""Cron schedules: which ticks to fire now, and the schedules a workflow's ``on.cron`` declares.

Pure: the store calls ``plan`` inside the transaction that claims a due schedule, writes one row
per fired tick (its primary key makes a tick fire once however many schedulers run) and moves
``next_fire_at`` on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from overture.core.model import Workflow
from overture.errors import OvertureError
from overture.store.records import DEFAULT_TENANT, ScheduleSpec
from overture.triggers.cron import Cron, time_zone

MISFIRE_GRACE = timedelta(seconds=60)
"""A tick found later than this after its time was missed (everything was down): it fires only
if the schedule catches up."""

SCHEDULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""Ids of schedules made through the API; a workflow's own are ``<workflow>:cron:<index>``."""
MOST_CATCH_UP = 1000


class ScheduleInvalid(OvertureError, ValueError):
    """A schedule that cannot be made: its id or catch-up (its cron: ``CronInvalid``)."""

    code = "invalid_request"


def check_schedule(spec: ScheduleSpec) -> None:
    """``ScheduleInvalid`` or ``CronInvalid`` unless ``spec`` can be made through the API."""
    if not SCHEDULE_ID.fullmatch(spec.id):
        raise ScheduleInvalid(
            f"schedule id {spec.id!r}: 1 to 128 letters, digits, '_', '.' or '-', starting with "
            "a letter or digit"
        )
    if not 0 <= spec.catch_up <= MOST_CATCH_UP:
        raise ScheduleInvalid(f"catch_up must be 0 to {MOST_CATCH_UP}, not {spec.catch_up}")
    first_tick(spec.cron, spec.timezone, datetime.now(UTC))  # CronInvalid for a bad one


_STEP = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, kw_only=True, slots=True)
class TickPlan:
    fire: list[datetime]
    """Ticks to fire now, oldest first."""
    next_fire_at: datetime


def plan(expression: str, timezone: str, due: datetime, now: datetime, catch_up: int) -> TickPlan:
    """The ticks from ``due`` (the first unhandled one) up to ``now`` that fire, and the next."""
    cron, zone = Cron.parse(expression), time_zone(timezone)
    cutoff = max(due, now - MISFIRE_GRACE)
    on_time = cron.between(cutoff - _STEP, now, zone, limit=10_000)
    missed = _last_missed(cron, zone, due, cutoff, catch_up) if catch_up else []
    return TickPlan(fire=missed + on_time, next_fire_at=cron.next_after(now, zone))


def _last_missed(
    cron: Cron, zone: ZoneInfo, due: datetime, cutoff: datetime, count: int
) -> list[datetime]:
    """The last ``count`` ticks in [due, cutoff), found by bisecting on time for the latest
    start that still has ``count`` ticks before ``cutoff``: each probe enumerates at most
    ``count`` ticks, so a schedule down for a year costs a few dozen probes, not a year of
    ticks."""

    def ticks_from(start: datetime) -> list[datetime]:
        return cron.between(start - _STEP, cutoff - _STEP, zone, limit=count)

    if len(ticks_from(due)) < count:
        return ticks_from(due)
    enough, too_late = due, cutoff  # ticks_from(enough) has count ticks; too_late has fewer
    while too_late - enough > _SECOND:
        middle = enough + (too_late - enough) / 2
        if len(ticks_from(middle)) >= count:
            enough = middle
        else:
            too_late = middle
    return ticks_from(enough)


def first_tick(expression: str, timezone: str, now: datetime) -> datetime:
    """When a new (or resumed) schedule first fires."""
    return Cron.parse(expression).next_after(now, time_zone(timezone))


def schedule_run_key(tenant: str, schedule_id: str, tick: datetime) -> str:
    """The idempotency key of a tick's run: one run per tick."""
    return f"schedule:{tenant}:{schedule_id}:{tick.isoformat()}"


def workflow_schedules(workflow: Workflow, tenant: str = DEFAULT_TENANT) -> list[ScheduleSpec]:
    """The schedules a workflow's ``on.cron`` declares."""
    return [
        ScheduleSpec(
            id=f"{workflow.name}:cron:{index}",
            workflow=workflow.name,
            cron=trigger.cron,
            timezone=trigger.timezone,
            input=trigger.input,
            catch_up=trigger.catch_up,
            tenant=tenant,
        )
        for index, trigger in enumerate(workflow.on.cron_triggers())
    ]

"""Events, schedules and ticks as the API's JSON (the shapes ``api.trigger_schemas`` declares)."""

from __future__ import annotations

from typing import Any

from overture.store.records import EventRecord, ScheduleRecord, Tick


def event(record: EventRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "type": record.type,
        "payload": record.payload,
        "user_id": record.user_id,
        "correlation_id": record.correlation_id,
        "idempotency_key": record.idempotency_key,
        "source": record.source,
        "meta": dict(record.meta),
        "received_at": record.received_at,
        "routes": [
            {"workflow": r.workflow, "version": r.version, "run_id": r.run_id, "reason": r.reason}
            for r in record.routes
        ],
    }


def schedule(record: ScheduleRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "workflow": record.workflow,
        "cron": record.cron,
        "timezone": record.timezone,
        "input": record.input,
        "catch_up": record.catch_up,
        "origin": record.origin,
        "paused": record.paused,
        "next_fire_at": record.next_fire_at,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def tick(record: Tick) -> dict[str, Any]:
    return {
        "tick": record.tick,
        "fired_at": record.fired_at,
        "run_id": record.run_id,
        "error": record.error,
    }

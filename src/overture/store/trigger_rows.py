"""Rows of the trigger tables to records and back, shared by both dialects (see ``rows``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from overture import serde
from overture.store.records import (
    EventRecord,
    EventRoute,
    ScheduleRecord,
    Tick,
    WebhookSecret,
    WebhookSource,
)
from overture.store.rows import Row, When


def event_record(row: Row, when: When) -> EventRecord:
    (
        seq,
        tenant,
        event_id,
        type_,
        payload,
        user_id,
        correlation_id,
        key,
        source,
        meta,
        routes,
        at,
    ) = row
    return EventRecord(
        id=event_id,
        tenant=tenant,
        type=type_,
        payload=None if payload is None else serde.loads(payload),
        user_id=user_id,
        correlation_id=correlation_id,
        idempotency_key=key,
        source=source,
        meta=serde.loads(meta),
        routes=tuple(EventRoute(**route) for route in serde.loads(routes)),
        received_at=when(at),
        seq=seq,
    )


def routes_text(routes: Sequence[EventRoute]) -> str:
    return serde.dumps_text(
        [
            {
                k: v
                for k, v in (
                    ("workflow", r.workflow),
                    ("version", r.version),
                    ("run_id", r.run_id),
                    ("reason", r.reason),
                )
                if v is not None
            }
            for r in routes
        ]
    )


def webhook_source(row: Row, when: When) -> WebhookSource:
    name, tenant, scheme, secrets, options, created_at, updated_at = row
    return WebhookSource(
        name=name,
        tenant=tenant,
        scheme=scheme,
        secrets=tuple(_secret(s) for s in serde.loads(secrets)),
        options=serde.loads(options),
        created_at=when(created_at),
        updated_at=when(updated_at),
    )


def secrets_text(secrets: Sequence[WebhookSecret]) -> str:
    return serde.dumps_text(
        [
            {
                "value": s.value,
                "added_at": s.added_at.isoformat(),
                "expires_at": None if s.expires_at is None else s.expires_at.isoformat(),
            }
            for s in secrets
        ]
    )


def _secret(data: dict[str, Any]) -> WebhookSecret:
    expires = data.get("expires_at")
    return WebhookSecret(
        value=data["value"],
        added_at=datetime.fromisoformat(data["added_at"]),
        expires_at=None if expires is None else datetime.fromisoformat(expires),
    )


def schedule_record(row: Row, when: When) -> ScheduleRecord:
    (
        tenant,
        schedule_id,
        workflow,
        cron,
        timezone,
        input_,
        catch_up,
        origin,
        paused,
        next_fire_at,
        created_at,
        updated_at,
    ) = row
    return ScheduleRecord(
        tenant=tenant,
        id=schedule_id,
        workflow=workflow,
        cron=cron,
        timezone=timezone,
        input=None if input_ is None else serde.loads(input_),
        catch_up=catch_up,
        origin=cast(Any, origin),
        paused=bool(paused),
        next_fire_at=None if next_fire_at is None else when(next_fire_at),
        created_at=when(created_at),
        updated_at=when(updated_at),
    )


def tick(row: Row, when: When) -> Tick:
    tenant, schedule_id, at, fired_at, run_id, error = row
    return Tick(
        tenant=tenant,
        schedule_id=schedule_id,
        tick=when(at),
        fired_at=when(fired_at),
        run_id=run_id,
        error=error,
    )

"""The embedded store's events (recorded and routed to runs in one write) and webhook sources."""

from __future__ import annotations

import sqlite3

from overture import serde
from overture.errors import NotFound
from overture.ids import new_event_id
from overture.store import trigger_rows as tr
from overture.store.codec import decode_position, encode_position
from overture.store.records import (
    DEFAULT_TENANT,
    EventRecord,
    EventRoute,
    NewEvent,
    Page,
    WebhookSource,
)
from overture.store.sqlite_base import Q, when
from overture.store.sqlite_workflows import SQLiteWorkflows
from overture.store.sqlite_writer import Tx
from overture.store.triggers import (
    ROUTE_ERRORS,
    new_secrets,
    rotated,
    route_error,
    source_taken,
    start_request,
)
from overture.triggers.events import event_input, routes


class SQLiteEvents(SQLiteWorkflows):
    async def record_event(self, event: NewEvent) -> tuple[EventRecord, bool]:
        event_id = event.id or new_event_id()

        def write(tx: Tx) -> tuple[EventRecord, bool]:
            seen = self._event_seen(tx.conn, event.tenant, event_id, event.idempotency_key)
            if seen is not None:
                return seen, False
            inserted = tx.one(
                "received_event_insert",
                event.tenant,
                event_id,
                event.type,
                None if event.payload is None else serde.dumps_text(event.payload),
                event.user_id,
                event.correlation_id,
                event.idempotency_key,
                event.source,
                serde.dumps_text(dict(event.meta)),
                tx.now,
            )
            seq = inserted[0]
            tx.conn.execute(
                Q["received_event_routes"], (tr.routes_text(self._route(tx, event_id, event)), seq)
            )
            return tr.event_record(tx.one("received_event_get", event.tenant, event_id), when), True

        return await self._write(write)

    def _route(self, tx: Tx, event_id: str, event: NewEvent) -> list[EventRoute]:
        """Start a run of every workflow that listens for the event; say why not where none."""
        data = event_input(event_id, event)
        heads = tx.conn.execute(Q["workflow_heads"], (event.tenant,)).fetchall()
        candidates = (
            (self._workflow(tx.conn, event.tenant, name, version), bool(disabled))
            for name, version, disabled in heads
        )
        found = []
        for workflow, reason in routes(candidates, data):
            route = EventRoute(workflow=workflow.name, version=workflow.version, reason=reason)
            if reason is None:
                try:
                    run, _ = self._start(tx, start_request(event, event_id, workflow, data))
                    route = EventRoute(workflow=workflow.name, version=run.version, run_id=run.id)
                except ROUTE_ERRORS as error:
                    route = EventRoute(
                        workflow=workflow.name, version=workflow.version, reason=route_error(error)
                    )
            found.append(route)
        return found

    def _event_seen(
        self, conn: sqlite3.Connection, tenant: str, event_id: str, key: str | None
    ) -> EventRecord | None:
        row = conn.execute(
            Q["received_event_seen"], {"tenant": tenant, "id": event_id, "key": key}
        ).fetchone()
        return None if row is None else tr.event_record(row, when)

    async def get_event(self, event_id: str, *, tenant: str = DEFAULT_TENANT) -> EventRecord:
        def read(conn: sqlite3.Connection) -> EventRecord:
            row = conn.execute(Q["received_event_get"], (tenant, event_id)).fetchone()
            if row is None:
                raise NotFound("event", event_id)
            return tr.event_record(row, when)

        return await self._read(read)

    async def list_events(
        self,
        *,
        tenant: str = DEFAULT_TENANT,
        type: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[EventRecord]:
        params = {
            "tenant": tenant,
            "type": type,
            "before": None if cursor is None else decode_position(cursor),
            "limit": limit + 1,
        }

        def read(conn: sqlite3.Connection) -> Page[EventRecord]:
            found = [
                tr.event_record(r, when) for r in conn.execute(Q["received_event_list"], params)
            ]
            more = len(found) > limit
            items = found[:limit]
            return Page(items=items, next_cursor=encode_position(items[-1].seq) if more else None)

        return await self._read(read)

    # --- webhook sources -------------------------------------------------------------------
    async def create_webhook_source(self, source: WebhookSource) -> WebhookSource:
        def write(tx: Tx) -> WebhookSource:
            row = tx.one(
                "webhook_source_insert",
                source.name,
                source.tenant,
                source.scheme,
                tr.secrets_text(new_secrets(source.secrets, when(tx.now))),
                serde.dumps_text(dict(source.options)),
                tx.now,
                tx.now,
            )
            if row is None:
                raise source_taken(source.name)
            return tr.webhook_source(row, when)

        return await self._write(write)

    async def webhook_source(self, name: str, *, tenant: str | None = None) -> WebhookSource:
        def read(conn: sqlite3.Connection) -> WebhookSource:
            row = conn.execute(Q["webhook_source_get"], {"name": name, "tenant": tenant}).fetchone()
            if row is None:
                raise NotFound("webhook source", name)
            return tr.webhook_source(row, when)

        return await self._read(read)

    async def list_webhook_sources(self, *, tenant: str = DEFAULT_TENANT) -> list[WebhookSource]:
        def read(conn: sqlite3.Connection) -> list[WebhookSource]:
            found = conn.execute(Q["webhook_source_list"], (tenant,)).fetchall()
            return [tr.webhook_source(row, when) for row in found]

        return await self._read(read)

    async def rotate_webhook_secret(
        self, name: str, secret: str, *, retire_after: float, tenant: str = DEFAULT_TENANT
    ) -> WebhookSource:
        def write(tx: Tx) -> WebhookSource:
            params = {"name": name, "tenant": tenant}
            row = tx.conn.execute(Q["webhook_source_get"], params).fetchone()
            if row is None:
                raise NotFound("webhook source", name)
            now = when(tx.now)
            kept = rotated(tr.webhook_source(row, when).secrets, secret, now, retire_after)
            updated = tx.one("webhook_source_secrets", tr.secrets_text(kept), tx.now, name)
            return tr.webhook_source(updated, when)

        return await self._write(write)

    async def delete_webhook_source(self, name: str, *, tenant: str = DEFAULT_TENANT) -> None:
        def write(tx: Tx) -> None:
            if tx.conn.execute(Q["webhook_source_delete"], (name, tenant)).rowcount == 0:
                raise NotFound("webhook source", name)

        await self._write(write)

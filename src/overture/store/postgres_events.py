"""The PostgreSQL store's events (recorded and routed to runs in one transaction) and webhook
sources."""

from __future__ import annotations

from overture import serde
from overture.errors import Conflict, NotFound
from overture.ids import new_event_id
from overture.store import trigger_rows as tr
from overture.store.codec import decode_position, encode_position
from overture.store.postgres_tx import Q, Tx, when
from overture.store.postgres_workflows import PostgresWorkflows
from overture.store.records import (
    DEFAULT_TENANT,
    EventRecord,
    EventRoute,
    NewEvent,
    Page,
    WebhookSource,
)
from overture.store.triggers import (
    ROUTE_ERRORS,
    new_secrets,
    rotated,
    route_error,
    source_taken,
    start_request,
)
from overture.triggers.events import event_input, routes


class PostgresEvents(PostgresWorkflows):
    async def record_event(self, event: NewEvent) -> tuple[EventRecord, bool]:
        event_id = event.id or new_event_id()

        async def write(tx: Tx) -> tuple[EventRecord, bool]:
            seen = await self._event_seen(tx, event, event_id)
            if seen is not None:
                return seen, False
            seq = await tx.conn.fetchval(
                Q["received_event_insert"],
                event.tenant,
                event_id,
                event.type,
                None if event.payload is None else serde.dumps_text(event.payload),
                event.user_id,
                event.correlation_id,
                event.idempotency_key,
                event.source,
                serde.dumps_text(dict(event.meta)),
            )
            if seq is None:  # a concurrent delivery of the same event committed first
                seen = await self._event_seen(tx, event, event_id)
                if seen is None:  # it rolled back: it held the id only while it lasted
                    raise Conflict(
                        f"event {event_id!r} is being recorded by a request that did not finish",
                        code="event_in_flight",
                    )
                return seen, False
            found = tr.routes_text(await self._route(tx, event_id, event))
            await tx.conn.execute(Q["received_event_routes"], found, seq)
            row = await tx.conn.fetchrow(Q["received_event_get"], event.tenant, event_id)
            return tr.event_record(row, when), True

        return await self._write(write)

    async def _route(self, tx: Tx, event_id: str, event: NewEvent) -> list[EventRoute]:
        """Start a run of every workflow that listens for the event; say why not where none."""
        data = event_input(event_id, event)
        heads = await tx.conn.fetch(Q["workflow_heads"], event.tenant)
        candidates = [
            (await self._workflow(tx, event.tenant, name, version), bool(disabled))
            for name, version, disabled in heads
        ]
        found = []
        for workflow, reason in routes(candidates, data):
            route = EventRoute(workflow=workflow.name, version=workflow.version, reason=reason)
            if reason is None:
                try:
                    run, _ = await self._start(tx, start_request(event, event_id, workflow, data))
                    route = EventRoute(workflow=workflow.name, version=run.version, run_id=run.id)
                except ROUTE_ERRORS as error:
                    route = EventRoute(
                        workflow=workflow.name, version=workflow.version, reason=route_error(error)
                    )
            found.append(route)
        return found

    async def _event_seen(self, tx: Tx, event: NewEvent, event_id: str) -> EventRecord | None:
        row = await tx.conn.fetchrow(
            Q["received_event_seen"], event.tenant, event_id, event.idempotency_key
        )
        return None if row is None else tr.event_record(row, when)

    async def get_event(self, event_id: str, *, tenant: str = DEFAULT_TENANT) -> EventRecord:
        row = await self._need_pool().fetchrow(Q["received_event_get"], tenant, event_id)
        if row is None:
            raise NotFound("event", event_id)
        return tr.event_record(row, when)

    async def list_events(
        self,
        *,
        tenant: str = DEFAULT_TENANT,
        type: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[EventRecord]:
        before = None if cursor is None else decode_position(cursor)
        found = await self._need_pool().fetch(
            Q["received_event_list"], tenant, type, before, limit + 1
        )
        items = [tr.event_record(row, when) for row in found[:limit]]
        more = len(found) > limit
        return Page(items=items, next_cursor=encode_position(items[-1].seq) if more else None)

    # --- webhook sources -------------------------------------------------------------------
    async def create_webhook_source(self, source: WebhookSource) -> WebhookSource:
        async def write(tx: Tx) -> WebhookSource:
            now = await tx.clock()
            row = await tx.conn.fetchrow(
                Q["webhook_source_insert"],
                source.name,
                source.tenant,
                source.scheme,
                tr.secrets_text(new_secrets(source.secrets, now)),
                serde.dumps_text(dict(source.options)),
            )
            if row is None:
                raise source_taken(source.name)
            return tr.webhook_source(row, when)

        return await self._write(write)

    async def webhook_source(self, name: str, *, tenant: str | None = None) -> WebhookSource:
        row = await self._need_pool().fetchrow(Q["webhook_source_get"], name, tenant)
        if row is None:
            raise NotFound("webhook source", name)
        return tr.webhook_source(row, when)

    async def list_webhook_sources(self, *, tenant: str = DEFAULT_TENANT) -> list[WebhookSource]:
        found = await self._need_pool().fetch(Q["webhook_source_list"], tenant)
        return [tr.webhook_source(row, when) for row in found]

    async def rotate_webhook_secret(
        self, name: str, secret: str, *, retire_after: float, tenant: str = DEFAULT_TENANT
    ) -> WebhookSource:
        async def write(tx: Tx) -> WebhookSource:
            row = await tx.conn.fetchrow(Q["webhook_source_get_locked"], name, tenant)
            if row is None:
                raise NotFound("webhook source", name)
            now = await tx.clock()
            kept = rotated(tr.webhook_source(row, when).secrets, secret, now, retire_after)
            updated = await tx.conn.fetchrow(
                Q["webhook_source_secrets"], tr.secrets_text(kept), name
            )
            return tr.webhook_source(updated, when)

        return await self._write(write)

    async def delete_webhook_source(self, name: str, *, tenant: str = DEFAULT_TENANT) -> None:
        status = await self._need_pool().execute(Q["webhook_source_delete"], name, tenant)
        if status.endswith(" 0"):
            raise NotFound("webhook source", name)

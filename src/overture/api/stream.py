"""A run's events as Server-Sent Events: in order, resumable, closed when the run ends.

Each event is one SSE message whose ``id`` is its ``seq`` and whose ``data`` is the event as JSON
(the same shape as ``GET /v1/runs/{id}/events``). A client that reconnects with
``Last-Event-ID: N`` receives exactly the events after N. The stream polls the store, backing
off while the run is quiet, so it works the same across processes and machines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Header
from starlette.responses import StreamingResponse

from overture import serde
from overture.api import views
from overture.api.problems import ApiError
from overture.api.schemas import MAX_SEQ
from overture.core.state import TERMINAL_RUN
from overture.store.base import Store

LAST_EVENT_ID = Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)]
BATCH = 500
FIRST_PAUSE, LONGEST_PAUSE = 0.02, 0.5
"""Seconds between polls of a quiet run: short right after an event, growing while quiet."""
KEEP_ALIVE = 15.0
"""Seconds of silence before a comment line keeps proxies from closing the connection."""
RECONNECT_MS = 1000

# Before OpenAPI 3.2, the schema of an event-stream response describes one event.
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event's seq."},
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "description": "The event as JSON, as GET /v1/runs/{id}/events returns it.",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/EventOut"},
        },
    },
}


def stream_responses(what: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of a 200 that streams ``what``'s events."""
    return {
        200: {
            "description": f"Server-Sent Events: each event of {what}, in order (`id` is its "
            "seq), until it ends; reconnect with `Last-Event-ID` to resume after that seq.",
            "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
        }
    }


def resume_after(last_event_id: str | None) -> int:
    if last_event_id is None or last_event_id == "":
        return 0
    if not last_event_id.isdigit() or int(last_event_id) > MAX_SEQ:
        raise ApiError(400, "bad_last_event_id", "Last-Event-ID must be an event's seq")
    return int(last_event_id)


async def event_stream(
    store: Store, run_id: str, tenant: str, last_event_id: str | None
) -> StreamingResponse:
    after = resume_after(last_event_id)
    await store.get_run(run_id, tenant=tenant)  # 404 now, not halfway through a stream
    return StreamingResponse(
        _messages(store, run_id, tenant, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _messages(store: Store, run_id: str, tenant: str, after: int) -> AsyncIterator[bytes]:
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    pause, last_sent = FIRST_PAUSE, time.monotonic()
    while True:
        found = await store.events(run_id, tenant=tenant, after=after, limit=BATCH)
        if found:
            yield b"".join(
                b"id: %d\ndata: %s\n\n" % (e.seq, serde.dumps(views.event(e))) for e in found
            )
            after, pause, last_sent = found[-1].seq, FIRST_PAUSE, time.monotonic()
            continue
        run = await store.get_run(run_id, tenant=tenant)
        if run.status in TERMINAL_RUN and run.events <= after:
            return
        if time.monotonic() - last_sent >= KEEP_ALIVE:
            yield b": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)

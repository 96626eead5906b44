"""A run's events as Server-Sent Events: in order, resumable, closed when the run ends.

Each event is one SSE message whose ``id`` is its ``seq`` and whose ``data`` is the event as JSON
(the same shape as ``GET /v1/runs/{id}/events``). A client that reconnects with
``Last-Event-ID: N`` receives exactly the events after N. The stream polls the store, backing
off while the run is quiet, so it works the same across processes and machines.

Asked for ``?logs=true``, the stream also carries the lines the run's handlers log, each as a
message named ``log`` (``data``: the line as ``GET /v1/runs/{id}/logs`` shows it), a line before
the event that completed its attempt. Every message's ``id`` is then ``SEQ:LINE``, the last event
and the last line sent so far, so one ``Last-Event-ID`` resumes both exactly. Both forms of id
are accepted with or without logs: a plain ``N`` resumes the events after N and every line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, Query
from starlette.responses import StreamingResponse

from overture import serde
from overture.api import views
from overture.api.problems import ApiError
from overture.api.schemas import MAX_ID, MAX_SEQ
from overture.core import events as ev
from overture.core.state import TERMINAL_RUN
from overture.store.base import Store
from overture.store.records import LogRecord, StoredEvent

LAST_EVENT_ID = Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)]
WITH_LOGS = Annotated[
    bool,
    Query(description="true: also each line handlers log, as a message named `log`."),
]
BATCH = 500
FIRST_PAUSE, LONGEST_PAUSE = 0.02, 0.5
"""Seconds between polls of a quiet run: short right after an event, growing while quiet."""
KEEP_ALIVE = 15.0
"""Seconds of silence before a comment line keeps proxies from closing the connection."""
RECONNECT_MS = 1000

# Before OpenAPI 3.2, the schema of an event-stream response describes one message.
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "data"],
    "properties": {
        "id": {
            "type": "string",
            "pattern": "^[0-9]+(:[0-9]+)?$",
            "description": "The event's seq; with ?logs=true, SEQ:LINE (the last event's seq "
            "and the last log line's id sent so far).",
        },
        "event": {
            "type": "string",
            "enum": ["message", "log"],
            "description": "`log` for a log line (only with ?logs=true); for an event, absent "
            "(SSE's default, `message`).",
        },
        "data": {
            "type": "string",
            "description": "The event as JSON, as GET /v1/runs/{id}/events returns it, or the "
            "log line, as GET /v1/runs/{id}/logs returns it.",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/EventOut"},
                    {"$ref": "#/components/schemas/LogOut"},
                ]
            },
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


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a stream stands: the last event and the last log line it sent."""

    seq: int = 0
    line: int = 0


def resume_after(last_event_id: str | None) -> Cursor:
    """The cursor a ``Last-Event-ID`` names: ``N`` or ``N:M`` (nothing: the start)."""
    if last_event_id is None or last_event_id == "":
        return Cursor()
    seq, sep, line = last_event_id.partition(":")
    if not seq.isdigit() or (sep and not line.isdigit()):
        raise ApiError(400, "bad_last_event_id", "Last-Event-ID must be SEQ or SEQ:LINE")
    if int(seq) > MAX_SEQ or (sep and int(line) > MAX_ID):
        raise ApiError(400, "bad_last_event_id", "Last-Event-ID names no event or line")
    return Cursor(int(seq), int(line) if sep else 0)


async def event_stream(
    store: Store, run_id: str, tenant: str, last_event_id: str | None, *, logs: bool = False
) -> StreamingResponse:
    after = resume_after(last_event_id)
    await store.get_run(run_id, tenant=tenant)  # 404 now, not halfway through a stream
    return StreamingResponse(
        _messages(store, run_id, tenant, after, logs),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _messages(
    store: Store, run_id: str, tenant: str, at: Cursor, logs: bool
) -> AsyncIterator[bytes]:
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    pause, last_sent = FIRST_PAUSE, time.monotonic()
    while True:
        found = await store.events(run_id, tenant=tenant, after=at.seq, limit=BATCH)
        # Read after the events: a line is stored with its attempt's completion, so a line
        # whose event this read missed is sent before that event, which is its place anyway.
        lines = await store.logs(run_id, tenant=tenant, after=at.line, limit=BATCH) if logs else []
        if found or lines:
            chunk, at = interleaved(found, lines, at) if logs else _events_only(found, at)
            yield chunk
            pause, last_sent = FIRST_PAUSE, time.monotonic()
            continue
        run = await store.get_run(run_id, tenant=tenant)
        if run.status in TERMINAL_RUN and run.events <= at.seq:
            return
        if time.monotonic() - last_sent >= KEEP_ALIVE:
            yield b": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)


def _events_only(found: Sequence[StoredEvent], at: Cursor) -> tuple[bytes, Cursor]:
    chunk = b"".join(b"id: %d\ndata: %s\n\n" % (e.seq, serde.dumps(views.event(e))) for e in found)
    return chunk, Cursor(found[-1].seq, at.line)


def interleaved(
    found: Sequence[StoredEvent], lines: Sequence[LogRecord], at: Cursor
) -> tuple[bytes, Cursor]:
    """Events and lines as messages, each line before the event that completed its attempt,
    both in their own order; and the cursor after them."""
    parts: list[bytes] = []
    sent = 0
    for stored in found:
        event = stored.event
        if isinstance(event, ev.StepSucceeded | ev.StepFailed):
            key = (event.step_id, event.attempt, event.compensation)
            until = _after_lines_of(lines, sent, key)
            for line in lines[sent:until]:
                at = Cursor(at.seq, line.id)
                parts.append(_log_message(at, line))
            sent = until
        at = Cursor(stored.seq, at.line)
        parts.append(
            b"id: %d:%d\ndata: %s\n\n" % (at.seq, at.line, serde.dumps(views.event(stored)))
        )
    for line in lines[sent:]:
        at = Cursor(at.seq, line.id)
        parts.append(_log_message(at, line))
    return b"".join(parts), at


def _after_lines_of(lines: Sequence[LogRecord], start: int, key: tuple[str, int, bool]) -> int:
    """The index just past the first block of ``key``'s lines from ``start`` (``start``: none).

    An attempt's lines are stored together, so they are one block; lines before it are older
    (a page of lines cut short by ``BATCH``) and go first.
    """
    index = start
    while index < len(lines) and _key(lines[index]) != key:
        index += 1
    if index == len(lines):
        return start
    while index < len(lines) and _key(lines[index]) == key:
        index += 1
    return index


def _key(line: LogRecord) -> tuple[str, int, bool]:
    return (line.step_id, line.attempt, line.compensation)


def _log_message(at: Cursor, line: LogRecord) -> bytes:
    return b"event: log\nid: %d:%d\ndata: %s\n\n" % (at.seq, at.line, serde.dumps(views.log(line)))

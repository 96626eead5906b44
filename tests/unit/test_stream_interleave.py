"""How the SSE stream places log lines among events (``api.stream.interleaved``), without I/O."""

from __future__ import annotations

import json
from typing import Any

from overture.api.stream import Cursor, interleaved
from overture.core import events as ev
from overture.store.records import LogRecord, StoredEvent
from overture.testing import EPOCH


def stored(seq: int, event: ev.Event) -> StoredEvent:
    return StoredEvent(run_id="r", seq=seq, event=event)


def line(line_id: int, step: str, attempt: int = 1) -> LogRecord:
    return LogRecord(
        id=line_id,
        run_id="r",
        step_id=step,
        attempt=attempt,
        compensation=False,
        at=EPOCH,
        level="info",
        message=f"{step} {line_id}",
        fields={},
    )


def messages(chunk: bytes) -> list[tuple[str, str, Any]]:
    """``(name, id, what)``: an event's type, or a line's message."""
    found = []
    for block in chunk.decode().strip().split("\n\n"):
        fields = dict(row.split(": ", 1) for row in block.split("\n"))
        data = json.loads(fields["data"])
        name = fields.get("event", "message")
        found.append((name, fields["id"], data["message"] if name == "log" else data["type"]))
    return found


def test_lines_come_before_the_event_that_completed_their_attempt() -> None:
    events = [
        stored(5, ev.StepStarted(at=EPOCH, step_id="b", attempt=1)),
        stored(6, ev.StepSucceeded(at=EPOCH, step_id="a", attempt=1, output=None)),
        stored(7, ev.StepScheduled(at=EPOCH, step_id="c", attempt=1, input={}, run_at=EPOCH)),
    ]
    # Line 10 is older (its event was sent before: the last page of lines was cut short);
    # line 13 is of an attempt whose completion was stored after the events were read.
    lines = [line(10, "z"), line(11, "a"), line(12, "a"), line(13, "b")]
    chunk, at = interleaved(events, lines, Cursor(4, 9))
    assert messages(chunk) == [
        ("message", "5:9", "StepStarted"),
        ("log", "5:10", "z 10"),
        ("log", "5:11", "a 11"),
        ("log", "5:12", "a 12"),
        ("message", "6:12", "StepSucceeded"),
        ("message", "7:12", "StepScheduled"),
        ("log", "7:13", "b 13"),
    ]
    assert at == Cursor(7, 13)


def test_a_completion_without_lines_takes_none() -> None:
    events = [stored(3, ev.StepFailed(at=EPOCH, step_id="a", attempt=2, error=_error()))]
    chunk, at = interleaved(events, [line(1, "a", attempt=1)], Cursor(2, 0))
    assert messages(chunk) == [("message", "3:0", "StepFailed"), ("log", "3:1", "a 1")]
    assert at == Cursor(3, 1)


def _error() -> ev.ErrorInfo:
    return ev.ErrorInfo(code="x", message="y")

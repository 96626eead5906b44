"""What a ``shell`` step's command prints: each line into the step's log as it comes, up to a
cap, and the end of it kept for the step's output.

Past the cap nothing more is logged, but the pipe is still read to the end: a child blocked on a
full pipe would never exit. One line at the end says how much was not logged.
"""

from __future__ import annotations

import asyncio
from collections import deque

from overture.runtime.context import Level, StepContext
from overture.runtime.redaction import redact

CHUNK_BYTES = 64 * 1024
MAX_LINE_BYTES = 16 * 1024
"""A longer line is logged in pieces of this size (a line needs no end to be logged)."""
QUOTED_CHARS = 300
"""Characters of one line quoted in a failure's message."""


class Capture:
    """One stream (stdout or stderr) of one command: logged lines and the kept end."""

    def __init__(
        self, ctx: StepContext, stream: str, level: Level, limit: int, max_lines: int
    ) -> None:
        self.ctx = ctx
        self.stream = stream
        self.level: Level = level
        self.limit = limit
        self.max_lines = max_lines
        self.logged_bytes = 0
        self.logged_lines = 0
        self.dropped_bytes = 0
        self.dropped_lines = 0
        self._tail: deque[tuple[str, int]] = deque()
        self._tail_bytes = 0
        self._finished = False

    def line(self, raw: bytes) -> None:
        """Log one line (with its newline, if it had one) unless past the cap; keep it."""
        text = raw.decode("utf-8", errors="replace")
        size = len(raw)
        fits = self.logged_bytes + size <= self.limit and self.logged_lines < self.max_lines
        if fits and not self.dropped_lines:
            self.ctx.log(text.rstrip("\r\n"), level=self.level, stream=self.stream)
            self.logged_bytes += size
            self.logged_lines += 1
        else:
            self.dropped_bytes += size
            self.dropped_lines += 1
        # Masked line by line, as the log is: the output is stored like the log.
        self._tail.append((redact(text, self.ctx.secrets), size))
        self._tail_bytes += size
        while len(self._tail) > 1 and self._tail_bytes - self._tail[0][1] >= self.limit:
            self._tail_bytes -= self._tail.popleft()[1]

    def finish(self) -> None:
        """Log, once, how much of the stream was not logged."""
        if self._finished or not self.dropped_lines:
            return
        self._finished = True
        self.ctx.log(
            f"{self.stream}: {self.dropped_bytes} more bytes ({self.dropped_lines} lines) were not "
            f"logged, past the cap of {self.limit} bytes or {self.max_lines} lines; the step's "
            f"output keeps the last {self.limit} bytes",
            level="warning",
            stream=self.stream,
            dropped_bytes=self.dropped_bytes,
            dropped_lines=self.dropped_lines,
        )

    def text(self) -> str:
        """The end of the stream: its last ``limit`` bytes (the first line may be cut)."""
        kept = "".join(text for text, _ in self._tail)
        encoded = kept.encode()
        if len(encoded) <= self.limit:
            return kept
        return encoded[-self.limit :].decode("utf-8", errors="ignore")

    def last_lines(self, count: int) -> list[str]:
        """The last ``count`` lines that are not blank, stripped and shortened, for a message."""
        found: list[str] = []
        for text, _ in reversed(self._tail):
            if line := text.strip():
                cut = line if len(line) <= QUOTED_CHARS else line[: QUOTED_CHARS - 1] + "…"
                found.append(cut)
                if len(found) == count:
                    break
        return found[::-1]


async def pump(stream: asyncio.StreamReader, capture: Capture) -> None:
    """Read ``stream`` to its end, handing ``capture`` each line."""
    pending = b""
    while chunk := await stream.read(CHUNK_BYTES):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            capture.line(line + b"\n")
        while len(pending) >= MAX_LINE_BYTES:
            capture.line(pending[:MAX_LINE_BYTES])
            pending = pending[MAX_LINE_BYTES:]
    if pending:
        capture.line(pending)

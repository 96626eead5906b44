"""Reading Server-Sent Events: the messages in a ``text/event-stream`` body's lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(slots=True)
class Message:
    """One Server-Sent Events message."""

    id: str = ""
    data: str = ""
    retry: int | None = None


async def messages(lines: AsyncIterator[str]) -> AsyncIterator[Message]:
    """The messages in an SSE stream's lines (the WHATWG rules, minus the ``event`` field)."""
    message = Message()
    data: list[str] = []
    async for line in lines:
        if not line:
            if data or message.retry is not None:
                message.data = "\n".join(data)
                yield message
            message, data = Message(id=message.id), []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id":
            message.id = value
        elif name == "retry" and value.isdigit():
            message.retry = int(value)

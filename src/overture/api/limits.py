"""Refuse request bodies over the configured size before reading them into memory."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overture.api.problems import ApiError, problem


class BodyLimit:
    """ASGI middleware: 413 for a body larger than ``max_bytes``, declared or streamed.

    A declared ``Content-Length`` over the limit is refused before the app runs. A streamed
    (chunked) body is counted as the app reads it; past the limit the read fails, and whatever
    the app answers then is replaced by the 413: FastAPI turns any failure to read a body into
    its own 400, which would hide why the request was refused.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen, refused, started, answered = 0, False, False, False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    raise ApiError(413, "body_too_large", self._detail())
            return message

        async def guarded(message: Message) -> None:
            nonlocal started, answered
            if refused and not started:
                if not answered:  # the app's answer to the failed read: ours instead
                    answered = True
                    await self._refuse(scope, receive, send)
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except ApiError:
            if not (refused and not started):
                raise
        if refused and not started and not answered:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await problem(413, "body_too_large", self._detail())(scope, receive, send)

    def _detail(self) -> str:
        return f"request bodies are limited to {self.max_bytes} bytes"

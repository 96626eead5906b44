"""Log lines that say which run, step and attempt they are about, with no secret in them.

    configure_logging("INFO")                      # once, when a command starts
    with logs.bound(run_id=run.id, step_id="a"):   # lines logged inside carry these fields
        logger.info("...")

One handler on the root logger serves Overture's loggers, the libraries' and uvicorn's alike, so
every line of a process has one shape: JSON lines (``json``), readable text (``text``), or, by
default (``auto``), text when the stream is a terminal and JSON otherwise. Before a line is
formatted, a filter masks the process's secrets (``OVERTURE_SECRET_*``) in all of it. The
formats themselves are in ``log_format``; docs/logging.md describes them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from starlette.types import ASGIApp, Receive, Scope, Send

from overture.runtime.redaction import SHORT_SECRET, masker, short_secrets
from overture.runtime.secrets import secrets_from_env
from overture.telemetry import tracecontext
from overture.telemetry.log_format import (
    BOUND_ATTR,
    EXTRA_ATTR,
    JsonFormatter,
    TextFormatter,
    exception_of,
    message_of,
    safe_repr,
    safe_str,
)
from overture.telemetry.tracecontext import parse_traceparent

logger = logging.getLogger("overture")

FORMATS = ("auto", "json", "text")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "overture_log_fields", default=None
)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Every line logged inside (in this task) carries ``fields`` as well."""
    token = _fields.set({**(_fields.get() or {}), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def current() -> dict[str, Any]:
    """The fields bound where this is called (a copy)."""
    return dict(_fields.get() or {})


# --- the process's handler ---------------------------------------------------------------------


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler ``configure_logging`` installs (its type finds it again)."""


def configure_logging(
    level: str,
    fmt: str = "auto",
    stream: TextIO | None = None,
    secrets: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send every logger's lines, uvicorn's included, to ``stream`` (stderr) in ``fmt``, with
    ``secrets`` (by default the process's ``OVERTURE_SECRET_*`` values) masked.

    Calling it again replaces the handler it installed rather than adding another.
    """
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    stream = sys.stderr if stream is None else stream
    secrets = secrets_from_env(os.environ) if secrets is None else secrets
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if _wants_json(fmt, stream) else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()  # forgets it; the stream it wrote to stays open
    # First in line, so that any handler added elsewhere (an error reporter, a test's capture)
    # receives the record masked, its arguments already interpolated.
    root.handlers.insert(0, handler)
    root.setLevel(level.upper())
    for name in UVICORN_LOGGERS:
        # uvicorn's own handlers print in its own format; without them its lines reach ours.
        # (uvicorn.Config mutes uvicorn.access again when the server runs with access_log off.)
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)  # the process's level, not one uvicorn chose
    logging.captureWarnings(True)  # a warnings.warn is a line like any other, not raw stderr
    # Crashes print raw tracebacks, unmasked, over several lines: make each one line instead,
    # in the main thread, in other threads (the SQLite writer, exporters, the metrics server)
    # and in ``__del__`` methods and callbacks that cannot raise.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable
    for name in short_secrets(secrets):
        logger.warning(
            "the value of secret %s is shorter than %d characters: those characters are "
            "masked wherever they appear in log lines, ids and numbers included",
            name,
            SHORT_SECRET,
        )
    return handler


def logging_to(stream: TextIO) -> bool:
    """Whether ``configure_logging`` installed its handler and it writes to ``stream``."""
    root = logging.getLogger()
    return any(isinstance(h, _Handler) and h.stream is stream for h in root.handlers)


def _wants_json(fmt: str, stream: TextIO) -> bool:
    if fmt != "auto":
        return fmt == "json"
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return True


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: types.TracebackType | None
) -> None:
    """A crash's traceback as a log line (masked, and JSON when lines are), not raw text."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logger.critical("uncaught exception", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if issubclass(args.exc_type, SystemExit):  # ends the thread quietly, as by default
        return
    name = args.thread.name if args.thread is not None else "?"
    trace = (args.exc_type, args.exc_value, args.exc_traceback)
    logger.error("uncaught exception in thread %s", name, exc_info=trace)  # type: ignore[arg-type]


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    where = unraisable.err_msg or "Exception ignored in"
    what = safe_repr(unraisable.object) if unraisable.object is not None else ""
    trace = (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    logger.error("%s%s", where, f": {what}" if what else "", exc_info=trace)  # type: ignore[arg-type]


class ContextFilter(logging.Filter):
    """Keeps on the record the fields bound where it was logged: the handler may format it
    elsewhere (a queue, a thread), where the context is not the caller's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, BOUND_ATTR):
            setattr(record, BOUND_ATTR, current())
        return True


class SecretFilter(logging.Filter):
    """Masks secret values, API keys and ``Authorization`` tokens in the message (its arguments
    interpolated first), the exception and stack text, and the fields, with
    ``runtime.redaction``'s mask, whichever logger the line came from. The record is changed in
    place (Python 3.11 filters cannot return a copy), so other handlers see it masked too.

    A filter must not raise (the caller that logged would get the error): every step here
    falls back to text rather than fail.
    """

    def __init__(self, secrets: Mapping[str, str]) -> None:
        super().__init__()
        self.mask = masker(secrets, credentials=True)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.mask(message_of(record)), None
        if (exception := exception_of(record)) is not None:
            record.exc_text = self.mask(exception)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        for attr in (BOUND_ATTR, EXTRA_ATTR):
            given = getattr(record, attr, None)
            if isinstance(given, dict):
                setattr(record, attr, self._masked_fields(given))
        return True

    def _masked_fields(self, fields: dict[Any, Any]) -> dict[str, Any]:
        try:
            return {str(k): self._masked(v) for k, v in fields.items()}
        except Exception:  # e.g. a structure that refers to itself: its text, masked
            return {str(k): self.mask(safe_str(v)) for k, v in fields.items()}

    def _masked(self, value: object) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.mask.json(value)


# --- requests ----------------------------------------------------------------------------------


class RequestContext:
    """ASGI middleware: lines logged while a request is handled carry the ``trace_id`` of its
    ``traceparent`` header (an invalid header is ignored, as the W3C spec says)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trace_id = _inbound_trace_id(scope) if scope["type"] in ("http", "websocket") else None
        if trace_id is None:
            await self.app(scope, receive, send)
            return
        with bound(trace_id=trace_id):
            await self.app(scope, receive, send)


def _inbound_trace_id(scope: Scope) -> str | None:
    """As the routes read it (``tracecontext.inbound``): one valid header, or none."""
    values = [v.decode("latin-1") for n, v in scope.get("headers", ()) if n == b"traceparent"]
    parent = parse_traceparent(tracecontext.inbound(values))
    return None if parent is None else parent.trace_id

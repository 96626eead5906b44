"""How a log record becomes a line: one JSON object, or readable text for a terminal.

Both formatters read what ``logs.ContextFilter`` left on the record (the fields bound where the
line was logged) and the ``extra={"overture": {...}}`` a caller passed; neither raises: a record
that cannot be rendered in full still comes out as a line saying what it could.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson

CONTEXT_FIELDS = ("run_id", "step_id", "attempt", "workflow", "tenant", "trace_id", "worker_id")
"""The fields that say what a line is about, first in every line that has them, in this order."""

BOUND_ATTR = "overture_bound"
"""The record attribute holding the fields bound where it was logged (``logs.bound``)."""
EXTRA_ATTR = "overture"
"""The record attribute of ``logger.log(..., extra={"overture": {...}})``."""

_CORE = frozenset({"timestamp", "level", "logger", "message", "exception", "stack"})
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The line's own fields: bound, then extra; ``CONTEXT_FIELDS`` first; None values left out."""
    merged: dict[str, Any] = {}
    for attr in (BOUND_ATTR, EXTRA_ATTR):
        given = getattr(record, attr, None)
        if isinstance(given, dict):
            merged.update(given)
    ordered = {k: merged.pop(k) for k in CONTEXT_FIELDS if k in merged}
    ordered.update(merged)
    return {k: v for k, v in ordered.items() if v is not None and k not in _CORE}


def message_of(record: logging.LogRecord) -> str:
    """The message with its arguments, or, if they do not fit it, both side by side."""
    try:
        return record.getMessage()
    except Exception:  # a bad %-format or a __str__ that raises: keep the line anyway
        return f"{safe_str(record.msg)} (arguments that did not fit: {safe_str(record.args)})"


def exception_of(record: logging.LogRecord) -> str | None:
    """The traceback text of ``exc_info`` (``exc_text`` when a filter already rendered it)."""
    if record.exc_text:
        return record.exc_text
    if not record.exc_info:
        return None
    try:
        return "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    except Exception:
        return safe_str(record.exc_info[1])


def iso_timestamp(seconds: float) -> str:
    """ISO 8601 in UTC, to the millisecond: ``2025-06-01T12:00:00.123Z``."""
    at = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return at.replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, then the context fields
    that are set (absent ones are left out, not null), then ``exception`` if any."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            line: dict[str, Any] = {
                "timestamp": iso_timestamp(record.created),
                "level": record.levelname,
                "logger": record.name,
                "message": message_of(record),
                **context_of(record),
            }
            if (exception := exception_of(record)) is not None:
                line["exception"] = exception
            if record.stack_info:
                line["stack"] = record.stack_info
        except Exception as error:
            return _minimal(record, error)
        return _dumps(line, record)


def _dumps(line: dict[str, Any], record: logging.LogRecord) -> str:
    try:
        return orjson.dumps(line, default=safe_str, option=_JSON_OPTIONS).decode()
    except (TypeError, orjson.JSONEncodeError):
        # e.g. an integer wider than 64 bits, or a lone surrogate (bytes decoded with
        # ``surrogateescape``, which orjson refuses): every string valid, every value JSON
        pass
    try:
        return orjson.dumps(_encodable(line)).decode()
    except Exception as error:
        return _minimal(record, error)


def _encodable(value: object) -> Any:
    """``value`` with every string valid UTF-8 and what orjson cannot hold as text."""
    if isinstance(value, str):
        return valid_text(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, dict):
        return {valid_text(safe_str(k)): _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(item) for item in value]
    return valid_text(safe_str(value))


def _minimal(record: logging.LogRecord, error: BaseException) -> str:
    """A line from what cannot fail, saying why the full one could not be made."""
    line = {
        "timestamp": iso_timestamp(time.time()),
        "level": str(getattr(record, "levelname", "ERROR")),
        "logger": str(getattr(record, "name", "root")),
        "message": safe_str(getattr(record, "msg", "")),
        "log_error": safe_str(error),
    }
    return json.dumps({k: valid_text(v) for k, v in line.items()}, ensure_ascii=True)


class TextFormatter(logging.Formatter):
    """``2025-06-01 14:00:00.123 INFO overture.worker: message  run=… step=… attempt=…``, in
    local time, then the traceback on the lines below when there is one."""

    SHOWN = (("run_id", "run"), ("step_id", "step"), ("attempt", "attempt"))

    def format(self, record: logging.LogRecord) -> str:
        try:
            at = datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
            text = f"{at}.{int(record.msecs):03d} {record.levelname} {record.name}: "
            text += message_of(record)
            text += _pairs(record)
            if (exception := exception_of(record)) is not None:
                text += "\n" + exception
            if record.stack_info:
                text += "\n" + record.stack_info
        except Exception as error:
            text = f"{safe_str(getattr(record, 'msg', ''))} (log line not formatted: {error!r})"
        return valid_text(text)  # a file opened strict would refuse the line otherwise


def _pairs(record: logging.LogRecord) -> str:
    """``  run=… step=… attempt=…`` and a step line's own fields; the rest stays in JSON only."""
    context = context_of(record)
    pairs = [f"{short}={context[name]}" for name, short in TextFormatter.SHOWN if name in context]
    own = context.get("fields")
    if isinstance(own, dict):
        pairs += [f"{k}={safe_str(v)}" for k, v in own.items()]
    return "  " + " ".join(pairs) if pairs else ""


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder when its ``__str__`` raises."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} that cannot be shown>"


def safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder when its ``__repr__`` raises."""
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} that cannot be shown>"


def valid_text(text: str) -> str:
    """``text`` as it is when it is valid UTF-8, else with each lone surrogate (what
    ``surrogateescape`` makes of undecodable bytes) written as its escape: ``caf\\udce9``."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text

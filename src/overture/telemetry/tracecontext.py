"""W3C Trace Context (``traceparent``), without OpenTelemetry: pure.

Every run belongs to a trace, whether or not spans are exported: its ``RunStarted`` event keeps
the run's own span context as a ``traceparent``, taken from the caller's header when there was
one (the run span's parent) or new. Logs carry its trace id, and outbound ``http`` calls carry a
``traceparent`` of the attempt, so a downstream service joins the same trace even when Overture
itself exports nothing.

    version "-" trace-id (32 hex) "-" parent-id (16 hex) "-" flags (2 hex)
"""

from __future__ import annotations

import contextvars
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_LONGEST = 512
"""Longer values are refused unread (a later version may add fields, not kilobytes)."""
_INVALID_TRACE = "0" * 32
_INVALID_SPAN = "0" * 16
SAMPLED = 0x01


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: str
    """32 lowercase hex digits, not all zero."""
    span_id: str
    """16 lowercase hex digits, not all zero: the span this context points at."""
    flags: int = SAMPLED

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def child(self) -> TraceParent:
        """A new span in the same trace, with the same sampling decision."""
        return TraceParent(self.trace_id, new_span_id(), self.flags)


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The context of a ``traceparent`` header; None when absent or invalid (the spec says an
    invalid header is ignored, as if there were none)."""
    if not value or len(value) > _LONGEST:
        return None
    match = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None  # ff is forbidden; version 00 has exactly four fields
    if trace_id == _INVALID_TRACE or span_id == _INVALID_SPAN:
        return None
    # Only the sampled flag is passed on: other bits mean nothing to version 00.
    return TraceParent(trace_id, span_id, int(flags, 16) & SAMPLED)


def inbound(values: Sequence[str]) -> str | None:
    """The ``traceparent`` a request carries, canonical, from all its ``traceparent`` headers:
    None unless there is exactly one and it is valid (two are ambiguous: both are ignored)."""
    if len(values) != 1:
        return None
    parsed = parse_traceparent(values[0])
    return None if parsed is None else parsed.header()


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def run_context(inbound: str | None) -> tuple[TraceParent, str | None]:
    """A new run's span context and its parent span id: a child of the caller's span when the
    caller sent a valid ``traceparent``, else the root of a new trace."""
    parent = parse_traceparent(inbound)
    if parent is None:
        return TraceParent(new_trace_id(), new_span_id()), None
    return parent.child(), parent.span_id


outbound: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "overture_outbound_traceparent", default=None
)
"""The ``traceparent`` a running attempt's outbound calls carry (set by the worker)."""

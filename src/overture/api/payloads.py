"""JSON a client may send as a run's input or a signal's payload: what the store can keep.

Request bodies are parsed with the standard library, which accepts more than JSON: ``NaN`` and
``Infinity``, integers of any size, and escapes of half a surrogate pair (``"\\ud800"``). The
store writes JSON with orjson, which refuses all three, so without this check such a request
would be accepted here and fail as a 500 (or, for ``NaN``, be stored as ``null``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from pydantic import BeforeValidator, JsonValue

from overture.core.document import MAX_DEPTH
from overture.telemetry import tracecontext

SMALLEST_INT, LARGEST_INT = -(2**63), 2**64 - 1
"""The integers orjson writes: 64 bits, signed or not."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` unchanged, or ``ValueError`` naming what JSON cannot carry in it.

    Iterative, and run before pydantic's own validation, so that a deeply nested body is
    refused here rather than by a ``RecursionError``.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not JSON numbers")
        if isinstance(item, int) and not SMALLEST_INT <= item <= LARGEST_INT:
            raise ValueError("integers must fit in 64 bits")
        if isinstance(item, str) and _SURROGATE.search(item):
            raise ValueError("a string holds half of a surrogate pair")
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"nesting is deeper than {MAX_DEPTH} levels")
            children = [*item, *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return value


Payload = Annotated[dict[str, JsonValue], BeforeValidator(storable)]
"""A JSON object the store can keep."""
AnyPayload = Annotated[JsonValue, BeforeValidator(storable)]
"""Any JSON value the store can keep."""


def inbound_trace(
    request: Request,
    traceparent: Annotated[
        str | None,
        Header(
            description="W3C Trace Context: the runs started join the caller's trace (an "
            "invalid value, or more than one, is ignored: a new trace, as the specification says)."
        ),
    ] = None,
) -> str | None:
    """The caller's ``traceparent`` (declared above for the OpenAPI document; read from every
    header of the name, since two are ambiguous)."""
    return tracecontext.inbound(request.headers.getlist("traceparent"))


InboundTrace = Annotated[str | None, Depends(inbound_trace)]

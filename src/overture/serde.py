"""JSON in and out, through orjson: the only payload format Overture stores or sends."""

from __future__ import annotations

import re
from typing import Any, TypeAlias

import orjson

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
"""A value that survives a JSON round trip unchanged."""

JSONObject: TypeAlias = dict[str, JSON]

UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
"""What no text column keeps: NUL (PostgreSQL) and half of a surrogate pair (not UTF-8)."""


def dumps(value: Any) -> bytes:
    """Serialise to compact JSON bytes; keys keep their insertion order."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def dumps_text(value: Any) -> str:
    """Serialise to compact JSON text."""
    return dumps(value).decode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON bytes or text."""
    return orjson.loads(data)

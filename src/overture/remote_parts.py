"""Small pieces of building requests that ``RemoteClient``'s modules share."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def path_part(value: str) -> str:
    """``value`` as one segment of a URL path."""
    return quote(value, safe="")


def present(**fields: Any) -> dict[str, Any]:
    """The fields that were given (not None)."""
    return {k: v for k, v in fields.items() if v is not None}

"""Secret values out of text and data before they leave the process's memory."""

from __future__ import annotations

from collections.abc import Mapping

from overture.serde import JSON

REDACTED = "***"


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """Remove secret values from text headed for events and logs."""
    for value in secrets.values():
        if value:
            text = text.replace(value, REDACTED)
    return text


def redact_json(value: object, secrets: Mapping[str, str]) -> JSON:
    """``value`` as JSON with secret values removed from every string in it, at any depth;
    what JSON cannot hold becomes its text (so a stray ``datetime`` cannot fail a write)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {redact(str(k), secrets): redact_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(item, secrets) for item in value]
    return redact(str(value), secrets)

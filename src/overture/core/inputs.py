"""A run's input against its workflow's ``input`` JSON Schema: defaults filled, then checked."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from overture.errors import InputInvalid
from overture.serde import JSON


def prepare_input(name: str, schema: Mapping[str, Any] | None, data: JSON) -> JSON:
    """``data`` with the schema's property defaults filled in; ``InputInvalid`` if it breaks it.

    The result is what the run records in ``RunStarted``, so templates see the defaults too.
    """
    if schema is None:
        return data
    filled = with_defaults(schema, copy.deepcopy(data))
    errors = sorted(Draft202012Validator(schema).iter_errors(filled), key=lambda e: list(e.path))
    if errors:
        raise InputInvalid(
            name, [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors]
        )
    return filled


def with_defaults(schema: Mapping[str, Any], data: JSON) -> JSON:
    """Fill ``default`` values of missing object properties, at every depth the data has."""
    properties = schema.get("properties")
    if not isinstance(data, dict) or not isinstance(properties, Mapping):
        return data
    for key, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        if key not in data and "default" in sub:
            data[key] = copy.deepcopy(sub["default"])
        if key in data:
            data[key] = with_defaults(sub, data[key])
    return data

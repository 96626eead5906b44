"""Workflow files written for the seed orchestrators, read as Overture workflows.

The Wisely orchestrator's files (``daily_instructor_v1.yml``...) load unmodified: ``key`` is the
name, ``trigger: {type, event_types, cron}`` becomes ``on``, and a step's ``call`` + ``method`` +
``timeout_ms`` become an ``http`` step whose ``call`` path resolves against the configured base URL.
Every moved value keeps its source position, so errors still point at the line the author wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

Path = tuple[str | int, ...]
P = TypeVar("P")

HTTP_SHORTHAND = ("call", "method", "headers", "query", "json", "body")
DEFAULT_CALL_METHOD = "POST"
"""The Wisely agents are actions (begin-week, notify...): a ``call`` without ``method`` posts."""


def normalize(data: Any, positions: Mapping[Path, P]) -> tuple[Any, dict[Path, P]]:
    """Rewrite seed-format fields into Overture's; other data passes through unchanged."""
    moved: dict[Path, P] = dict(positions)
    if not isinstance(data, dict):
        return data, moved
    data = dict(data)
    if "key" in data and "name" not in data:
        data["name"] = data.pop("key")
        _move(moved, ("key",), ("name",))
    if "trigger" in data and "on" not in data:
        data["on"] = _trigger(data.pop("trigger"), moved)
    steps = data.get("steps")
    if isinstance(steps, list):
        data["steps"] = [_step(step, i, moved) for i, step in enumerate(steps)]
    return data, moved


def _trigger(trigger: Any, moved: dict[Path, P]) -> Any:
    _move(moved, ("trigger",), ("on",))
    if not isinstance(trigger, dict):
        return trigger
    on = {k: v for k, v in trigger.items() if k not in ("type", "event_types")}
    if "event_types" in trigger:
        on["events"] = trigger["event_types"]
        _move(moved, ("trigger", "event_types"), ("on", "events"))
    for key in on:
        if key != "events":
            _move(moved, ("trigger", key), ("on", key))
    return on


def _step(step: Any, index: int, moved: dict[Path, P]) -> Any:
    if not isinstance(step, dict):
        return step
    step = dict(step)
    base: Path = ("steps", index)
    if "timeout_ms" in step and "timeout" not in step:
        millis = step.pop("timeout_ms")
        step["timeout"] = millis / 1000 if isinstance(millis, int | float) else millis
        _move(moved, (*base, "timeout_ms"), (*base, "timeout"))
    if "call" in step and "uses" not in step:
        inputs = dict(step.get("with") or {})
        for key in HTTP_SHORTHAND:
            if key in step:
                inputs[key] = step.pop(key)
                _move(moved, (*base, key), (*base, "with", key))
        inputs.setdefault("method", DEFAULT_CALL_METHOD)
        step["uses"] = "http"
        step["with"] = inputs
        _copy(moved, (*base, "with", "call"), (*base, "uses"))
    return step


def _move(positions: dict[Path, P], old: Path, new: Path) -> None:
    """Re-key ``old`` and everything under it to ``new``."""
    for path in [p for p in positions if p[: len(old)] == old]:
        positions[new + path[len(old) :]] = positions.pop(path)


def _copy(positions: dict[Path, P], source: Path, target: Path) -> None:
    if source in positions:
        positions[target] = positions[source]

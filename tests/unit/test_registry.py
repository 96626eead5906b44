"""The handler registry: an object, async handlers, schemas checked."""

from __future__ import annotations

from typing import Any

import pytest

from overture.errors import HandlerNotFound
from overture.handlers.registry import HandlerRegistry, load_registry

registry = HandlerRegistry()  # used by test_load_registry_by_dotted_path


@registry.handler("greet", input_schema={"type": "object", "required": ["name"]})
async def greet(ctx: Any, *, name: str) -> dict[str, str]:
    """Say hello."""
    return {"text": f"hello {name}"}


def test_decorator_registers_with_schema_and_docstring() -> None:
    spec = registry.get("greet")
    assert spec.fn is greet
    assert spec.description == "Say hello."
    assert spec.input_errors({"name": "ana"}) == []
    assert spec.input_errors({}) == ["(top): 'name' is a required property"]


def test_registries_are_independent_objects() -> None:
    other = HandlerRegistry()
    assert "greet" not in other
    assert len(other) == 0


def test_unknown_handler_names_what_exists() -> None:
    with pytest.raises(HandlerNotFound, match=r"no handler named 'gret'.*greet"):
        registry.get("gret")


def test_sync_function_is_refused() -> None:
    def sync(ctx: Any) -> None:
        return None

    with pytest.raises(TypeError, match="must be an async function"):
        HandlerRegistry().register("sync", sync)  # type: ignore[arg-type]


def test_duplicate_name_is_refused() -> None:
    reg = HandlerRegistry()

    async def fn(ctx: Any) -> None:
        return None

    reg.register("a", fn)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", fn)


def test_invalid_schema_is_refused_at_registration() -> None:
    async def fn(ctx: Any) -> None:
        return None

    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        HandlerRegistry().register("a", fn, input_schema={"type": "objekt"})


def test_load_registry_by_dotted_path() -> None:
    loaded = load_registry(f"{__name__}:registry")
    assert loaded is registry
    with pytest.raises(ValueError, match="MODULE:ATTRIBUTE"):
        load_registry("no_colon")
    with pytest.raises(ValueError, match="not a HandlerRegistry"):
        load_registry(f"{__name__}:greet")

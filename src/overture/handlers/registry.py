"""The handler registry: an object you create and pass around, never a module global.

    registry = HandlerRegistry()

    @registry.handler("summarise", input_schema={"type": "object", "required": ["text"]})
    async def summarise(ctx, *, text: str) -> dict:
        return {"summary": text[:100]}

A handler is ``async def fn(ctx, **inputs)``: it receives the step context and the step's
resolved inputs as keyword arguments, and returns JSON data (the step's output).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from overture.errors import HandlerNotFound

HandlerFn = Callable[..., Awaitable[Any]]

BUILTIN_HANDLER_NAMES = frozenset(
    {"http", "shell", "sleep", "wait", "workflow", "llm", "a2a", "plan", "github_pr"}
    | {"noop", "echo", "fail"}
)
"""Names reserved for Overture's built-in handlers; a workflow may use them without registering."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HandlerSpec:
    """A registered handler and the schemas of what it takes and returns."""

    name: str
    fn: HandlerFn
    input_schema: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None
    description: str = ""
    _input_validator: Draft202012Validator | None = field(default=None, repr=False, compare=False)
    _output_validator: Draft202012Validator | None = field(default=None, repr=False, compare=False)

    def input_errors(self, value: Any) -> list[str]:
        """Messages for every way ``value`` breaks the input schema (empty when it fits)."""
        return _errors(self._input_validator, value)

    def output_errors(self, value: Any) -> list[str]:
        """Messages for every way ``value`` breaks the output schema (empty when it fits)."""
        return _errors(self._output_validator, value)


def _errors(validator: Draft202012Validator | None, value: Any) -> list[str]:
    if validator is None:
        return []
    found = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in found]


def _validator(
    schema: Mapping[str, Any] | None, what: str, name: str
) -> Draft202012Validator | None:
    if schema is None:
        return None
    try:
        Draft202012Validator.check_schema(schema)
    except Exception as error:  # jsonschema raises SchemaError; anything else is a bad schema too
        message = f"{what} schema of handler {name!r} is not a valid JSON Schema: {error}"
        raise ValueError(message) from None
    return Draft202012Validator(schema)


class HandlerRegistry:
    """Handlers by name."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def handler(
        self,
        name: str | None = None,
        *,
        input_schema: Mapping[str, Any] | None = None,
        output_schema: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> Callable[[HandlerFn], HandlerFn]:
        """Decorator: register ``async def fn(ctx, **inputs)`` as ``name`` (default: its name)."""

        def register(fn: HandlerFn) -> HandlerFn:
            self.register(
                name or fn.__name__,
                fn,
                input_schema=input_schema,
                output_schema=output_schema,
                description=description,
            )
            return fn

        return register

    def register(
        self,
        name: str,
        fn: HandlerFn,
        *,
        input_schema: Mapping[str, Any] | None = None,
        output_schema: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> HandlerSpec:
        """Register ``fn`` under ``name``; a name can be registered once."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a handler needs a non-empty name, got {name!r}")
        if name in self._specs:
            raise ValueError(f"a handler named {name!r} is already registered")
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"handler {name!r} must be an async function: async def fn(ctx, **inputs)"
            )
        spec = HandlerSpec(
            name=name,
            fn=fn,
            input_schema=input_schema,
            output_schema=output_schema,
            description=description or inspect.getdoc(fn) or "",
            _input_validator=_validator(input_schema, "input", name),
            _output_validator=_validator(output_schema, "output", name),
        )
        self._specs[name] = spec
        return spec

    def get(self, name: str) -> HandlerSpec:
        """The handler registered under ``name`` (``HandlerNotFound`` if none)."""
        try:
            return self._specs[name]
        except KeyError:
            raise HandlerNotFound(name, list(self._specs)) from None

    def include(self, other: HandlerRegistry) -> HandlerRegistry:
        """Add ``other``'s handlers whose names are not taken here (yours win); returns self."""
        for spec in other:
            self._specs.setdefault(spec.name, spec)
        return self

    def names(self) -> frozenset[str]:
        """Every registered name."""
        return frozenset(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[HandlerSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def load_registry(target: str) -> HandlerRegistry:
    """Import ``"package.module:attribute"`` and return the ``HandlerRegistry`` it names."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(
            f"expected MODULE:ATTRIBUTE, e.g. 'myapp.handlers:registry', got {target!r}"
        )
    module = importlib.import_module(module_name)
    registry = getattr(module, attribute, None)
    if not isinstance(registry, HandlerRegistry):
        raise ValueError(f"{target!r} is not a HandlerRegistry (got {type(registry).__name__})")
    return registry

"""Handlers: the registry and, one module each, the built-in handlers."""

from overture.handlers.registry import (
    BUILTIN_HANDLER_NAMES,
    HandlerFn,
    HandlerRegistry,
    HandlerSpec,
)

__all__ = ["BUILTIN_HANDLER_NAMES", "HandlerFn", "HandlerRegistry", "HandlerSpec"]

"""The handlers every Overture process has: ``noop``, ``echo``, ``fail``, ``http``, ``shell``
(which runs nothing unless enabled), and the engine's ``sleep``, ``wait`` and ``workflow``."""

from __future__ import annotations

from overture.handlers.basic import basic_registry
from overture.handlers.engine import engine_registry
from overture.handlers.http import HTTP_INPUT, HTTP_OUTPUT, HttpHandler, HttpSettings
from overture.handlers.registry import HandlerRegistry
from overture.handlers.shell import SHELL_INPUT, SHELL_OUTPUT, ShellHandler, ShellSettings


class BuiltinRegistry(HandlerRegistry):
    """The built-in handlers; ``aclose()`` (or ``async with``) closes the ``http`` connections."""

    def __init__(self, http: HttpHandler) -> None:
        super().__init__()
        self.http = http

    async def aclose(self) -> None:
        """Close pooled connections; call it from the event loop the handlers ran on."""
        await self.http.aclose()

    async def __aenter__(self) -> BuiltinRegistry:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def builtin_registry(
    http: HttpSettings | None = None, *, shell: ShellSettings | None = None
) -> BuiltinRegistry:
    """A registry of the built-in handlers, ``http`` configured by ``http`` (defaults: no base
    URL, no allow-list), ``shell`` by ``shell`` (default: disabled, every call fails). It is a
    ``HandlerRegistry``; close it with ``aclose()`` when done."""
    registry = BuiltinRegistry(HttpHandler(http))
    registry.include(basic_registry())
    registry.include(engine_registry())
    registry.register(
        "http", registry.http.http, input_schema=HTTP_INPUT, output_schema=HTTP_OUTPUT
    )
    registry.register(
        "shell", ShellHandler(shell).shell, input_schema=SHELL_INPUT, output_schema=SHELL_OUTPUT
    )
    return registry

"""The handlers a process runs: the built-in ones plus the user's ``--app`` registry."""

from __future__ import annotations

from dataclasses import dataclass

from overture.handlers.builtin import BuiltinRegistry, builtin_registry
from overture.handlers.http import HttpSettings
from overture.handlers.registry import HandlerRegistry, load_registry
from overture.handlers.shell import ShellSettings
from overture.settings import Settings, SettingsInvalid


@dataclass(frozen=True, slots=True)
class ProcessHandlers:
    """What a worker runs, and the built-in handlers' connections to close at the end."""

    registry: HandlerRegistry
    builtin: BuiltinRegistry

    async def aclose(self) -> None:
        await self.builtin.aclose()


def process_handlers(settings: Settings, *, option: str = "--app") -> ProcessHandlers:
    """``settings.app``'s registry (``MODULE:ATTR``) with the built-in handlers added; the
    ``http`` handler configured by ``http_base_url`` and ``http_allowed_networks``, ``shell``
    running commands only with ``enable_shell`` (and only for ``shell_tenants``, if any).
    ``option`` names the flag that gave ``app``, for the error when it cannot be loaded."""
    try:
        http = HttpSettings(
            base_url=settings.http_base_url,
            allow=settings.http_allowed_networks,
            max_response_bytes=settings.http_max_response_bytes,
        )
    except ValueError as error:
        raise SettingsInvalid(f"http settings: {error}") from None
    shell = ShellSettings(enabled=settings.enable_shell, tenants=settings.shell_tenants)
    builtin = builtin_registry(http, shell=shell)
    if settings.app is None:
        return ProcessHandlers(builtin, builtin)
    try:
        return ProcessHandlers(load_registry(settings.app).include(builtin), builtin)
    except (ImportError, ValueError) as error:
        raise SettingsInvalid(f"{option} {settings.app}: {error}") from None

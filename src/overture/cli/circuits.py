"""``overture circuits``: circuit breakers, on the server (``--url``) or the database."""

from __future__ import annotations

from typing import Any, Protocol

import click
from rich.text import Text

from overture import serde
from overture.api.circuits import circuit, circuit_named
from overture.cli.backends import Target, backend_options, with_backend
from overture.cli.backends import as_http_json as _json
from overture.cli.common import json_option, reports_errors
from overture.cli.console import console, headed_table, time_text
from overture.store.base import Store

STATUS_STYLE = {"closed": "green", "open": "red", "half_open": "yellow"}


class CircuitBackend(Protocol):
    async def list_circuits(self) -> dict[str, Any]: ...

    async def get_circuit(self, key: str) -> dict[str, Any]: ...

    async def reset_circuit(self, key: str) -> dict[str, Any]: ...


class DatabaseCircuits:
    """The circuits of one tenant in the database, answered as the API would."""

    def __init__(self, store: Store, tenant: str) -> None:
        self.store = store
        self.tenant = tenant

    async def list_circuits(self) -> dict[str, Any]:
        found = await self.store.list_circuits(tenant=self.tenant)
        return _json({"items": [circuit(c) for c in found]})

    async def get_circuit(self, key: str) -> dict[str, Any]:
        return _json(circuit(await circuit_named(self.store, key, tenant=self.tenant)))

    async def reset_circuit(self, key: str) -> dict[str, Any]:
        return _json(circuit(await self.store.reset_circuit(key, tenant=self.tenant)))


def _on(target: Target, work: Any) -> Any:
    return with_backend(target, work, local=DatabaseCircuits)


@click.group()
def circuits() -> None:
    """Circuit breakers: which downstreams are failing, and resetting them."""


@circuits.command("ls")
@json_option
@reports_errors
@backend_options
def list_circuits(target: Target, as_json: bool) -> None:
    """Every circuit breaker of the tenant, with its state."""
    found = _on(target, lambda b: b.list_circuits())
    if as_json:
        click.echo(serde.dumps_text(found))
        return
    table = headed_table("key", "status", "failures", "open until", "updated")
    for c in found["items"]:
        table.add_row(
            Text(c["key"]),  # a key is data ("agent:[fe80::1]"), never markup
            Text(c["status"], style=STATUS_STYLE.get(c["status"], "")),
            f"{c['failures']}/{c['threshold']} in {c['window']:g}s",
            time_text(c["open_until"]) if c["status"] == "open" else "",
            time_text(c["updated_at"]),
        )
    console().print(table if found["items"] else "no circuits yet")


@circuits.command("show")
@click.argument("key")
@json_option
@reports_errors
@backend_options
def show_circuit(target: Target, key: str, as_json: bool) -> None:
    """One circuit breaker."""
    _print(_on(target, lambda b: b.get_circuit(key)), as_json)


@circuits.command("reset")
@click.argument("key")
@json_option
@reports_errors
@backend_options
def reset_circuit(target: Target, key: str, as_json: bool) -> None:
    """Close the circuit by hand: its parked jobs start at once."""
    _print(_on(target, lambda b: b.reset_circuit(key)), as_json)


def _print(c: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(serde.dumps_text(c))
        return
    status = Text(c["status"], style=STATUS_STYLE.get(c["status"], ""))
    out = console()
    out.print(Text.assemble(c["key"], ": ", status))
    out.print(f"failures: {c['failures']} of {c['threshold']} within {c['window']:g}s")
    out.print(f"cooldown: {c['cooldown']:g}s")
    if c["open_until"]:
        out.print(f"open until: {time_text(c['open_until'])}")

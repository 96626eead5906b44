"""``overture keys``: the API keys that let clients call the HTTP API as a tenant."""

from __future__ import annotations

from datetime import datetime

import click
from rich.table import Table
from rich.text import Text

from overture import serde
from overture.apikeys import SCOPES, new_key, parse_scopes
from overture.cli.common import database_url_option, json_option, reports_errors, with_store
from overture.cli.console import console
from overture.store.keys import KEY_CACHE_SECONDS
from overture.store.records import DEFAULT_TENANT, ApiKeyRecord


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


def _scopes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    try:
        return parse_scopes(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@keys.command("create")
@database_url_option
@click.option(
    "--tenant",
    envvar="OVERTURE_TENANT",
    default=DEFAULT_TENANT,
    show_default=True,
    show_envvar=True,
    help="The tenant every request made with the key acts as.",
)
@click.option(
    "--scopes",
    required=True,
    callback=_scopes,
    help=f"Comma-separated, from {', '.join(SCOPES)} (each includes those before it).",
)
@click.option("--name", default="", help="A label for people, e.g. where the key is used.")
@json_option
@reports_errors
def create_key(
    database_url: str, tenant: str, scopes: tuple[str, ...], name: str, as_json: bool
) -> None:
    """Create a key and print it, the only time it is shown."""
    plaintext, key_id, secret_hash = new_key()
    record: ApiKeyRecord = with_store(
        database_url,
        lambda store: store.create_api_key(
            key_id=key_id, tenant=tenant, name=name, secret_hash=secret_hash, scopes=scopes
        ),
    )
    if as_json:
        data = {"id": record.id, "tenant": record.tenant, "scopes": record.scopes}
        click.echo(serde.dumps_text({**data, "key": plaintext}))
        return
    # The key alone on stdout (KEY=$(overture keys create ...) captures just it); the rest is
    # for the person at the terminal.
    notes = console(stderr=True)
    notes.print(f"created key {record.id} for tenant {record.tenant} ({_joined(record.scopes)}):")
    click.echo(plaintext)
    notes.print(Text("Store it now: it will not be shown again.", style="yellow"))


@keys.command("ls")
@database_url_option
@click.option("--tenant", default=None, help="Only this tenant's keys (default: every tenant's).")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@json_option
@reports_errors
def list_keys(database_url: str, tenant: str | None, include_revoked: bool, as_json: bool) -> None:
    """List keys, oldest first (never the keys: only their hashes are stored)."""
    found: list[ApiKeyRecord] = with_store(
        database_url,
        lambda store: store.list_api_keys(tenant=tenant, include_revoked=include_revoked),
    )
    if as_json:
        click.echo(serde.dumps_text([_data(key) for key in found]))
        return
    table = Table()
    for column in ("id", "tenant", "name", "scopes", "created", "last used", "state"):
        table.add_column(column)
    for key in found:
        state = Text("active", style="green") if key.active else Text("revoked", style="dim")
        table.add_row(
            key.id,
            key.tenant,
            key.name,
            _joined(key.scopes),
            _time(key.created_at),
            _time(key.last_used_at),
            state,
        )
    console().print(table)


@keys.command("revoke")
@click.argument("key_id")
@database_url_option
@click.option("--tenant", default=None, help="Refuse unless the key is this tenant's.")
@reports_errors
def revoke_key(database_url: str, key_id: str, tenant: str | None) -> None:
    """Revoke a key for good: requests made with it are refused."""
    record: ApiKeyRecord = with_store(
        database_url, lambda store: store.revoke_api_key(key_id, tenant=tenant)
    )
    console().print(
        f"key {record.id} of tenant {record.tenant} revoked "
        f"(running servers refuse it within {KEY_CACHE_SECONDS:g} s)"
    )


def _data(key: ApiKeyRecord) -> dict[str, object]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "scopes": list(key.scopes),
        "created_at": key.created_at.isoformat(),
        "last_used_at": None if key.last_used_at is None else key.last_used_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
        "active": key.active,
    }


def _joined(scopes: tuple[str, ...]) -> str:
    return ", ".join(scopes)


def _time(at: datetime | None) -> str:
    return "" if at is None else at.isoformat(timespec="seconds")

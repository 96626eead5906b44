"""``overture db migrate|status``: the schema of a database."""

from __future__ import annotations

import click
from rich.text import Text

from overture.cli.common import database_url_option, reports_errors, with_store
from overture.cli.console import console
from overture.store import redact_url
from overture.store.records import SchemaStatus


@click.group()
def db() -> None:
    """Create and upgrade the database schema."""


@db.command()
@database_url_option
@reports_errors
def migrate(database_url: str) -> None:
    """Apply pending migrations (safe to run from several processes at once)."""
    status = with_store(database_url, lambda store: store.migrate())
    _print(database_url, status)


@db.command()
@database_url_option
@reports_errors
def status(database_url: str) -> None:
    """Show applied and pending migrations; exit 1 when some are pending."""
    result = with_store(database_url, lambda store: store.schema_status(), migrate=False)
    _print(database_url, result)
    raise SystemExit(0 if result.current else 1)


def _print(url: str, status: SchemaStatus) -> None:
    out = console()
    applied = ", ".join(f"{v:03d}" for v in status.applied) or "none"
    pending = ", ".join(f"{v:03d}" for v in status.pending) or "none"
    out.print(f"database {redact_url(url)}")
    out.print(f"applied: {applied}")
    style = "green" if status.current else "yellow"
    out.print(Text(f"pending: {pending}", style=style))

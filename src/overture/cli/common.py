"""Options and plumbing shared by the commands that talk to a database."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.text import Text

from overture.cli.console import console
from overture.errors import OvertureError
from overture.store import DEFAULT_DATABASE_URL, Store, create_store, redact_url
from overture.store.records import DEFAULT_TENANT

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

database_url_option = click.option(
    "--database-url",
    envvar="OVERTURE_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    show_envvar=True,
    metavar="URL",
    help="sqlite:///path.db (embedded) or postgresql://user@host/db.",
)
tenant_option = click.option(
    "--tenant",
    envvar="OVERTURE_TENANT",
    default=DEFAULT_TENANT,
    show_default=True,
    show_envvar=True,
    help="Whose runs to act on.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def with_store(url: str, work: Callable[[Store], Awaitable[T]], *, migrate: bool = True) -> T:
    """Open the store at ``url`` (migrating it unless told not to), run ``work``, close it."""

    async def main() -> T:
        store = create_store(url, migrate=migrate)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def reports_errors(command: F) -> F:
    """Turn Overture's own errors into one red line and exit status 1 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OvertureError as error:
            code = getattr(error, "code", None)
            suffix = f" [{code}]" if isinstance(code, str) else ""
            console(stderr=True).print(Text(f"error: {error}{suffix}", style="red"))
            raise SystemExit(1) from None
        except OSError as error:
            url = kwargs.get("database_url")
            where = f" ({redact_url(url)})" if isinstance(url, str) else ""
            console(stderr=True).print(Text(f"error: {error}{where}", style="red"))
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]

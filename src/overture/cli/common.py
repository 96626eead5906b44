"""Options and plumbing shared by the commands that talk to a database."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.text import Text

from overture.cli.console import console
from overture.errors import OvertureError
from overture.settings import SETTINGS, resolve_setting
from overture.store import Store, create_store, redact_url
from overture.store.records import DEFAULT_TENANT
from overture.telemetry import logs

logger = logging.getLogger("overture.cli")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_CLICK_TYPES: dict[type, click.ParamType[Any]] = {
    int: click.INT,
    float: click.FLOAT,
    str: click.STRING,
    bool: click.BOOL,
    tuple: click.STRING,
}


def setting_option(
    name: str, *decls: str, resolve: bool = False, **kwargs: Any
) -> Callable[[F], F]:
    """The option for setting ``name`` (``overture.settings.SETTINGS``), its variable in --help.

    Without ``resolve`` the command receives None when the flag is not given and resolves it
    with ``load_settings``; with ``resolve`` it receives the variable's, the file's or the
    default value.
    """
    setting = SETTINGS[name]
    shown = "" if setting.default in (None, ()) else f"; default: {setting.default}"
    kind = setting.kind
    if setting.minimum is not None and kind in (int, float):
        kwargs.setdefault(
            "type",
            click.IntRange(min=int(setting.minimum))
            if kind is int
            else click.FloatRange(min=setting.minimum),
        )

    def given_or_resolved(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None and resolve:
            try:
                return resolve_setting(name)
            except OvertureError as error:
                raise click.BadParameter(str(error), ctx=ctx, param=param) from None
        if value is not None and (kind is tuple or setting.choices):
            try:
                return setting.parse(value, setting.flag)
            except OvertureError as error:
                raise click.BadParameter(str(error), ctx=ctx, param=param) from None
        return value

    if kind is bool:  # --scheduler/--no-scheduler; None when neither is given
        flag = f"{setting.flag}/--no-{setting.flag.removeprefix('--')}"
    else:
        flag = setting.flag
        kwargs.setdefault("type", _CLICK_TYPES[kind])
    return click.option(
        flag,
        *decls,
        name,
        default=None,
        callback=given_or_resolved,
        help=f"{setting.help} [env: {setting.env}{shown}]",
        **kwargs,
    )


database_url_option = setting_option("database_url", resolve=True, metavar="URL")
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
    """Turn Overture's own errors into one red line and exit status 1 (no traceback).

    Once the command has configured the process's log (``serve``, ``worker``), the error is
    also a line of that log (JSON where the log is, masked, reported to Sentry); the red line
    is then printed only on a terminal, where it reads better than the log's.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OvertureError as error:
            code = getattr(error, "code", None)
            _report(str(error), code if isinstance(code, str) else None)
            raise SystemExit(1) from None
        except OSError as error:
            url = kwargs.get("database_url")
            where = f" ({redact_url(url)})" if isinstance(url, str) else ""
            _report(f"{error}{where}", None)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]


def _report(message: str, code: str | None) -> None:
    if logs.logging_to(sys.stderr):
        logger.error("%s", message, extra={"overture": {"code": code}})
        if not sys.stderr.isatty():
            return
    suffix = f" [{code}]" if code else ""
    console(stderr=True).print(Text(f"error: {message}{suffix}", style="red"))

"""``overture webhooks``: webhook sources, and signed test deliveries.

The commands talk to a server (``--url``, ``--api-key``; managing sources takes an admin key).
``test`` signs a delivery as the source's sender would, with a secret from ``--secret``, the
environment or the config file's ``[webhooks.SOURCE]`` table, and shows which runs it started.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
from rich.table import Table

from overture import __version__, serde
from overture.api.schemas import RETIRE_AFTER
from overture.cli.backends import server, server_url
from overture.cli.common import json_option, reports_errors, setting_option
from overture.cli.console import console, parse_assignments
from overture.cli.triggers import _json_value
from overture.remote import ApiProblem, RemoteClient, ServerUnreachable, problem_from
from overture.remote_parts import path_part
from overture.serde import JSON
from overture.settings import load_settings
from overture.triggers.signatures import SCHEMES, TYPE_FIELDS, sign
from overture.triggers.webhooks import (
    config_sources,
    scheme_options,
    secret_problem,
    source_options,
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
SECRET_ENV = "OVERTURE_WEBHOOK_SECRET"
_SENDABLE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
"""A header value httpx can send as it is: visible ASCII on one line, spaces only inside."""


@click.group()
def webhooks() -> None:
    """Webhook sources: where deliveries come from and how they are verified."""


def server_options(command: F) -> F:
    """``--url`` and ``--api-key``: the server the command talks to, and as whom."""
    command = setting_option("api_key", metavar="KEY", resolve=True)(command)
    return setting_option("url", metavar="URL", resolve=True)(command)


option_option = click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A scheme option (e.g. header=X-Signature), or event_prefix.",
)


def remotely(url: str, api_key: str | None, work: Callable[[RemoteClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with server(server_url(url), api_key) as client:
            return await work(client)

    return asyncio.run(main())


@webhooks.command("ls")
@server_options
@json_option
@reports_errors
def list_sources(url: str, api_key: str | None, as_json: bool) -> None:
    """The sources of the key's tenant: the config file's and those added here."""
    found = remotely(url, api_key, lambda client: client.list_webhook_sources())
    if as_json:
        click.echo(serde.dumps_text(found))
        return
    table = Table("name", "scheme", "origin", "secrets", "url", "options")
    for source in found["items"]:
        options = ", ".join(f"{k}={v}" for k, v in source["options"].items() if v is not None)
        columns = ("name", "scheme", "origin", "active_secrets", "url")
        table.add_row(*(str(source[c]) for c in columns), options)
    console().print(table)


@webhooks.command("add")
@click.argument("name")
@click.option("--scheme", type=click.Choice(SCHEMES), required=True, help="How senders sign.")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    required=True,
    help="A secret the sender signs with (repeat while senders switch over).",
)
@option_option
@server_options
@json_option
@reports_errors
def add_source(
    name: str,
    scheme: str,
    secrets: tuple[str, ...],
    options: tuple[str, ...],
    url: str,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Accept webhooks at /v1/webhooks/NAME, verified by SCHEME and the secrets."""
    given = parse_assignments(options, "--option")
    made = remotely(
        url,
        api_key,
        lambda client: client.create_webhook_source(name, scheme, secrets, options=given),
    )
    if as_json:
        click.echo(serde.dumps_text(made))
        return
    console().print(
        f"webhook source {made['name']} added ({made['scheme']}, "
        f"{made['active_secrets']} secret(s)): senders deliver to {server_url(url)}{made['url']}"
    )


@webhooks.command("rotate")
@click.argument("name")
@click.option("--secret", required=True, help="The new secret, tried first from now on.")
@click.option(
    "--retire-after",
    default=RETIRE_AFTER,
    show_default=True,
    help="How long the other secrets stay valid (0: retire them now).",
)
@server_options
@json_option
@reports_errors
def rotate_secret(
    name: str, secret: str, retire_after: str, url: str, api_key: str | None, as_json: bool
) -> None:
    """Make a new secret the first; the others keep working for --retire-after."""
    rotated = remotely(
        url,
        api_key,
        lambda client: client.rotate_webhook_secret(name, secret, retire_after=retire_after),
    )
    if as_json:
        click.echo(serde.dumps_text(rotated))
        return
    retiring = [s["expires_at"] for s in rotated["secrets"] if s["expires_at"]]
    until = f"; the others retire at {min(retiring)}" if retiring else ""
    console().print(f"{name}: new secret in use, {rotated['active_secrets']} active{until}")


@webhooks.command("rm")
@click.argument("name")
@server_options
@reports_errors
def remove_source(name: str, url: str, api_key: str | None) -> None:
    """Delete a source: its deliveries are refused from now on."""
    remotely(url, api_key, lambda client: client.delete_webhook_source(name))
    console().print(f"webhook source {name} deleted")


@webhooks.command("test")
@click.argument("source")
@click.option("--event", "event_type", help="The sender's event type, e.g. pull_request.")
@click.option(
    "--payload",
    default="{}",
    show_default=True,
    help="The payload: JSON, or @FILE holding JSON ('-': stdin).",
)
@click.option(
    "--secret",
    envvar=SECRET_ENV,
    show_envvar=True,
    help="Sign with this (default: the first secret of [webhooks.SOURCE] in the config file).",
)
@click.option(
    "--scheme",
    type=click.Choice(SCHEMES),
    help="Default: the config file's, else the server's (with an admin key).",
)
@option_option
@click.option(
    "--delivery-id",
    help="Default: a new one. Schemes that send no id (clickup, make) are identified by the body.",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="Settings file [env: OVERTURE_CONFIG; default: ./overture.toml if it exists]",
)
@server_options
@json_option
@reports_errors
def test_delivery(
    source: str,
    event_type: str | None,
    payload: str,
    secret: str | None,
    scheme: str | None,
    options: tuple[str, ...],
    delivery_id: str | None,
    config: str | None,
    url: str,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Sign a delivery as SOURCE's sender would, send it, and show the runs it started."""
    table = load_settings(config=config).webhooks.get(source)
    table = table if isinstance(table, dict) else None
    known = dict(table or {})
    if table is None and (scheme is None or not options):
        known = remotely(url, api_key, lambda client: _source_if_allowed(client, source))
    scheme = scheme or known.get("scheme")
    if scheme is None:
        raise click.UsageError(
            f"give --scheme: {source!r} is not in the config file, and the server did not say "
            "(it shows sources to admin keys: --api-key)"
        )
    # The server's or the file's options are for their scheme, which --scheme may overrule.
    known_options = known.get("options") if known.get("scheme") in (None, scheme) else None
    given = {**(known_options or {}), **parse_assignments(options, "--option")}
    checked = source_options(scheme, given)
    secret = secret or _configured_secret(source, table)
    if unusable := secret_problem(scheme, checked, secret):
        raise click.BadParameter(f"the secret {unusable}", param_hint="--secret")
    delivery_id = delivery_id or str(uuid.uuid4())
    body = serde.dumps(_delivery_body(scheme, checked, event_type, delivery_id, _payload(payload)))
    try:
        headers = sign(
            scheme,
            body=body,
            secret=secret,
            options=scheme_options(checked),
            now=time.time(),
            delivery_id=delivery_id,
            event_type=event_type,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    _check_sendable(headers, event_type, delivery_id)
    address = f"{server_url(url)}/v1/webhooks/{path_part(source)}"
    response = asyncio.run(_post(address, body, headers))
    if not response.is_success:
        problem = problem_from(response)
        hint = "; check --secret and --scheme" if problem.status == 401 else ""
        raise ApiProblem(
            status=problem.status,
            code=problem.code,
            detail=f"the server refused the delivery ({problem.status}): {problem.detail}{hint}",
        )
    answer = response.json()
    if as_json:
        click.echo(serde.dumps_text(answer))
        return
    _print_outcome(response.status_code, answer)


async def _source_if_allowed(client: RemoteClient, name: str) -> dict[str, Any]:
    """The source as the server shows it; nothing when the key may not see sources."""
    try:
        return await client.get_webhook_source(name)
    except ApiProblem as problem:
        if problem.status in (401, 403):
            return {}
        raise


def _configured_secret(source: str, table: dict[str, Any] | None) -> str:
    if table is None or "secrets" not in table:
        raise click.UsageError(
            f"give --secret or set {SECRET_ENV}: {source!r} has no [webhooks.{source}] table "
            "in the config file"
        )
    return config_sources({source: table}, os.environ)[source].secrets[0].value


def _payload(given: str) -> JSON:
    """``given`` as JSON: the text itself, ``@FILE``'s (as ``events send`` takes it), or stdin's
    for '-'."""
    if given == "-":
        try:
            data: JSON = serde.loads(sys.stdin.read())
        except ValueError as error:
            raise click.BadParameter(
                f"stdin is not JSON: {error}", param_hint="--payload"
            ) from None
        return data
    try:
        return _json_value(given, "--payload")
    except click.BadParameter:
        if not given.startswith("@") and Path(given).is_file():
            raise click.BadParameter(
                f"{given!r} is not JSON; to send the file's JSON, write @{given}",
                param_hint="--payload",
            ) from None
        raise


def _check_sendable(headers: dict[str, str], event_type: str | None, delivery_id: str) -> None:
    """``BadParameter`` naming the option whose value cannot travel in a header."""
    for name, value in headers.items():
        if _SENDABLE.fullmatch(value):
            continue
        option = {event_type: "--event", delivery_id: "--delivery-id"}.get(value, "--option")
        raise click.BadParameter(
            f"the {name} header would not be visible ASCII on one line", param_hint=option
        )


def _delivery_body(
    scheme: str, options: dict[str, Any], event_type: str | None, delivery_id: str, data: JSON
) -> JSON:
    """What the sender would post: the event type in the body where its scheme puts it."""
    field = TYPE_FIELDS.get(scheme)
    if scheme == "hmac" and options.get("event_header"):
        field = None  # the header carries it
    extra: dict[str, JSON] = {}
    if field is not None and event_type is not None:
        extra[field] = event_type
    if scheme == "stripe":
        extra["id"] = delivery_id  # Stripe's delivery id is its event's
    if not extra:
        return data
    return {**data, **extra} if isinstance(data, dict) else {"data": data, **extra}


async def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    sent = {"Content-Type": "application/json", "User-Agent": f"overture/{__version__}", **headers}
    async with httpx.AsyncClient(timeout=30) as http:
        try:
            return await http.post(url, content=body, headers=sent)
        except httpx.ConnectError:
            raise ServerUnreachable(
                f"no Overture server at {url}: start one with `overture serve`"
            ) from None
        except httpx.TransportError as error:
            raise ServerUnreachable(f"delivering to {url} failed: {type(error).__name__}") from None


def _print_outcome(status: int, answer: dict[str, Any]) -> None:
    out = console()
    event = answer["event"]
    if answer["created"]:
        out.print(f"{status} accepted: event {event['type']} ({event['id']})")
    else:
        out.print(f"{status} already received: event {event['id']}; nothing started again")
    if not event["routes"]:
        out.print(f"no workflow listens for {event['type']}")
    for route in event["routes"]:
        version = f" v{route['version']}" if route["version"] is not None else ""
        if route["run_id"]:
            verb = "started run" if answer["created"] else "run (started the first time)"
            out.print(f"  {verb} {route['run_id']} of {route['workflow']}{version}")
        else:
            out.print(f"  {route['workflow']}{version}: no run ({route['reason']})")

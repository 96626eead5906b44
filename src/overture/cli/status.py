"""``overture status``: the tenant at a glance, on the server (``--url``) or the database."""

from __future__ import annotations

from typing import Any, Protocol

import click
from rich.text import Text

from overture import serde
from overture.api import views
from overture.cli.backends import Target, backend_options, with_backend
from overture.cli.backends import as_http_json as _json
from overture.cli.circuits import STATUS_STYLE
from overture.cli.common import json_option, reports_errors
from overture.cli.console import console, headed_table, time_text
from overture.cli.runs import live_text
from overture.status import read_status
from overture.store.base import Store


class StatusBackend(Protocol):
    async def status(self) -> dict[str, Any]: ...


class DatabaseStatus:
    """The status of one tenant in the database, answered as the API would (with the workers
    listed: whoever holds the database URL sees them all anyway)."""

    def __init__(self, store: Store, tenant: str) -> None:
        self.store = store
        self.tenant = tenant

    async def status(self) -> dict[str, Any]:
        return _json(views.status(await read_status(self.store, tenant=self.tenant)))


@click.command()
@json_option
@reports_errors
@backend_options
def status(target: Target, as_json: bool) -> None:
    """The tenant at a glance: queues, workers, dead letters, unfinished runs, failing circuits.

    \b
    Exit status, for scripts and probes:
      0  healthy
      1  needs attention: attempts are ready and no worker is live, or a circuit is open or
         half-open (or the database or server could not be asked: an error line says so)
    Dead letters are shown but do not make it fail: they stay until requeued, so alert on their
    growth instead (deploy/prometheus/alerts.yml). Neither does an open circuit whose cooldown
    has passed with nothing calling it (shown as stale).
    """
    found: dict[str, Any] = with_backend(target, lambda b: b.status(), local=DatabaseStatus)
    if as_json:
        click.echo(serde.dumps_text(found))
    else:
        _print(found)
    if not found["healthy"]:
        raise SystemExit(1)


def _print(found: dict[str, Any]) -> None:
    out = console()
    if found["healthy"]:
        out.print(Text.assemble(f"tenant {found['tenant']}: ", Text("healthy", style="green")))
    else:
        out.print(Text.assemble(f"tenant {found['tenant']}: ", Text("attention", style="red")))
        for reason in found["attention"]:
            out.print(Text(f"  - {reason}", style="red"))
    out.print(Text(f"as of {time_text(found['at'])}", style="dim"))

    queues = headed_table("queue", "ready", "delayed", "running", "oldest ready", "waited")
    for q in found["queues"]:
        age = q["oldest_ready_age"]
        queues.add_row(
            Text(q["queue"]),
            str(q["ready"]),
            str(q["delayed"]),
            str(q["running"]),
            time_text(q["oldest_ready_at"]),
            "" if age is None else f"{age:.1f}s",
        )
    _section("queues", queues if found["queues"] else "nothing queued")

    workers = found["workers"]
    out.print(Text.assemble("\n", Text("workers", style="bold"), f": {workers['live']} live"))
    if workers["items"]:
        table = headed_table("id", "host", "last seen", "ago", "live")
        for w in workers["items"]:
            table.add_row(
                Text(w["id"]),
                Text(w["host"]),
                time_text(w["last_seen"]),
                f"{w['seen_seconds_ago']:.0f}s",
                live_text(w),
            )
        out.print(table)

    out.print(Text.assemble("\n", Text("dead letters", style="bold"), f": {found['dead_letters']}"))

    runs = headed_table("workflow", "status", "runs")
    for r in found["runs"]:
        runs.add_row(Text(r["workflow"]), r["status"], str(r["count"]))
    _section("unfinished runs", runs if found["runs"] else "none")

    circuits = headed_table("key", "status", "failures", "open until")
    for c in found["circuits"]:
        status = Text(c["status"], style=STATUS_STYLE.get(c["status"], ""))
        if c["stale"]:
            status = Text(f"{c['status']} (stale)", style="dim")
        circuits.add_row(
            Text(c["key"]),  # a key is data, never markup
            status,
            f"{c['failures']}/{c['threshold']}",
            time_text(c["open_until"]),
        )
    _section("failing circuits", circuits if found["circuits"] else "none")


def _section(title: str, body: Any) -> None:
    out = console()
    out.print(Text.assemble("\n", Text(title, style="bold")))
    out.print(body)

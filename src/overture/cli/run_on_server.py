"""``overture run FILE|NAME`` on a server: push the file, start the run, follow it live.

Ctrl-C stops following, not the run: the server keeps working it, and the message says how to
follow or cancel it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from overture.cli.backends import server
from overture.cli.console import console
from overture.cli.progress import ProgressPrinter, steps_of, summary, watch
from overture.cli.workflows import push, report_invalid
from overture.serde import JSON

INTERRUPTED = 130
"""The exit status of a command stopped by Ctrl-C (128 + SIGINT)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerRun:
    """What to run where: a workflow file to push first, or else a registered workflow."""

    url: str
    api_key: str | None
    file: Path | None
    workflow: str
    """The registered workflow's name (unless ``file`` is given)."""
    input: dict[str, JSON]
    idempotency_key: str | None
    detach: bool


@dataclass
class _Started:
    run_id: str | None = None


def run_on_server(request: ServerRun) -> int:
    """Run it on the server; the exit status (0 only if the run succeeded, or was detached)."""
    out, notes = console(), console(stderr=True)
    started = _Started()
    try:
        return asyncio.run(_run(request, out, notes, started))
    except KeyboardInterrupt:
        if started.run_id is None:
            raise
        run_id, url = started.run_id, request.url
        notes.print(Text(f"\nstopped following: run {run_id} keeps running on {url}", "yellow"))
        notes.print(f"  follow it: overture runs follow {run_id} --url {url}")
        notes.print(f"  cancel it: overture runs cancel {run_id} --url {url}")
        return INTERRUPTED


async def _run(request: ServerRun, out: Console, notes: Console, started: _Started) -> int:
    async with server(request.url, request.api_key) as client:
        workflow: dict[str, Any] | None = None
        name, path = request.workflow, request.file
        if path is not None:
            pushed = await push(client, path)
            if not isinstance(pushed, dict):
                report_invalid(out, path, pushed)
                return 1
            workflow, name = pushed, pushed["name"]
            notes.print(Text(f"{path}: {name} v{pushed['version']} on {request.url}", "dim"))
        run = await client.start_run(
            name,
            request.input,
            version=None if workflow is None else workflow["version"],
            idempotency_key=request.idempotency_key,
        )
        started.run_id = run["id"]
        if request.detach:
            click.echo(run["id"])
            notes.print(
                Text(f"follow it: overture runs follow {run['id']} --url {request.url}", "dim")
            )
            return 0
        if workflow is None:
            workflow = await client.get_workflow(run["workflow"], run["version"])
        state = await watch(client.stream(run["id"]), ProgressPrinter(out))
        summary(out, steps_of(workflow["definition"]), state)
        return 0 if state.status == "succeeded" else 1

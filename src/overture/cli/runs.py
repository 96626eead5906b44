"""``overture runs|dlq|workers``: look at and act on what is stored."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast, get_args

import click
from rich.table import Table
from rich.text import Text

from overture import serde
from overture.cli.common import (
    database_url_option,
    json_option,
    reports_errors,
    tenant_option,
    with_store,
)
from overture.cli.console import console
from overture.core import events as ev
from overture.core.state import RunStatus, fold
from overture.store.base import Store
from overture.store.records import DeadLetter, Page, RunRecord, StoredEvent, WorkerRecord

RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "compensated": "yellow"}


@click.group()
def runs() -> None:
    """List, inspect, cancel and retry runs."""


@runs.command("ls")
@database_url_option
@tenant_option
@click.option("--status", type=click.Choice(RUN_STATUSES))
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", help="Continue after this run id (printed at the end of a page).")
@json_option
@reports_errors
def list_runs(
    database_url: str,
    tenant: str,
    status: str | None,
    workflow: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Runs, newest first."""
    page: Page[RunRecord] = with_store(
        database_url,
        lambda store: store.list_runs(
            tenant=tenant,
            status=cast(RunStatus | None, status),
            workflow=workflow,
            cursor=cursor,
            limit=limit,
        ),
    )
    out = console()
    if as_json:
        data = {"items": [_data(r) for r in page.items], "next_cursor": page.next_cursor}
        click.echo(serde.dumps_text(data))
        return
    table = Table()
    for column in ("id", "workflow", "status", "created", "finished"):
        table.add_column(column)
    for r in page.items:
        table.add_row(
            r.id,
            f"{r.workflow} v{r.version}",
            Text(r.status, style=STYLE.get(r.status, "")),
            _time(r.created_at),
            _time(r.finished_at),
        )
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


@runs.command("show")
@click.argument("run_id")
@database_url_option
@tenant_option
@json_option
@reports_errors
def show_run(database_url: str, tenant: str, run_id: str, as_json: bool) -> None:
    """A run and the state of each of its steps."""

    async def load(store: Store) -> tuple[RunRecord, Any]:
        return await store.get_run(run_id, tenant=tenant), await store.run_state(
            run_id, tenant=tenant
        )

    record, state = with_store(database_url, load)
    if as_json:
        steps = {sid: _data(s) for sid, s in state.steps.items()}
        click.echo(serde.dumps_text({**_data(record), "steps": steps}))
        return
    out = console()
    out.print(Text(f"run {record.id}", style="bold"))
    out.print(f"workflow {record.workflow} v{record.version}, tenant {record.tenant}")
    out.print(Text(f"status {record.status}", style=STYLE.get(record.status, "")))
    table = Table()
    for column in ("step", "status", "attempt", "started", "finished", "detail"):
        table.add_column(column)
    for s in state.steps.values():
        detail = s.reason or (s.error.message if s.error else "")
        table.add_row(
            s.id,
            Text(s.status, style=STYLE.get(s.status, "")),
            str(s.attempt),
            _time(s.started_at),
            _time(s.finished_at),
            detail,
        )
    out.print(table)
    if record.output is not None:
        out.print("output: " + serde.dumps_text(record.output))
    if record.error is not None:
        out.print(Text(f"error: {record.error.message} [{record.error.code}]", style="red"))


@runs.command("events")
@click.argument("run_id")
@database_url_option
@tenant_option
@click.option("--after", type=click.IntRange(min=0), default=0, help="Only events after this seq.")
@json_option
@reports_errors
def run_events(database_url: str, tenant: str, run_id: str, after: int, as_json: bool) -> None:
    """A run's history, in order."""
    found: list[StoredEvent] = with_store(
        database_url, lambda store: store.events(run_id, tenant=tenant, after=after)
    )
    for stored in found:
        data = ev.to_data(stored.event)
        if as_json:
            click.echo(serde.dumps_text({"seq": stored.seq, **data}))
        else:
            rest = {k: v for k, v in data.items() if k not in ("type", "at")}
            click.echo(f"{stored.seq:>5} {data['at']} {data['type']} {serde.dumps_text(rest)}")


@runs.command("cancel")
@click.argument("run_id")
@database_url_option
@tenant_option
@click.option("--reason", default="cancelled from the CLI", show_default=True)
@reports_errors
def cancel_run(database_url: str, tenant: str, run_id: str, reason: str) -> None:
    """Cancel a run; running steps are stopped at their next heartbeat."""
    record = with_store(
        database_url, lambda store: store.cancel_run(run_id, tenant=tenant, reason=reason)
    )
    console().print(f"run {record.id} {record.status}")


@runs.command("retry")
@click.argument("run_id")
@database_url_option
@tenant_option
@reports_errors
def retry_run(database_url: str, tenant: str, run_id: str) -> None:
    """Run the failed steps of a failed or cancelled run again."""
    record = with_store(database_url, lambda store: store.retry_run(run_id, tenant=tenant))
    console().print(f"run {record.id} {record.status}")


@runs.command("replay-check")
@click.argument("run_id")
@database_url_option
@tenant_option
@reports_errors
def replay_check(database_url: str, tenant: str, run_id: str) -> None:
    """Fold the stored history again and compare it with the stored run; exit 1 on a mismatch."""

    async def load(store: Store) -> tuple[RunRecord, list[StoredEvent]]:
        return await store.get_run(run_id, tenant=tenant), await store.events(run_id, tenant=tenant)

    record, history = with_store(database_url, load)
    mismatches = replay_mismatches(record, history)
    out = console()
    if mismatches:
        for line in mismatches:
            out.print(Text(f"✗ {line}", style="red"))
        raise SystemExit(1)
    out.print(
        Text(f"✓ {len(history)} events fold to the stored run ({record.status})", style="green")
    )


def replay_mismatches(record: RunRecord, history: Sequence[StoredEvent]) -> list[str]:
    """How the state folded from ``history`` differs from the stored ``record`` (empty: same)."""
    seqs = [e.seq for e in history]
    if seqs != list(range(1, len(history) + 1)):
        return [f"history is not gapless from 1: {seqs[:10]}..."]
    state = fold(e.event for e in history)
    expected: dict[str, Any] = {
        "status": state.status,
        "output": state.output,
        "error": state.error,
        "events": state.events,
        "finished_at": state.finished_at,
    }
    stored = {name: getattr(record, name) for name in expected}
    return [
        f"{name}: stored {stored[name]!r}, history says {expected[name]!r}"
        for name in expected
        if stored[name] != expected[name]
    ]


@click.group()
def dlq() -> None:
    """Steps that failed for good."""


@dlq.command("ls")
@database_url_option
@tenant_option
@click.option("--all", "include_requeued", is_flag=True, help="Include requeued letters.")
@json_option
@reports_errors
def list_dead_letters(
    database_url: str, tenant: str, include_requeued: bool, as_json: bool
) -> None:
    """Dead letters, oldest first."""
    letters: list[DeadLetter] = with_store(
        database_url,
        lambda store: store.dead_letters(tenant=tenant, include_requeued=include_requeued),
    )
    if as_json:
        click.echo(serde.dumps_text([_data(letter) for letter in letters]))
        return
    table = Table()
    for column in ("id", "run", "step", "attempts", "error", "at"):
        table.add_column(column)
    for letter in letters:
        step = f"{letter.step_id} (undo)" if letter.compensation else letter.step_id
        error = f"{letter.error.message} [{letter.error.code}]"
        table.add_row(
            str(letter.id),
            letter.run_id,
            step,
            str(letter.attempts),
            error,
            _time(letter.created_at),
        )
    console().print(table)


@dlq.command("requeue")
@click.argument("ids", nargs=-1, required=True, type=int)
@database_url_option
@tenant_option
@reports_errors
def requeue(database_url: str, tenant: str, ids: tuple[int, ...]) -> None:
    """Run the steps of these dead letters again (their runs are reopened)."""
    records = with_store(database_url, lambda store: store.requeue(ids, tenant=tenant))
    for record in records:
        console().print(f"run {record.id} {record.status}")


@click.group()
def workers() -> None:
    """Worker processes."""


@workers.command("ls")
@database_url_option
@json_option
@reports_errors
def list_workers(database_url: str, as_json: bool) -> None:
    """Workers that ever registered, with their last heartbeat."""
    found: list[WorkerRecord] = with_store(database_url, lambda store: store.list_workers())
    if as_json:
        click.echo(serde.dumps_text([_data(w) for w in found]))
        return
    table = Table()
    for column in ("id", "host", "pid", "concurrency", "last seen", "state"):
        table.add_column(column)
    for w in found:
        state = Text("running", style="green") if w.running else Text("stopped", style="dim")
        table.add_row(w.id, w.host, str(w.pid), str(w.concurrency), _time(w.last_seen), state)
    console().print(table)


def _time(at: datetime | None) -> str:
    return "" if at is None else at.isoformat(timespec="milliseconds")


def _data(record: Any) -> Any:
    """A record as JSON data."""
    return serde.loads(serde.dumps(dataclasses.asdict(record)))

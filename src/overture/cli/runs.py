"""``overture runs|dlq|workers``: look at runs and act on them, on a server or in the database.

Every command renders the API's JSON (see ``cli.backends``): a table for people, the JSON itself
with ``--json``. What the server sends is printed as ``Text``, never read as rich markup: a signal
named ``[/x]`` would otherwise fail to print, or a ``[link=...]`` in an error become a link.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import click
from rich.table import Table
from rich.text import Text

from overture import serde
from overture.cli.attempts import attempts_table, print_attempt_logs, print_table
from overture.cli.backends import Backend, Target, backend_options, every_item, with_backend
from overture.cli.common import (
    database_url_option,
    json_option,
    reports_errors,
    tenant_option,
    with_store,
)
from overture.cli.console import console, headed_table, status_text, time_text
from overture.cli.progress import ProgressPrinter, steps_of, summary, watch
from overture.core.builtin_steps import APPROVAL
from overture.core.state import RunState, RunStatus, fold
from overture.store.base import Store
from overture.store.records import WORKER_RECENT_WITHIN, RunRecord, StoredEvent

RUN_STATUSES: tuple[str, ...] = (*get_args(RunStatus), "scheduled")
"""A run's statuses, and ``scheduled``: delayed runs whose start time is still ahead."""


@click.group()
def runs() -> None:
    """List, follow, inspect, signal, cancel, retry and replay runs.

    With --url (or OVERTURE_URL) they ask that Overture server, as the tenant of --api-key;
    otherwise they open the database at --database-url directly.
    """


@runs.command("ls")
@click.option("--status", type=click.Choice(RUN_STATUSES))
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", help="Continue after this run id (printed at the end of a page).")
@json_option
@reports_errors
@backend_options
def list_runs(
    target: Target,
    status: str | None,
    workflow: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Runs, newest first."""
    page = with_backend(
        target,
        lambda b: b.list_runs(status=status, workflow=workflow, cursor=cursor, limit=limit),
    )
    if as_json:
        click.echo(serde.dumps_text(page))
        return
    table = headed_table("id", "workflow", "status", "created", "starts", "finished")
    for r in page["items"]:
        _add_row(
            table,
            r["id"],
            f"{r['workflow']} v{r['version']}",
            status_text(r["status"]),
            time_text(r["created_at"]),
            time_text(r.get("run_at")),
            time_text(r["finished_at"]),
        )
    out = console()
    out.print(table)
    if page["next_cursor"]:
        out.print(Text(f"more: --cursor {page['next_cursor']}"))


@runs.command("show")
@click.argument("run_id")
@json_option
@reports_errors
@backend_options
def show_run(target: Target, run_id: str, as_json: bool) -> None:
    """A run and the state of each of its steps."""
    run = with_backend(target, lambda b: b.get_run(run_id))
    if as_json:
        click.echo(serde.dumps_text(run))
        return
    out = console()
    out.print(Text(f"run {run['id']}", style="bold"))
    out.print(Text(f"workflow {run['workflow']} v{run['version']}"))
    out.print(Text.assemble("status ", status_text(run["status"])))
    table = headed_table("step", "status", "attempt", "started", "finished", "detail")
    undo = [("undo " + s["id"], s) for s in run.get("compensations", [])]
    for name, s in [(s["id"], s) for s in run["steps"]] + undo:
        _add_row(
            table,
            name,
            status_text(s["status"]),
            str(s["attempt"]),
            time_text(s["started_at"]),
            time_text(s["finished_at"]),
            _step_detail(s),
        )
    if run.get("parent_run_id"):
        step = f" (step {run['parent_step']})" if run.get("parent_step") else ""
        out.print(Text(f"parent run {run['parent_run_id']}{step}"))
    out.print(table)
    if run["output"] is not None:
        out.print(Text("output: " + serde.dumps_text(run["output"])))
    if run["error"] is not None:
        error = run["error"]
        out.print(Text(f"error: {error['message']} [{error['code']}]", style="red"))


@runs.command("follow")
@click.argument("run_id")
@reports_errors
@backend_options
def follow_run(target: Target, run_id: str) -> None:
    """Print a run's progress from its start until it ends; exit 0 if it succeeded, else 1."""

    async def follow(backend: Backend) -> tuple[dict[str, Any], RunState]:
        run = await backend.get_run(run_id)
        workflow = await backend.get_workflow(run["workflow"], run["version"])
        return workflow, await watch(backend.stream(run_id), ProgressPrinter(out))

    out = console()
    workflow, state = with_backend(target, follow)
    summary(out, steps_of(workflow["definition"]), state)
    raise SystemExit(0 if state.status == "succeeded" else 1)


@runs.command("events")
@click.argument("run_id")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Only events after this seq.")
@json_option
@reports_errors
@backend_options
def run_events(target: Target, run_id: str, after: int, as_json: bool) -> None:
    """A run's history, in order (with --json, one event per line)."""
    found = with_backend(target, lambda b: every_item(b.events, run_id, after))
    for event in found:
        if as_json:
            click.echo(serde.dumps_text(event))
        else:
            rest = {k: v for k, v in event.items() if k not in ("seq", "type", "at")}
            click.echo(f"{event['seq']:>5} {event['at']} {event['type']} {serde.dumps_text(rest)}")


@runs.command("logs")
@click.argument("run_id")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Only lines after this id.")
@json_option
@reports_errors
@backend_options
def run_logs(target: Target, run_id: str, after: int, as_json: bool) -> None:
    """What a run's steps logged, attempt by attempt (with --json, one line's JSON per line)."""
    if as_json:
        for line in with_backend(target, lambda b: every_item(b.logs, run_id, after)):
            click.echo(serde.dumps_text(line))
        return
    found = with_backend(target, lambda b: b.attempts(run_id))
    print_attempt_logs(console(), found["items"], after)


@runs.command("attempts")
@click.argument("run_id")
@json_option
@reports_errors
@backend_options
def run_attempts(target: Target, run_id: str, as_json: bool) -> None:
    """Every attempt of a run's steps: worker, status, duration, HTTP status, error (with
    --json, the API's answer, each attempt with its log lines)."""
    found = with_backend(target, lambda b: b.attempts(run_id, logs=as_json))
    if as_json:
        click.echo(serde.dumps_text(found))
        return
    print_table(console(), attempts_table(found["items"]))


@runs.command("cancel")
@click.argument("run_id")
@click.option("--reason", default="cancelled from the CLI", show_default=True)
@json_option
@reports_errors
@backend_options
def cancel_run(target: Target, run_id: str, reason: str, as_json: bool) -> None:
    """Cancel a run; running steps are stopped at their next heartbeat."""
    _print_run(with_backend(target, lambda b: b.cancel(run_id, reason=reason)), as_json)


@runs.command("retry")
@click.argument("run_id")
@json_option
@reports_errors
@backend_options
def retry_run(target: Target, run_id: str, as_json: bool) -> None:
    """Run the failed steps of a failed or cancelled run again."""
    _print_run(with_backend(target, lambda b: b.retry(run_id)), as_json)


@runs.command("replay")
@click.argument("run_id")
@json_option
@reports_errors
@backend_options
def replay_run(target: Target, run_id: str, as_json: bool) -> None:
    """Start a new run of the same workflow version with the same input; print its id."""
    _print_run(with_backend(target, lambda b: b.replay(run_id)), as_json)


@runs.command("signal")
@click.argument("run_id")
@click.argument("name")
@click.option(
    "--payload",
    metavar="JSON|@FILE",
    help="The signal's data: JSON text, or @ and a file holding JSON.",
)
@json_option
@reports_errors
@backend_options
def signal_run(target: Target, run_id: str, name: str, payload: str | None, as_json: bool) -> None:
    """Send a run the signal NAME (a `wait` step waiting for NAME resumes)."""
    data = None if payload is None else _payload(payload)
    _print_signal(with_backend(target, lambda b: b.signal(run_id, name, data)), as_json)


@runs.command("approve")
@click.argument("run_id")
@click.option("--name", default=APPROVAL, show_default=True, help="The signal the wait expects.")
@click.option("--reject", is_flag=True, help="Refuse instead: the waiting step fails.")
@click.option("--comment", help="Why; kept in the signal (and in the error when refused).")
@json_option
@reports_errors
@backend_options
def approve_run(
    target: Target, run_id: str, name: str, reject: bool, comment: str | None, as_json: bool
) -> None:
    """Approve (or --reject) a run waiting in a `wait` step with `approval: true`."""
    data: dict[str, Any] = {"approved": not reject}
    if comment is not None:
        data["comment"] = comment
    _print_signal(with_backend(target, lambda b: b.signal(run_id, name, data)), as_json)


def _payload(text: str) -> Any:
    """``--payload``: JSON text, or ``@FILE`` holding JSON."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as error:
            raise click.BadParameter(
                f"cannot read {text[1:]!r}: {error}", param_hint="--payload"
            ) from None
    try:
        return serde.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--payload") from None


def _print_signal(sent: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(serde.dumps_text(sent))
    else:
        name, run_id, seq = sent["name"], sent["run_id"], sent["seq"]
        console().print(Text(f"signal {name!r} sent to run {run_id} (event {seq})"))


def _step_detail(step: dict[str, Any]) -> str:
    """Why a step is as it is, and the child run of a workflow step."""
    why = step["reason"] or (step["error"] or {}).get("message", "")
    child = step.get("child_run_id")
    return "; ".join(p for p in (why, child and f"child run {child}") if p)


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
    """Steps that failed for good (on the server with --url, else in the database)."""


@dlq.command("ls")
@click.option("--all", "include_requeued", is_flag=True, help="Include requeued letters.")
@json_option
@reports_errors
@backend_options
def list_dead_letters(target: Target, include_requeued: bool, as_json: bool) -> None:
    """Dead letters, oldest first."""
    letters = with_backend(target, lambda b: b.dead_letters(include_requeued=include_requeued))
    if as_json:
        click.echo(serde.dumps_text(letters))
        return
    table = headed_table("id", "run", "step", "attempts", "error", "at")
    for letter in letters["items"]:
        step = f"{letter['step_id']} (undo)" if letter["compensation"] else letter["step_id"]
        error = f"{letter['error']['message']} [{letter['error']['code']}]"
        _add_row(
            table,
            str(letter["id"]),
            letter["run_id"],
            step,
            str(letter["attempts"]),
            error,
            time_text(letter["created_at"]),
        )
    console().print(table)


@dlq.command("requeue")
@click.argument("ids", nargs=-1, required=True, type=int)
@json_option
@reports_errors
@backend_options
def requeue(target: Target, ids: tuple[int, ...], as_json: bool) -> None:
    """Run the steps of these dead letters again (their runs are reopened)."""

    async def requeue_each(backend: Backend) -> list[dict[str, Any]]:
        return [run for i in ids for run in (await backend.requeue(i))["runs"]]

    reopened = with_backend(target, requeue_each)
    if as_json:
        click.echo(serde.dumps_text({"runs": reopened}))
        return
    for run in reopened:
        _print_run(run, as_json=False)


@click.group()
def workers() -> None:
    """Worker processes."""


@workers.command("ls")
@json_option
@reports_errors
@backend_options
def list_workers(target: Target, as_json: bool) -> None:
    """Workers that ever registered, with their last heartbeat.

    LIVE is yes for a running worker seen within the last 30 seconds (by the clock of the
    server, or of this host on a database); a running worker that is not live has likely crashed
    (its leases expire and its steps run elsewhere). STATE is lost for one not seen for a day:
    it never said it stopped, and status and metrics no longer show it.
    """
    found = with_backend(target, lambda b: b.workers())
    if as_json:
        click.echo(serde.dumps_text(found))
        return
    table = headed_table("id", "host", "pid", "concurrency", "last seen", "state", "live")
    for w in found["items"]:
        state = Text("stopped", style="dim")
        if w["running"]:
            lost = w["seen_seconds_ago"] > WORKER_RECENT_WITHIN
            state = Text("lost", style="red") if lost else Text("running", style="green")
        _add_row(
            table,
            w["id"],
            w["host"],
            str(w["pid"]),
            str(w["concurrency"]),
            f"{time_text(w['last_seen'])} ({w['seen_seconds_ago']:.0f}s ago)",
            state,
            live_text(w),
        )
    console().print(table)


def live_text(worker: dict[str, Any]) -> Text:
    """``yes``, or ``no`` in red for a worker that should be running but is silent."""
    if worker["live"]:
        return Text("yes", style="green")
    return Text("no", style="red" if worker["running"] else "dim")


def _print_run(run: dict[str, Any], as_json: bool) -> None:
    """``run ID STATUS`` (what an action left the run in), or its JSON."""
    if as_json:
        click.echo(serde.dumps_text(run))
    else:
        console().print(Text(f"run {run['id']} {run['status']}"))


def _add_row(table: Table, *cells: str | Text) -> None:
    """A row of ``table`` whose text cells are printed as they are, not read as markup."""
    table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in cells))

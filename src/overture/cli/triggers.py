"""``overture events`` and ``overture schedules``: on the server with --url, else the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from overture import serde
from overture.cli.backends import Target, backend_options, with_backend
from overture.cli.common import json_option, reports_errors
from overture.cli.console import console, headed_table, time_text
from overture.cli.trigger_backend import DatabaseTriggers, TriggerBackend
from overture.serde import JSON


def _on(target: Target, work: Any) -> Any:
    return with_backend(target, work, local=DatabaseTriggers)


def _json_value(text: str | None, option: str) -> JSON:
    """JSON text, or ``@PATH`` for a file holding it."""
    if text is None:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as error:
            message = f"cannot read {text[1:]}: {error.strerror or error}"
            raise click.BadParameter(message, param_hint=option) from None
    try:
        return serde.loads(text)  # type: ignore[no-any-return]
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint=option) from None


# --- events ------------------------------------------------------------------------------------
@click.group()
def events() -> None:
    """Events: send one (every workflow listening for its type starts), list, show."""


@events.command("send")
@click.argument("event_type", metavar="TYPE")
@click.option("--payload", help="The payload: JSON, or @FILE holding JSON.")
@click.option("--id", "event_id", help="Unique per tenant: an id sent before starts nothing.")
@click.option("--user-id")
@click.option("--correlation-id")
@click.option("--idempotency-key", help="Also unique per tenant.")
@click.option("--source", help="The application sending it.")
@json_option
@reports_errors
@backend_options
def send_event(
    target: Target,
    event_type: str,
    payload: str | None,
    event_id: str | None,
    user_id: str | None,
    correlation_id: str | None,
    idempotency_key: str | None,
    source: str | None,
    as_json: bool,
) -> None:
    """Send an event of TYPE and print the runs it started."""
    data = _json_value(payload, "--payload")

    async def send(backend: TriggerBackend) -> dict[str, Any]:
        return await backend.send_event(
            event_type,
            data,
            id=event_id,
            user_id=user_id,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            source=source,
        )

    sent = _on(target, send)
    if as_json:
        click.echo(serde.dumps_text(sent))
        return
    event = sent["event"]
    out = console()
    if not sent["created"]:
        out.print(f"event {event['id']} was sent before: nothing started again")
    else:
        out.print(f"event {event['id']} ({event['type']})")
    _print_routes(event)


def _print_routes(event: dict[str, Any]) -> None:
    out = console()
    if not event["routes"]:
        out.print("no workflow listens for this type")
        return
    table = headed_table("workflow", "run", "why not")
    for route in event["routes"]:
        table.add_row(
            f"{route['workflow']} v{route['version']}", route["run_id"] or "", route["reason"] or ""
        )
    out.print(table)


@events.command("ls")
@click.option("--type", "event_type", help="Only events of this type.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", help="Continue where the previous page ended.")
@json_option
@reports_errors
@backend_options
def list_events(
    target: Target, event_type: str | None, limit: int, cursor: str | None, as_json: bool
) -> None:
    """Events, newest first, with how many runs each started."""
    page = _on(target, lambda b: b.list_events(type=event_type, cursor=cursor, limit=limit))
    if as_json:
        click.echo(serde.dumps_text(page))
        return
    table = headed_table("id", "type", "received", "runs")
    for e in page["items"]:
        started = sum(1 for r in e["routes"] if r["run_id"])
        table.add_row(e["id"], e["type"], time_text(e["received_at"]), str(started))
    out = console()
    out.print(table)
    if page["next_cursor"]:
        out.print(f"more: --cursor {page['next_cursor']}")


@events.command("show")
@click.argument("event_id")
@json_option
@reports_errors
@backend_options
def show_event(target: Target, event_id: str, as_json: bool) -> None:
    """An event, and the run each listening workflow started (or why not)."""
    event = _on(target, lambda b: b.get_event(event_id))
    if as_json:
        click.echo(serde.dumps_text(event))
        return
    console().print(
        f"event {event['id']} ({event['type']}) received {time_text(event['received_at'])}"
    )
    console().print(f"payload: {serde.dumps_text(event['payload'])}")
    _print_routes(event)


# --- schedules ---------------------------------------------------------------------------------
@click.group()
def schedules() -> None:
    """Cron schedules: list with their next tick, add, pause, resume, remove."""


@schedules.command("ls")
@json_option
@reports_errors
@backend_options
def list_schedules(target: Target, as_json: bool) -> None:
    """Every schedule with its next tick, the workflows' own (on.cron) included."""
    found = _on(target, lambda b: b.list_schedules())
    if as_json:
        click.echo(serde.dumps_text(found))
        return
    table = headed_table("id", "workflow", "cron", "zone", "next tick", "state")
    for s in found["items"]:
        state = "paused" if s["paused"] else "active"
        table.add_row(
            s["id"], s["workflow"], s["cron"], s["timezone"], time_text(s["next_fire_at"]), state
        )
    console().print(table)


@schedules.command("show")
@click.argument("schedule_id")
@json_option
@reports_errors
@backend_options
def show_schedule(target: Target, schedule_id: str, as_json: bool) -> None:
    """A schedule and the runs its last ticks started."""
    found = _on(target, lambda b: b.get_schedule(schedule_id))
    if as_json:
        click.echo(serde.dumps_text(found))
        return
    _print_schedule(found)
    table = headed_table("tick", "run", "error")
    for t in found["ticks"]:
        table.add_row(time_text(t["tick"]), t["run_id"] or "", t["error"] or "")
    console().print(table)


def _print_schedule(s: dict[str, Any]) -> None:
    state = "paused" if s["paused"] else f"next tick {time_text(s['next_fire_at'])}"
    console().print(
        f"schedule {s['id']}: {s['workflow']} at {s['cron']!r} ({s['timezone']}), {state}"
    )


@schedules.command("add")
@click.argument("schedule_id")
@click.option("--workflow", required=True, help="The workflow each tick starts.")
@click.option("--cron", required=True, help="e.g. '0 7 * * *', '0 18 * * SUN', '@hourly'.")
@click.option("--timezone", default="UTC", show_default=True, help="An IANA zone.")
@click.option("--input", "input_json", help="Each run's input: JSON, or @FILE.")
@click.option(
    "--catch-up",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Ticks missed while no scheduler ran to fire anyway (0: skip them).",
)
@click.option("--paused", is_flag=True, help="Create it paused.")
@json_option
@reports_errors
@backend_options
def add_schedule(
    target: Target,
    schedule_id: str,
    workflow: str,
    cron: str,
    timezone: str,
    input_json: str | None,
    catch_up: int,
    paused: bool,
    as_json: bool,
) -> None:
    """Start WORKFLOW at each tick of --cron, read in --timezone."""
    data = _json_value(input_json, "--input")
    made = _on(
        target,
        lambda b: b.create_schedule(
            schedule_id,
            workflow,
            cron,
            timezone=timezone,
            input=data,
            catch_up=catch_up,
            paused=paused,
        ),
    )
    _print_or_json(made, as_json)


def _print_or_json(schedule: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(serde.dumps_text(schedule))
    else:
        _print_schedule(schedule)


@schedules.command("pause")
@click.argument("schedule_id")
@json_option
@reports_errors
@backend_options
def pause_schedule(target: Target, schedule_id: str, as_json: bool) -> None:
    """Stop firing (ticks while paused never fire)."""
    _print_or_json(_on(target, lambda b: b.pause_schedule(schedule_id)), as_json)


@schedules.command("resume")
@click.argument("schedule_id")
@json_option
@reports_errors
@backend_options
def resume_schedule(target: Target, schedule_id: str, as_json: bool) -> None:
    """Fire again, from the next tick."""
    _print_or_json(_on(target, lambda b: b.resume_schedule(schedule_id)), as_json)


@schedules.command("rm")
@click.argument("schedule_id")
@reports_errors
@backend_options
def remove_schedule(target: Target, schedule_id: str) -> None:
    """Delete a schedule made with `schedules add` or the API (a workflow's own go with its
    on.cron)."""
    _on(target, lambda b: b.delete_schedule(schedule_id))
    console().print(f"schedule {schedule_id} removed")


__all__ = ["events", "schedules"]

"""``overture run FILE``: run a workflow in this process and watch every step."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from overture import serde
from overture.cli.common import database_url_option, reports_errors
from overture.cli.console import console, parse_assignments, print_problems
from overture.cli.secrets import secrets_from_env
from overture.cli.workflows import load_handler_names, report_invalid
from overture.core import events as ev
from overture.core.loader import load_workflow
from overture.core.model import Workflow
from overture.core.state import TERMINAL_RUN, RunState
from overture.core.validate import handler_problems
from overture.errors import DocumentInvalid, InputInvalid, WorkflowInvalid
from overture.handlers.basic import basic_registry
from overture.handlers.registry import BUILTIN_HANDLER_NAMES, HandlerRegistry, load_registry
from overture.runtime.local import LocalRunner
from overture.runtime.worker import Worker
from overture.serde import JSON
from overture.store import create_store
from overture.store.records import StartRun
from overture.testing import PlaceholderSecrets, echo_registry

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "skipped": "yellow",
    "cancelled": "yellow",
    "compensated": "yellow",
}


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Every step echoes its inputs instead of running.")
@click.option(
    "--handlers",
    "handler_target",
    metavar="MODULE:ATTR",
    help="Run the steps with the handlers of this HandlerRegistry.",
)
@click.option(
    "--local",
    is_flag=True,
    help="Run for real and durably: in the database (embedded SQLite by default) with an "
    "in-process worker. Handlers: noop, echo, fail and those of --handlers.",
)
@database_url_option
@click.option("--input", "-i", "inputs", multiple=True, metavar="KEY=VALUE", help="Run input.")
@click.option("--input-json", metavar="JSON", help="Run input as a JSON object (KEY=VALUE adds).")
@click.option(
    "--fail",
    "fail_steps",
    multiple=True,
    metavar="STEP",
    help="With --dry-run: make STEP fail, to see how the run winds down and compensates.",
)
@reports_errors
def run(
    path: Path,
    dry_run: bool,
    handler_target: str | None,
    local: bool,
    database_url: str,
    inputs: tuple[str, ...],
    input_json: str | None,
    fail_steps: tuple[str, ...],
) -> None:
    """Run the workflow in PATH and watch every step; exit 0 if it succeeds, 1 if it does not.

    --dry-run and --handlers run in memory (nothing is stored: use them to try a workflow);
    --local stores the run like production does, so `overture runs show` finds it afterwards.
    Secrets come from OVERTURE_SECRET_<NAME> environment variables (a dry run never reads them).
    """
    if dry_run and (local or handler_target):
        raise click.UsageError("--dry-run cannot be combined with --local or --handlers")
    if not (dry_run or local or handler_target):
        raise click.UsageError("pass one of --dry-run, --local or --handlers MODULE:ATTR")
    if fail_steps and not dry_run:
        raise click.UsageError("--fail only applies to --dry-run")
    out = console()
    data = _input(input_json, inputs)
    known = set(BUILTIN_HANDLER_NAMES)
    if handler_target:
        known |= load_handler_names(handler_target)
    try:
        workflow = load_workflow(path, handlers=None if dry_run else known)
    except WorkflowInvalid as invalid:
        report_invalid(out, path, invalid.problems)
        raise SystemExit(1) from None
    except DocumentInvalid as invalid:
        report_invalid(out, path, [invalid.problem])
        raise SystemExit(1) from None
    if fail_steps:
        missing = sorted(set(fail_steps) - {s.id for s in workflow.steps})
        if missing:
            raise click.BadParameter(f"no such step: {', '.join(missing)}", param_hint="--fail")
    printer = _Printer(out)
    if local:
        registry = basic_registry()
        if handler_target:
            registry = load_registry(handler_target).include(registry)
        if problems := handler_problems(workflow, registry.names()):
            out.print(Text("✗ the in-process worker cannot run this workflow:", style="red"))
            print_problems(out, problems)
            out.print("  (it has noop, echo, fail and the handlers of --handlers MODULE:ATTR)")
            raise SystemExit(1)
        state = asyncio.run(_run_durably(database_url, workflow, data, registry, printer))
        _summary(out, workflow, state)
        raise SystemExit(0 if state.status == "succeeded" else 1)
    runner = _runner(workflow, handler_target, fail_steps)
    try:
        result = asyncio.run(runner.run(workflow, data, listener=printer))
    except InputInvalid as invalid:
        out.print(Text(f"✗ {invalid}", style="red"))
        raise SystemExit(1) from None
    except WorkflowInvalid as invalid:
        print_problems(out, invalid.problems)
        raise SystemExit(1) from None
    _summary(out, workflow, result.state)
    raise SystemExit(0 if result.status == "succeeded" else 1)


def _input(input_json: str | None, pairs: tuple[str, ...]) -> dict[str, JSON]:
    data: dict[str, JSON] = {}
    if input_json is not None:
        try:
            loaded = serde.loads(input_json)
        except ValueError as error:
            raise click.BadParameter(f"not JSON: {error}", param_hint="--input-json") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--input-json")
        data.update(loaded)
    data.update(parse_assignments(pairs, "--input"))
    return data


def _runner(workflow: Workflow, target: str | None, fail: tuple[str, ...]) -> LocalRunner:
    if target is None:
        names = {s.uses for s in workflow.steps}
        names |= {s.compensate.uses for s in workflow.steps if s.compensate}
        return LocalRunner(echo_registry(names, fail=fail), secrets=PlaceholderSecrets())
    registry: HandlerRegistry = load_registry(target)
    return LocalRunner(registry, secrets=secrets_from_env(os.environ))


async def _run_durably(
    url: str,
    workflow: Workflow,
    data: JSON,
    registry: HandlerRegistry,
    printer: _Printer,
) -> RunState:
    """Register, start and work the run with an in-process worker, printing its history live."""
    store = create_store(url)
    await store.open()
    try:
        record = await store.register_workflow(workflow)
        run, _ = await store.start_run(
            StartRun(workflow=record.name, version=record.version, input=data)
        )
        worker = Worker(store, registry, poll=0.05, secrets=secrets_from_env(os.environ))
        working = asyncio.create_task(worker.run())
        seen = 0
        try:
            while True:
                for stored in await store.events(run.id, after=seen):
                    printer(stored.event)
                    seen = stored.seq
                current = await store.get_run(run.id)
                if current.status in TERMINAL_RUN and seen >= current.events:
                    break
                if working.done():
                    working.result()  # the worker died: say why
                await asyncio.sleep(0.02)
        finally:
            worker.stop(grace=0)
            await working
        return await store.run_state(run.id)
    finally:
        await store.close()


class _Printer:
    """Prints each step event as it happens, timed from the run's start by the events' clock."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.run_started: datetime | None = None
        self.step_started: dict[tuple[str, bool], datetime] = {}

    def __call__(self, event: ev.Event) -> None:
        self.run_started = self.run_started or event.at
        key = (getattr(event, "step_id", ""), bool(getattr(event, "compensation", False)))
        if isinstance(event, ev.StepStarted):
            self.step_started[key] = event.at
        line = _describe(event)
        if line is None:
            return
        began = self.step_started.get(key)
        if isinstance(event, ev.StepSucceeded | ev.StepFailed) and began is not None:
            line.append(f" ({_duration((event.at - began).total_seconds())})", style="dim")
        clock = f"{(event.at - self.run_started).total_seconds():7.2f}s "
        self.out.print(Text.assemble((clock, "dim"), line))


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _describe(event: ev.Event) -> Text | None:
    label = "undo " if getattr(event, "compensation", False) else ""
    match event:
        case ev.RunStarted(workflow=name, version=version, run_id=run_id):
            return Text(f"run {run_id} of {name} v{version} started", style="bold")
        case ev.StepStarted(step_id=step, attempt=attempt):
            return Text(f"▶ {label}{step} started (attempt {attempt})")
        case ev.StepSucceeded(step_id=step):
            return Text.assemble(("✓ ", "green"), f"{label}{step} succeeded")
        case ev.StepFailed(step_id=step, error=error):
            return Text.assemble(("✗ ", "red"), f"{label}{step} failed: {error.message}")
        case ev.StepRetryScheduled(step_id=step, attempt=attempt, delay=delay):
            return Text(f"↻ {label}{step} attempt {attempt} in {delay:.2f}s", style="yellow")
        case ev.StepSkipped(step_id=step, reason=reason):
            return Text(f"↷ {step} skipped: {reason}", style="yellow")
        case ev.StepCancelled(step_id=step, reason=reason):
            return Text(f"■ {label}{step} cancelled: {reason}", style="yellow")
        case ev.CompensationStarted(steps=steps):
            return Text(f"compensating, in order: {', '.join(steps)}", style="yellow")
    return None


def _summary(out: Console, workflow: Workflow, state: RunState) -> None:
    table = Table(title=f"{workflow.name} v{workflow.version}", title_justify="left")
    for column in ("step", "uses", "status", "attempts", "detail"):
        table.add_column(column)
    for step in workflow.steps:
        s = state.step(step.id)
        detail = s.reason or (s.error.message if s.error else "")
        undo = state.compensations.get(step.id)
        if undo is not None:
            detail = f"{detail} (compensation {undo.status})".strip()
        table.add_row(
            step.id,
            step.uses,
            Text(s.status, style=STATUS_STYLE.get(s.status, "")),
            str(s.attempt),
            detail,
        )
    out.print(table)
    style = STATUS_STYLE.get(state.status, "")
    out.print(Text(f"run {state.run_id} {state.status}", style=f"bold {style}"))
    if state.status == "succeeded":
        out.print(Text("output: ") + Text(serde.dumps_text(state.output)))
    elif state.error is not None:
        out.print(Text(f"error: {state.error.message}", style="red"))

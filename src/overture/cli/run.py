"""``overture run FILE``: run a workflow in this process and watch every step."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from overture import serde
from overture.cli.console import console, parse_assignments, print_problems
from overture.cli.workflows import load_handler_names, report_invalid
from overture.core import events as ev
from overture.core.loader import load_workflow
from overture.core.model import Workflow
from overture.core.state import RunState
from overture.errors import DocumentInvalid, InputInvalid, WorkflowInvalid
from overture.handlers.registry import BUILTIN_HANDLER_NAMES, HandlerRegistry, load_registry
from overture.runtime.local import LocalRunner
from overture.serde import JSON
from overture.testing import PlaceholderSecrets, echo_registry

SECRET_PREFIX = "OVERTURE_SECRET_"
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
@click.option("--input", "-i", "inputs", multiple=True, metavar="KEY=VALUE", help="Run input.")
@click.option("--input-json", metavar="JSON", help="Run input as a JSON object (KEY=VALUE adds).")
@click.option(
    "--fail",
    "fail_steps",
    multiple=True,
    metavar="STEP",
    help="With --dry-run: make STEP fail, to see how the run winds down and compensates.",
)
def run(
    path: Path,
    dry_run: bool,
    handler_target: str | None,
    inputs: tuple[str, ...],
    input_json: str | None,
    fail_steps: tuple[str, ...],
) -> None:
    """Run the workflow in PATH in this process; exit 0 if it succeeds, 1 if it does not.

    Nothing is stored: use it to try a workflow. Secrets come from OVERTURE_SECRET_<NAME>
    environment variables (a dry run never reads them).
    """
    if dry_run == (handler_target is not None):
        raise click.UsageError("pass exactly one of --dry-run or --handlers MODULE:ATTR")
    if fail_steps and not dry_run:
        raise click.UsageError("--fail only applies to --dry-run")
    out = console()
    data = _input(input_json, inputs)
    known = set(BUILTIN_HANDLER_NAMES)
    if handler_target:
        known |= load_handler_names(handler_target)
    try:
        workflow = load_workflow(path, handlers=known if handler_target else None)
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
    runner = _runner(workflow, handler_target, fail_steps)
    printer = _Printer(out)
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
    return LocalRunner(registry, secrets=_secrets_from_env(os.environ))


def _secrets_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        k.removeprefix(SECRET_PREFIX): v for k, v in environ.items() if k.startswith(SECRET_PREFIX)
    }


class _Printer:
    """Prints each step event as it happens."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.started = time.monotonic()

    def __call__(self, event: ev.Event) -> None:
        line = _describe(event)
        if line is not None:
            clock = f"{time.monotonic() - self.started:7.2f}s "
            self.out.print(Text.assemble((clock, "dim"), line))


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

"""A run's progress as people read it, wherever the run happens (in memory, in this process's
worker, on a server): a line per step event as it happens, then each step and how the run ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from overture import serde
from overture.cli.console import STATUS_STYLE, status_text
from overture.core import events as ev
from overture.core.model import Workflow
from overture.core.state import RunState, apply
from overture.errors import OvertureError


class ProgressPrinter:
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
        line = describe(event)
        if line is None:
            return
        began = self.step_started.get(key)
        if isinstance(event, ev.StepSucceeded | ev.StepFailed) and began is not None:
            line.append(f" ({_duration((event.at - began).total_seconds())})", style="dim")
        clock = f"{(event.at - self.run_started).total_seconds():7.2f}s "
        self.out.print(Text.assemble((clock, "dim"), line))


async def watch(history: AsyncIterable[Mapping[str, Any]], printer: ProgressPrinter) -> RunState:
    """Print each event of a run's history (the API's JSON) as it comes; the state it folds to."""
    state: RunState | None = None
    async for data in history:
        event = _event(data)
        printer(event)
        state = apply(state, event)
    if state is None:
        raise OvertureError("the run's history is empty")
    return state


def steps_of(workflow: Workflow | Mapping[str, Any]) -> dict[str, str]:
    """Each step's id and handler, in definition order (from a workflow or its JSON data)."""
    if isinstance(workflow, Workflow):
        return {step.id: step.uses for step in workflow.steps}
    return {str(step["id"]): str(step["uses"]) for step in workflow.get("steps", ())}


def summary(out: Console, steps: Mapping[str, str], state: RunState) -> None:
    """A table of the steps (``steps``: id to handler), then the run's status and output or
    error."""
    table = Table(title=f"{state.workflow} v{state.version}", title_justify="left")
    for column in ("step", "uses", "status", "attempts", "detail"):
        table.add_column(column)
    for step_id, uses in steps.items():
        s = state.step(step_id)
        detail = s.reason or (s.error.message if s.error else "")
        undo = state.compensations.get(step_id)
        if undo is not None:
            detail = f"{detail} (compensation {undo.status})".strip()
        table.add_row(
            step_id,
            uses,
            status_text(s.status),
            str(s.attempt),
            Text(detail),  # an error message is data: never read as markup
        )
    out.print(table)
    style = STATUS_STYLE.get(state.status, "")
    out.print(Text(f"run {state.run_id} {state.status}", style=f"bold {style}"))
    if state.status == "succeeded":
        out.print(Text("output: ") + Text(serde.dumps_text(state.output)))
    elif state.error is not None:
        out.print(Text(f"error: {state.error.message}", style="red"))


def describe(event: ev.Event) -> Text | None:
    """The line an event prints, or None for events people need not see."""
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


def _event(data: Mapping[str, Any]) -> ev.Event:
    fields = {k: v for k, v in data.items() if k != "seq"}
    try:
        return ev.from_data(fields)
    except KeyError:
        if fields.get("type") not in ev.EVENT_TYPES:
            raise OvertureError(
                f"event type {fields.get('type')!r} is unknown to this overture: upgrade it"
            ) from None
        raise


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"

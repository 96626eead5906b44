"""``overture workflows``: check workflow files before they are deployed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from overture.cli.console import console, print_problems
from overture.core.loader import load_workflow
from overture.core.model import Workflow
from overture.errors import DocumentInvalid, Problem, WorkflowInvalid
from overture.handlers.registry import BUILTIN_HANDLER_NAMES, load_registry

WORKFLOW_SUFFIXES = (".yml", ".yaml", ".json")


@click.group()
def workflows() -> None:
    """Validate and inspect workflow definitions."""


@workflows.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--handlers",
    "handler_targets",
    multiple=True,
    metavar="MODULE:ATTR",
    help="A HandlerRegistry whose handlers steps may use, besides the built-in ones.",
)
def validate(paths: tuple[Path, ...], handler_targets: tuple[str, ...]) -> None:
    """Check workflow files (or every workflow file in a directory); exit 1 if any is invalid."""
    known = set(BUILTIN_HANDLER_NAMES)
    for target in handler_targets:
        known |= load_handler_names(target)
    out = console()
    files = expand(paths)
    failed = 0
    for path in files:
        try:
            workflow = load_workflow(path, handlers=known)
        except WorkflowInvalid as invalid:
            failed += 1
            report_invalid(out, path, invalid.problems)
        except DocumentInvalid as invalid:
            failed += 1
            report_invalid(out, path, [invalid.problem])
        else:
            out.print(Text.assemble(("✓ ", "green"), f"{path}  ", describe(workflow)))
    if failed:
        out.print(f"{failed} of {len(files)} workflow file(s) invalid", style="red")
        raise SystemExit(1)


def expand(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given; directories replaced by the workflow files directly inside them."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in WORKFLOW_SUFFIXES)
            if not found:
                raise click.BadParameter(f"no workflow files in directory {str(path)!r}")
            files += found
        else:
            files.append(path)
    return files


def load_handler_names(target: str) -> set[str]:
    """The handler names of the registry at ``MODULE:ATTR``, as a CLI error if it cannot load."""
    try:
        return set(load_registry(target).names())
    except (ImportError, ValueError) as error:
        raise click.BadParameter(str(error), param_hint="--handlers") from None


def describe(workflow: Workflow) -> str:
    """``name v1 · 3 steps · on events a, b; cron 0 7 * * *``."""
    parts = [f"{workflow.name} v{workflow.version}", f"{len(workflow.steps)} steps"]
    triggers = [
        f"{kind} {', '.join(values)}"
        for kind, values in (
            ("events", workflow.on.events),
            ("cron", workflow.on.cron),
            ("webhook", workflow.on.webhook),
        )
        if values
    ]
    if triggers:
        parts.append("on " + "; ".join(triggers))
    return " · ".join(parts)


def report_invalid(out: Console, path: Path, problems: Sequence[Problem]) -> None:
    """A header line for the file, then one line per problem."""
    count = len(problems)
    out.print(Text.assemble(("✗ ", "red"), f"{path}: {count} problem{'s' if count > 1 else ''}"))
    print_problems(out, problems)

"""``overture workflows``: check workflow files here, push them to a server (or the database)
and look at what is registered there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from overture import serde
from overture.api import views
from overture.cli.backends import Backend, Target, backend_options, with_backend
from overture.cli.common import json_option, reports_errors
from overture.cli.console import console, print_problems, time_text
from overture.core.loader import WORKFLOW_SUFFIXES, load_workflow
from overture.core.model import Workflow
from overture.errors import DocumentInvalid, Problem, WorkflowInvalid
from overture.handlers.registry import BUILTIN_HANDLER_NAMES, load_registry
from overture.remote import ApiProblem

LOCATED_CODES = ("workflow_invalid", "document_invalid")
"""The API's codes for a definition refused with its problems located in ``errors``."""


@click.group()
def workflows() -> None:
    """Validate workflow files, push them, and look at the registered ones.

    `validate` works on files here. The others ask the server at --url (or OVERTURE_URL), as the
    tenant of --api-key, or else open the database at --database-url directly.
    """


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
    return summarise(
        {
            "name": workflow.name,
            "version": workflow.version,
            "steps": len(workflow.steps),
            "triggers": views.triggers(workflow),
        }
    )


def report_invalid(out: Console, path: Path, problems: Sequence[Problem]) -> None:
    """A header line for the file, then one line per problem."""
    count = len(problems)
    out.print(Text.assemble(("✗ ", "red"), f"{path}: {count} problem{'s' if count > 1 else ''}"))
    print_problems(out, problems)


@workflows.command("push")
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@json_option
@reports_errors
@backend_options
def push_workflows(target: Target, paths: tuple[Path, ...], as_json: bool) -> None:
    """Register workflow files (a changed one becomes a new version); exit 1 if any is invalid.

    The server checks each against the handlers its workers have.
    """

    async def push_all(backend: Backend) -> list[dict[str, Any] | Sequence[Problem]]:
        return [await push(backend, path) for path in paths]

    out, problems_out = console(), console(stderr=as_json)  # --json: only JSON on stdout
    failed = 0
    for path, pushed in zip(paths, with_backend(target, push_all), strict=True):
        if not isinstance(pushed, dict):
            failed += 1
            report_invalid(problems_out, path, pushed)
        elif as_json:
            click.echo(serde.dumps_text(pushed))
        else:
            out.print(Text.assemble(("✓ ", "green"), f"{path}  ", summarise(pushed)))
    if failed:
        problems_out.print(f"{failed} of {len(paths)} workflow file(s) invalid", style="red")
        raise SystemExit(1)


@workflows.command("ls")
@json_option
@reports_errors
@backend_options
def list_workflows(target: Target, as_json: bool) -> None:
    """Registered workflows, the latest version of each."""
    found = with_backend(target, lambda b: b.list_workflows())
    if as_json:
        click.echo(serde.dumps_text(found))
        return
    table = Table()
    for column in ("name", "version", "steps", "triggers", "state", "registered"):
        table.add_column(column)
    for w in found["items"]:
        state = (
            Text("disabled", style="yellow") if w["disabled"] else Text("enabled", style="green")
        )
        table.add_row(
            w["name"],
            str(w["version"]),
            str(w["steps"]),
            _triggers(w["triggers"]),
            state,
            time_text(w["created_at"]),
        )
    console().print(table)


@workflows.command("show")
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), help="This version (default: the latest).")
@json_option
@reports_errors
@backend_options
def show_workflow(target: Target, name: str, version: int | None, as_json: bool) -> None:
    """A registered workflow: its versions, triggers and steps."""
    found = with_backend(target, lambda b: b.get_workflow(name, version))
    if as_json:
        click.echo(serde.dumps_text(found))
        return
    out = console()
    out.print(Text(summarise(found), style="bold"))
    versions = ", ".join(map(str, found["versions"]))
    state = "disabled" if found["disabled"] else "enabled"
    out.print(f"{state}; versions {versions}; registered {time_text(found['created_at'])}")
    out.print(f"digest {found['digest']}")
    table = Table()
    for column in ("step", "uses", "depends on", "when"):
        table.add_column(column)
    for step in found["definition"].get("steps", []):
        table.add_row(
            step["id"],
            step["uses"],
            ", ".join(step.get("depends_on", [])),
            str(step.get("when", "")),
        )
    out.print(table)


async def push(backend: Backend, path: Path) -> dict[str, Any] | Sequence[Problem]:
    """Register the workflow file at ``path``: the registered version, or its problems."""
    try:
        return await backend.register_workflow(path)
    except ApiProblem as refused:
        if refused.code not in LOCATED_CODES or not refused.errors:
            raise
        return [_located(found, refused.code, path) for found in refused.errors]
    except WorkflowInvalid as invalid:
        return invalid.problems
    except DocumentInvalid as invalid:
        return [invalid.problem]


def summarise(workflow: Mapping[str, Any]) -> str:
    """A registered workflow (the API's JSON) as ``describe`` shows a file's."""
    parts = [f"{workflow['name']} v{workflow['version']}", f"{workflow['steps']} steps"]
    if workflow["triggers"]:
        parts.append("on " + _triggers(workflow["triggers"]))
    return " · ".join(parts)


def _triggers(triggers: Mapping[str, Sequence[str]]) -> str:
    return "; ".join(f"{kind} {', '.join(values)}" for kind, values in triggers.items())


def _located(found: Mapping[str, Any], code: str, path: Path) -> Problem:
    """A problem the server located in the body, placed in the file it came from."""
    return Problem(
        message=str(found.get("message", "")),
        code=str(found.get("code") or code),
        file=str(path),
        line=found.get("line"),
        column=found.get("column"),
        step=found.get("step"),
        path=tuple(found.get("path") or ()),
    )

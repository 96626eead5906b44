"""How the CLI prints: rich on a terminal, plain text in a pipe, problems one per line."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from overture import serde
from overture.errors import Problem
from overture.serde import JSON

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "skipped": "yellow",
    "cancelled": "yellow",
    "compensated": "yellow",
}


def console(*, stderr: bool = False) -> Console:
    """A console that drops colour when not on a terminal, and never wraps long lines."""
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_problems(out: Console, problems: Iterable[Problem]) -> None:
    """One line per problem: ``file:line:col: step 'x': message [code]``."""
    for problem in problems:
        line = Text("  ")
        line.append(str(problem))
        line.append(f" [{problem.code}]", style="dim")
        out.print(line)


def parse_assignments(pairs: Iterable[str], what: str) -> dict[str, JSON]:
    """``key=value`` pairs; a value that is JSON (``3``, ``true``, ``[1]``) keeps its type."""
    result: dict[str, JSON] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=what)
        try:
            result[key] = serde.loads(raw)
        except ValueError:
            result[key] = raw
    return result


def status_text(status: str) -> Text:
    """A run's or step's status, coloured by how it ended."""
    return Text(status, style=STATUS_STYLE.get(status, ""))


def time_text(at: str | None) -> str:
    """An RFC 3339 time from the API, to the millisecond ("" for none)."""
    if not at:
        return ""
    try:
        return datetime.fromisoformat(at).isoformat(timespec="milliseconds")
    except ValueError:
        return at


def headed_table(*columns: str) -> Table:
    """A table with these column headings."""
    found = Table()
    for column in columns:
        found.add_column(column)
    return found

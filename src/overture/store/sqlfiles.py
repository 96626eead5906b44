"""SQL lives in ``.sql`` files beside this module, one folder per dialect.

- ``NNN_name.sql``: numbered migrations, applied in order, each exactly once.
- ``queries.sql`` and ``queries_<concern>.sql``: named statements, each introduced by a
  ``-- name: some_name`` line; names are unique across a dialect's files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from overture.store.records import SchemaStatus

_MIGRATION = re.compile(r"^(\d{3})_(\w+)\.sql$")
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """Every migration of ``dialect``, in version order."""
    folder = resources.files("overture.store") / "sql" / dialect
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} migrations must be numbered 001, 002, ... without gaps")
    return tuple(found)


def schema_status(dialect: str, applied: set[int]) -> SchemaStatus:
    """Which of ``dialect``'s migrations a database with ``applied`` has, and which it lacks."""
    known = [m.version for m in migrations(dialect)]
    return SchemaStatus(
        applied=tuple(sorted(applied)), pending=tuple(v for v in known if v not in applied)
    )


@cache
def queries(dialect: str) -> dict[str, str]:
    """The named statements of ``dialect``'s query files."""
    folder = resources.files("overture.store") / "sql" / dialect
    named: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not (entry.name.startswith("queries") and entry.name.endswith(".sql")):
            continue
        parts = _NAME.split(entry.read_text("utf-8"))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in named:
                raise RuntimeError(f"{dialect} query {name!r} is named twice ({entry.name})")
            named[name] = body.strip().rstrip(";")
    return named

"""How ``overture runs attempts`` and ``overture runs logs`` print a run's attempts: a table, or
each attempt's heading followed by the lines it logged (the API's JSON in, text out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from overture import serde
from overture.cli.console import STATUS_STYLE, headed_table, time_text

ATTEMPT_STYLE = {**STATUS_STYLE, "expired": "red", "released": "yellow", "running": "cyan"}
RERUN = {"crash": "after a crash", "released": "after a release"}
"""What an attempt queued again with the same number says about why."""


def attempts_table(items: Iterable[Mapping[str, Any]]) -> Table:
    """One row per attempt: step, number, status, worker, start, duration, HTTP status and
    error code (``runs logs`` shows each error's message)."""
    table = headed_table("step", "attempt", "status", "worker", "started", "took", "http", "error")
    for a in items:
        rerun = RERUN.get(a["queued_after"] or "")
        table.add_row(
            step_label(a),
            f"{a['attempt']} ({rerun})" if rerun else str(a["attempt"]),
            status_text(a["status"]),
            Text(a["worker_id"] or ""),  # text from elsewhere is never read as markup
            time_text(a["started_at"]),
            duration_text(a["duration"]),
            "" if a["status_code"] is None else str(a["status_code"]),
            Text("" if a["error"] is None else a["error"]["code"]),
        )
    return table


def print_table(out: Console, table: Table) -> None:
    """``table`` whole: in a pipe, as wide as it needs rather than 80 columns."""
    if not out.is_terminal:
        wide = out.options.update(max_width=1000)
        out.width = max(out.width, out.measure(table, options=wide).maximum)
    out.print(table)


def print_attempt_logs(out: Console, items: Iterable[Mapping[str, Any]], after: int = 0) -> None:
    """Each attempt's heading, then its lines; with ``after``, only lines after that id (and
    only the attempts that have some)."""
    for a in items:
        lines = [line for line in a["logs"] if line["id"] > after]
        if after and not lines:
            continue
        out.print(heading(a))
        if a["error"] is not None:
            out.print(Text(f"  error: {error_text(a['error'])}", style="red"))
        for line in lines:
            fields = f" {serde.dumps_text(line['fields'])}" if line["fields"] else ""
            level = line["level"].upper()
            out.print(Text(f"  {time_text(line['at'])} {level:<7} {line['message']}{fields}"))


def heading(a: Mapping[str, Any]) -> Text:
    """``step #N · status · worker W · 12.3 ms · HTTP 200``."""
    text = Text(f"{step_label(a)} #{a['attempt']}", style="bold")
    text.append(" · ")
    text.append_text(status_text(a["status"]))
    parts = []
    if rerun := RERUN.get(a["queued_after"] or ""):
        parts.append(f"queued {rerun}")
    if a["worker_id"]:
        parts.append(f"worker {a['worker_id']}")
    if a["duration"] is not None:
        parts.append(duration_text(a["duration"]))
    if a["status_code"] is not None:
        parts.append(f"HTTP {a['status_code']}")
    for part in parts:
        text.append(f" · {part}")
    return text


def step_label(a: Mapping[str, Any]) -> str:
    return f"undo {a['step_id']}" if a["compensation"] else str(a["step_id"])


def status_text(status: str) -> Text:
    return Text(status, style=ATTEMPT_STYLE.get(status, ""))


def error_text(error: Mapping[str, Any] | None) -> str:
    return "" if error is None else f"{error['message']} [{error['code']}]"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"

"""``benchmarks/RESULTS.md``: the machine, a table per scenario, and how each system was set up."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import METRICS, Measurement, target

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

SETTINGS = {
    "Overture": """\
One asyncio worker, concurrency 64, lease 30 s, poll 0.05 s, the `noop` handler. Where a
scenario enqueues as fast as it can, 64 concurrent callers of `Client.start_run` do. SQLite:
the default `synchronous=FULL`, WAL; the worker shares the client's store in the same process
(in-process wake-up). PostgreSQL: the worker opens its own store and hears of new jobs through
LISTEN/NOTIFY. Latency is `StepStarted.at − RunStarted.at`, fan-out wall time is
`finished_at − created_at`: both stamped by the store. The RSS worker is a separate process
(`benchmarks/sleep_worker.py`, concurrency 1,000) whose handler sleeps.""",
    "Celery": """\
Redis as broker and result backend (databases 14 and 15, flushed first), results stored. The
worker is a subprocess, `-P prefork -c 8` (the fastest of prefork 2/8 and threads 2/8 here),
prefetch multiplier 4, `task_acks_late=True` (acknowledged once run: at-least-once, as
Overture's leases are). Chains are `chain(noop.si() × 10)`; fan-out is
`chain(noop.si(), chord([noop.si()] × 100, stamp.si()))`. One producer calls `apply_async` (the
client is synchronous); the drain enqueues while the worker's consumer is cancelled, then adds
it back. Host clock: latency is the task's `time.time()` minus the producer's just before
`apply_async`; fan-out ends when the join task runs. The Redis measured has no persistence
(no AOF, no RDB): unlike the others, nothing survives its restart.""",
    "Procrastinate": """\
A worker subprocess, `procrastinate worker --concurrency 64` (LISTEN/NOTIFY on, log level
warning); 64 concurrent callers of `defer_async` enqueue. A chain is a task deferring the next;
fan-out is a root task batch-deferring 100 children that each decrement a counter row, the last
deferring the join. Database clock (`procrastinate_events.at`): latency is `started − deferred`,
the drain spans the first `started` to the last `succeeded` (the worker's start-up is not
counted), fan-out the root's `deferred` to the join's `succeeded`.""",
}


def _output(*args: str) -> str:
    try:
        done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def machine(postgres: str, redis: str, load_before: Sequence[float]) -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    query = "SELECT current_setting('server_version'), current_setting('fsync'),"
    query += " current_setting('synchronous_commit')"
    version, fsync, commit = (_output("psql", postgres, "-Atc", query) + "||").split("|")[:3]
    info = _output("redis-cli", "-u", redis, "info", "server").splitlines()
    redis_version = next((i.split(":")[1] for i in info if i.startswith("redis_version")), "?")
    load = ", ".join(f"{x:.2f}" for x in load_before)
    after = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- {os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, {platform.platform()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        f"- PostgreSQL {version} (fsync {fsync}, synchronous_commit {commit})",
        f"- Redis {redis_version}",
        f"- Load average (1, 5, 15 min) before: {load}; after: {after}",
    ]


def _number(value: float, unit: str) -> str:
    return f"{value:,.0f}" if unit.endswith("/s") else f"{value:,.2f}"


def _row(m: Measurement) -> str:
    if m.median is None:
        return f"| {m.system} | {m.store} | {m.metric} | — | {m.error or 'no samples'} | | |"
    goal = target(m.metric, m.store) if m.system == "Overture" else None
    cells = [
        m.system,
        m.store,
        m.metric,
        f"{_number(m.median, m.unit)} {m.unit}",
        ", ".join(_number(s, m.unit) for s in m.samples)
        + ("" if m.error is None else f" (then {m.error})"),
        str(goal or ""),
        "" if goal is None else "pass" if goal.met(m.median) else "**FAIL**",
    ]
    return f"| {' | '.join(cells)} |"


def misses(measurements: Sequence[Measurement]) -> list[str]:
    found = []
    for m in measurements:
        goal = target(m.metric, m.store) if m.system == "Overture" else None
        if goal is not None and (m.median is None or not goal.met(m.median)):
            got = m.error if m.median is None else f"{_number(m.median, m.unit)} {m.unit}"
            found.append(f"- {m.scenario} on {m.store}, {m.metric}: {got} (target {goal})")
    return found


def write(
    measurements: Sequence[Measurement],
    *,
    command: str,
    repeat: int,
    postgres: str,
    redis: str,
    load_before: Sequence[float],
) -> str:
    systems = {m.system.split()[0] for m in measurements}
    lines = [
        "# Overture benchmarks",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`.",
        f"Each figure is the median of {repeat} sample{'s' * (repeat != 1)} (all listed). The",
        "targets are Overture's; the peers are measured for reference. The machine may be shared:",
        "load from other processes shows as spread between samples (see the load averages).",
        "",
        *machine(postgres, redis, load_before),
        "",
        "## Missed targets",
        "",
        *(misses(measurements) or ["None."]),
    ]
    for scenario in METRICS:
        if rows := [m for m in measurements if m.scenario == scenario]:
            lines += [
                "",
                f"## {scenario}",
                "",
                "| system | store | metric | median | samples | target | result |",
                "|---|---|---|---|---|---|---|",
                *map(_row, rows),
            ]
    lines += ["", "## Settings"]
    for system, text in SETTINGS.items():
        if system in systems:
            lines += ["", f"**{system}**: {text}"]
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    return text

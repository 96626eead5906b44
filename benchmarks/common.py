"""What every benchmark module shares: sizes, targets, measurements, processes and databases.

Standard library only: the peers' drivers import it from their own virtualenv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
"""The repository: the working directory of every subprocess, so ``benchmarks`` imports."""
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
"""The default server for temporary databases."""
REDIS = "redis://127.0.0.1:6379"

DRAIN = "noop drain"
LATENCY = "enqueue→start latency"
CHAIN = "10-step sequential workflows"
FAN_OUT = "fan-out 100 + join"
RSS = "worker RSS, 1,000 in-flight steps"
METRICS: dict[str, dict[str, str]] = {
    DRAIN: {"enqueue rate": "runs/s", "drain rate": "runs/s"},
    LATENCY: {"p50": "ms", "p99": "ms"},
    CHAIN: {"steps/s": "steps/s"},
    FAN_OUT: {"wall time": "ms"},
    RSS: {"RSS, idle": "MB", "RSS, all in flight": "MB"},
}
"""Every scenario's metrics and their units, in the order the results list them."""
NAMES = {"drain": DRAIN, "latency": LATENCY, "chain": CHAIN, "fan-out": FAN_OUT, "rss": RSS}
"""Scenarios by their names on the command line (``--scenario``)."""


@dataclass(frozen=True, slots=True)
class Sizes:
    drain_runs: int
    latency_rate: float
    """Runs started per second, evenly spaced."""
    latency_seconds: float
    chain_runs: int
    chain_length: int
    fan_width: int
    fan_runs: int
    """Fan-out runs per sample, one after the other; a sample is their median."""
    in_flight: int


FULL = Sizes(10_000, 50, 10, 200, 10, 100, 10, 1_000)
QUICK = Sizes(2_000, 50, 2, 40, 10, 100, 3, 1_000)


@dataclass(frozen=True, slots=True)
class Target:
    value: float
    at_least: bool

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.at_least else measured <= self.value

    def __str__(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.value:,g}"


def target(metric: str, store: str) -> Target | None:
    """Overture's target for a metric (peers are measured for reference, not judged)."""
    if metric in ("enqueue rate", "drain rate"):
        return Target(5_000 if store == "SQLite" else 2_500, at_least=True)
    return {
        "p50": Target(1.5, at_least=False),
        "p99": Target(5.0, at_least=False),
        "steps/s": Target(3_500, at_least=True),
        "wall time": Target(40.0, at_least=False),
        "RSS, all in flight": Target(150.0, at_least=False),
    }.get(metric)


@dataclass(slots=True)
class Measurement:
    """One metric of one scenario on one system: a sample per repetition."""

    scenario: str
    metric: str
    system: str
    store: str
    unit: str
    samples: list[float] = field(default_factory=list)
    error: str | None = None
    """Why there are no (more) samples: the system could not be installed, reached or run."""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0–100), interpolating between the closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def measure(
    system: str,
    store: str,
    samples: Mapping[str, Callable[[], dict[str, float]]],
    repeat: int,
    only: Collection[str],
) -> list[Measurement]:
    """Take ``repeat`` samples of each scenario in ``only``, in order."""
    return [
        row
        for scenario, sample in samples.items()
        if scenario in only
        for row in _measure(system, store, scenario, repeat, sample)
    ]


def _measure(
    system: str, store: str, scenario: str, repeat: int, sample: Callable[[], dict[str, float]]
) -> list[Measurement]:
    """Take ``repeat`` samples of a scenario; an exception ends it with the error recorded."""
    rows = [Measurement(scenario, m, system, store, u) for m, u in METRICS[scenario].items()]
    for i in range(repeat):
        log(f"{system} on {store}: {scenario}, sample {i + 1}/{repeat}")
        try:
            values = sample()
        except Exception as error:
            traceback.print_exc()
            for row in rows:
                row.error = f"{type(error).__name__}: {error}".splitlines()[0][:200]
            break
        for row in rows:
            row.samples.append(values[row.metric])
    return rows


def failed(system: str, store: str, scenarios: Collection[str], error: str) -> list[Measurement]:
    """A row per scenario saying why ``system`` produced no numbers."""
    return [Measurement(s, "—", system, store, "", error=error) for s in METRICS if s in scenarios]


# --- processes -----------------------------------------------------------------------------
def spawn(args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in the repository, its output going to ``log``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        return subprocess.Popen(list(args), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit within ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_mb(pid: int) -> float:
    """A process's resident set size (VmRSS) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} reports no VmRSS")


async def concurrently(n: int, call: Callable[[], Awaitable[object]], callers: int = 64) -> None:
    """Make ``n`` calls from ``callers`` concurrent callers, each waiting for its last call."""

    async def caller(count: int) -> None:
        for _ in range(count):
            await call()

    await asyncio.gather(*(caller(n // callers + (i < n % callers)) for i in range(callers)))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:g}s")
        time.sleep(0.005)


# --- PostgreSQL ----------------------------------------------------------------------------
def _pg_args(server: str) -> list[str]:
    parts = urlsplit(server)
    return ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)] + (
        ["-U", parts.username] if parts.username else []
    )


@contextmanager
def temporary_database(server: str, prefix: str) -> Iterator[str]:
    """A new database on ``server`` (``postgresql://user@host:port``), dropped afterwards."""
    name = f"bench_{prefix}_{secrets.token_hex(4)}"
    subprocess.run(["createdb", *_pg_args(server), name], check=True, capture_output=True)
    try:
        yield f"{server.rstrip('/')}/{name}"
    finally:
        drop = ["dropdb", "--force", *_pg_args(server), name]
        subprocess.run(drop, check=False, capture_output=True)


# --- peer drivers --------------------------------------------------------------------------
def peer_main(run: Callable[[argparse.Namespace], list[Measurement]]) -> None:
    """The command line of a peer's driver: run it, write its measurements as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--scenario", action="append", choices=NAMES)
    args = parser.parse_args()
    args.sizes = QUICK if args.quick else FULL
    args.only = {NAMES[name] for name in args.scenario or NAMES}
    args.out.write_text(json.dumps([asdict(m) for m in run(args)]))


def read_measurements(path: Path) -> list[Measurement]:
    return [Measurement(**m) for m in json.loads(path.read_text())]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

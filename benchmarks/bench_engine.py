"""How long the pure engine takes per step: the cost every completion pays before any I/O.

Runs a few workflow shapes through decide + fold with instant handlers (no event loop), takes the
median of repeated runs, and writes ``benchmarks/results/engine.md``.

    python benchmarks/bench_engine.py
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from overture.core import commands as cmd
from overture.core import events as ev
from overture.core.decide import decide
from overture.core.model import Workflow
from overture.core.state import apply, fold
from overture.testing import EPOCH

REPEATS = 7
RESULTS = Path(__file__).resolve().parent / "results" / "engine.md"


def chain(n: int) -> Workflow:
    steps = [{"id": "s0", "uses": "x", "with": {"v": "${input.v}"}}]
    steps += [
        {"id": f"s{i}", "uses": "x", "with": {"v": f"${{steps.s{i - 1}.output.v}}"}}
        for i in range(1, n)
    ]
    return Workflow.model_validate({"name": "chain", "steps": steps})


def fan(n: int) -> Workflow:
    steps = [{"id": "root", "uses": "x"}]
    steps += [{"id": f"s{i}", "uses": "x", "depends_on": ["root"]} for i in range(n)]
    steps += [{"id": "join", "uses": "x", "depends_on": [f"s{i}" for i in range(n)]}]
    return Workflow.model_validate({"name": "fan", "steps": steps})


def history(wf: Workflow) -> list[ev.Event]:
    """Run to completion, every attempt succeeding at once; return the whole history."""
    events: list[ev.Event] = []

    def record(event: ev.Event) -> None:
        nonlocal state
        events.append(event)
        state = apply(state, event)

    state = None
    record(ev.RunStarted(at=EPOCH, run_id="r", workflow=wf.name, version=1, input={"v": 1}))
    queued: list[cmd.Job] = []
    while state is not None and not state.finished:
        for command in decide(wf, state, EPOCH):
            record(cmd.to_event(command, EPOCH))
            if isinstance(command, cmd.ScheduleStep):
                queued.append(command.job)
        if queued:
            job = queued.pop()
            record(ev.StepStarted(at=EPOCH, step_id=job.step_id, attempt=1))
            record(ev.StepSucceeded(at=EPOCH, step_id=job.step_id, attempt=1, output=job.input))
    return events


def median_seconds(fn: Callable[[], object]) -> float:
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    rows = []
    for name, wf in [
        ("chain of 10", chain(10)),
        ("chain of 100", chain(100)),
        ("fan-out 100", fan(100)),
    ]:
        steps = len(wf.steps)
        seconds = median_seconds(lambda wf=wf: history(wf))
        events = history(wf)
        replay = median_seconds(lambda events=events: fold(events))
        per_step, per_event = seconds * 1e6 / steps, replay * 1e6 / len(events)
        rows.append(
            f"| {name} | {steps} | {len(events)} | {per_step:.0f} µs | {per_event:.1f} µs |"
        )
    lines = [
        "# Engine benchmark: decide + fold, no I/O",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()},"
        f" Python {sys.version.split()[0]}; median of {REPEATS} runs.",
        "Handlers finish instantly, so this is the engine's own cost.",
        "",
        "| workflow | steps | events | engine time per step | replay (fold) per event |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Per step = deciding, resolving templates and folding the 4 events of a step.",
        "For scale: one SQLite transaction costs ~23–35 µs on this machine. The engine costs",
        "a few such transactions per step, and grows slowly with the number of steps",
        "(each decision scans the steps); the durable store will batch around it.",
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

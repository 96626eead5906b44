"""One PostgreSQL transaction, and the rows its run transitions write in one go.

``Batch`` gathers what several transitions (of distinct runs) produce into one column array per
table column, so a whole batch is written with one ``unnest`` statement per table, whatever its
size: the round trips of a transaction do not grow with the number of completions in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from overture.core.advance import Transition
from overture.core.state import RunState
from overture.store import rows
from overture.store.codec import EventCodec, error_text
from overture.store.flow import gates_text
from overture.store.records import RunRecord
from overture.store.sqlfiles import queries

Q = queries("postgres")
CHANNEL = "overture_jobs"
"""The LISTEN/NOTIFY channel that says new jobs may be claimable."""


def when(value: Any) -> datetime:
    """asyncpg returns timestamptz values as aware datetimes already."""
    moment: datetime = value
    return moment


@dataclass(slots=True)
class Head:
    """A locked run's row, as far as advancing it needs."""

    tenant: str
    workflow: str
    version: int
    last_seq: int


@dataclass(slots=True)
class Tx:
    """One transaction: its connection, its time, and the run states it produced."""

    conn: Any
    now: datetime | None = None
    states: dict[str, tuple[int, RunState]] = field(default_factory=dict)
    """New states by run id; published to the shared cache only after commit."""
    enqueued: bool = False
    claim_again: bool = False
    """A claim left a due job behind because its run was busy: wake the claimers shortly."""
    transitions: list[Transition] = field(default_factory=list)
    """What the store's observers are told once this commits."""
    deferred: list[tuple[str, str]] = field(default_factory=list)
    """``(tenant, Deferred.reason)`` of each due job a claim left queued."""

    async def clock(self) -> datetime:
        if self.now is None:
            self.now = when(await self.conn.fetchval(Q["now"]))
        return self.now


class Batch:
    """What transitions of distinct runs write: one column array per table column."""

    __slots__ = ("codec", "dead", "events", "jobs", "runs", "stops")

    def __init__(self, codec: EventCodec) -> None:
        self.codec = codec
        self.events: list[list[Any]] = [[] for _ in range(5)]
        self.jobs: list[list[Any]] = [[] for _ in range(12)]
        self.stops: list[list[Any]] = [[] for _ in range(3)]
        self.dead: list[list[Any]] = [[] for _ in range(7)]
        self.runs: list[list[Any]] = [[] for _ in range(6)]

    def add(self, run_id: str, last_seq: int, t: Transition) -> int:
        """Queue a transition's rows; returns the run's new ``last_seq``."""
        state, encode = t.state, self.codec.encode
        for i, e in enumerate(t.events, start=1):
            append_row(self.events, run_id, last_seq + i, e.type, e.at, encode(e))
        for job in t.schedule:
            append_row(
                self.jobs,
                run_id,
                state.tenant,
                state.workflow,
                job.step_id,
                job.compensation,
                job.attempt,
                job.uses,
                self.codec.encode_value(job.input),
                job.timeout,
                job.priority,
                job.run_at,
                gates_text(job.gates),
            )
        for step_id, compensation in t.stop:
            append_row(self.stops, run_id, step_id, compensation)
        for (step_id, compensation), s in t.dead:
            append_row(
                self.dead,
                state.tenant,
                run_id,
                state.workflow,
                step_id,
                compensation,
                s.attempt,
                error_text(s.error),
            )
        seq = last_seq + len(t.events)
        append_row(
            self.runs,
            run_id,
            state.status,
            self.codec.encode_value(state.output),
            error_text(state.error),
            state.finished_at,
            seq,
        )
        return seq

    async def write(
        self, tx: Tx, *, update_runs: bool = True, records: bool = False
    ) -> dict[str, RunRecord]:
        """Write everything queued: events, new jobs, stopped jobs, dead letters, then runs."""
        conn = tx.conn
        if self.events[0]:
            await conn.execute(Q["events_insert"], *self.events)
        if self.jobs[0]:
            await conn.execute(Q["jobs_insert"], *self.jobs, CHANNEL)
            tx.enqueued = True
        if self.stops[0]:
            await conn.execute(Q["jobs_stop"], *self.stops)
        if self.dead[0]:
            await conn.execute(Q["dead_letters_insert"], *self.dead)
        if not (update_runs and self.runs[0]):
            return {}
        if not records:
            await conn.execute(Q["runs_update"], *self.runs)
            return {}
        found = await conn.fetch(Q["runs_update_get"], *self.runs)
        return {row[0]: rows.run_record(row, self.codec, when) for row in found}


def append_row(columns: list[list[Any]], *values: Any) -> None:
    for column, value in zip(columns, values, strict=True):
        column.append(value)

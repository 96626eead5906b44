"""What every part of the embedded store builds on: the file, its writer thread and readers,
and appending to a run's history inside a write.

Every write is a small function run by the writer thread (``sqlite_writer.GroupCommit``) inside
``BEGIN IMMEDIATE``; reads run on a small pool of reader threads, each in one snapshot.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import TypeVar

from overture.core import children
from overture.core import events as ev
from overture.core.advance import Transition, advance
from overture.core.model import Workflow
from overture.core.state import RunState, fold
from overture.errors import NotFound
from overture.store import rows, sqlite_schema
from overture.store.artifacts import Artifacts
from overture.store.base import StoreObserver
from overture.store.codec import EventCodec, StateCache, error_text, from_micros, micros
from overture.store.flow import gates_text
from overture.store.keys import KeyCache
from overture.store.observers import notify
from overture.store.records import RunRecord, SchemaStatus
from overture.store.sqlfiles import queries
from overture.store.sqlite_writer import GroupCommit, Tx, connect

T = TypeVar("T")
Q = queries("sqlite")


def when(value: int) -> datetime:
    """A stored time (integer microseconds since the epoch) as a datetime."""
    return from_micros(value)


class SQLiteBase:
    """The plumbing of ``SQLiteStore``; its parts by concern subclass this."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        artifacts: Artifacts | None = None,
        migrate: bool = True,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = path
        self.url = f"sqlite:///{path}"
        self.synchronous = synchronous.upper()
        self.codec = EventCodec(artifacts or Artifacts(_artifacts_dir(path)))
        self._auto_migrate = migrate
        self._directory = os.path.dirname(os.path.abspath(path))
        self._cache = StateCache()
        self._workflows: dict[tuple[str, str, int], Workflow] = {}
        self._writer: GroupCommit | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._jobs_ready: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keys = KeyCache()
        self.observers: list[StoreObserver] = []

    # --- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._jobs_ready = asyncio.Event()
        os.makedirs(self._directory, exist_ok=True)
        if self._auto_migrate:
            await asyncio.to_thread(sqlite_schema.migrate, self.path, self.synchronous)
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="overture-read")
        self._writer = GroupCommit(
            self.path,
            self.synchronous,
            forget=self._cache.forget,
            enqueued=self._jobs_queued,
            committed=self._committed,
        )

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()

    async def migrate(self) -> SchemaStatus:
        return await asyncio.to_thread(sqlite_schema.migrate, self.path, self.synchronous)

    async def schema_status(self) -> SchemaStatus:
        return await asyncio.to_thread(sqlite_schema.status, self.path, self.synchronous)

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        if self._writer is None:
            raise RuntimeError("the store is not open: call `await store.open()` first")
        return await self._writer.submit(fn)

    def _committed(self, transitions: list[Transition], deferred: list[tuple[str, str]]) -> None:
        """On the writer thread, after a commit."""
        if self.observers:
            notify(self.observers, transitions, deferred)

    def _jobs_queued(self) -> None:
        """On the writer thread, after a commit that queued jobs: wake this process's workers."""
        if self._loop is not None and self._jobs_ready is not None:
            self._loop.call_soon_threadsafe(self._jobs_ready.set)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise RuntimeError("the store is not open: call `await store.open()` first")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._with_reader, fn)

    def _with_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self.synchronous)
            self._local.conn = conn
            self._reader_conns.append(conn)
        with _snapshot(conn):
            return fn(conn)

    async def wait_for_jobs(self, timeout: float) -> None:
        ready = self._jobs_ready
        if ready is None:
            raise RuntimeError("the store is not open: call `await store.open()` first")
        try:
            async with asyncio.timeout(timeout):
                await ready.wait()
        except TimeoutError:
            return
        ready.clear()

    # --- run state inside a write ----------------------------------------------------------
    def _workflow(self, conn: sqlite3.Connection, tenant: str, name: str, version: int) -> Workflow:
        key = (tenant, name, version)
        workflow = self._workflows.get(key)
        if workflow is None:
            row = conn.execute(Q["workflow_version"], key).fetchone()
            if row is None:
                raise NotFound("workflow", f"{name} v{version}")
            workflow = rows.workflow_record(row, when).workflow
            self._workflows[key] = workflow
        return workflow

    def _state(self, conn: sqlite3.Connection, run_id: str, last_seq: int) -> RunState:
        cached = self._cache.get(run_id)
        seq, state = cached if cached is not None else (0, None)
        if seq > last_seq:
            seq, state = 0, None  # written by a transaction that rolled back: start over
        if seq < last_seq:
            found = conn.execute(Q["events_after"], (run_id, seq, -1)).fetchall()
            state = fold((self.codec.decode(data) for _, data in found), state)
            self._cache.put(run_id, last_seq, state)
        assert state is not None
        return state

    def _advance(
        self,
        tx: Tx,
        run_id: str,
        incoming: Callable[[RunState], Sequence[ev.Event]],
        *,
        decide: bool = True,
    ) -> Transition:
        """Append ``incoming`` (and, with ``decide``, the engine's response) to a run, then
        start, end and cancel the child runs that concerns; no events: nothing is written."""
        transition = self._advance_run(tx, run_id, incoming, decide=decide)
        if children.concerns(transition):
            self._follow(tx, [(transition, 0)])
        return transition

    def _follow(self, tx: Tx, transitions: list[tuple[Transition, int]]) -> None:
        """Start, end and cancel the child runs of these transitions (``SQLiteWorkflows``)."""

    def _advance_run(
        self,
        tx: Tx,
        run_id: str,
        incoming: Callable[[RunState], Sequence[ev.Event]],
        *,
        decide: bool = True,
    ) -> Transition:
        """``_advance`` of this run alone."""
        now = when(tx.now)
        cached = self._cache.get(run_id)
        if cached is not None:
            # Optimistic: the run update below only matches if no other process moved the run.
            seq, state = cached
            events = incoming(state)
            if events:  # none may only mean that the cached state is behind: read the run
                workflow = self._workflow(tx.conn, state.tenant, state.workflow, state.version)
                transition = advance(workflow, state, events, now, decide_next=decide)
                if self._persist(tx, run_id, seq, transition):
                    return transition
                self._cache.forget([run_id])
        head = tx.one("run_head", run_id)
        if head is None:
            raise NotFound("run", run_id)
        tenant, name, version, last_seq = head
        state = self._state(tx.conn, run_id, last_seq)
        events = incoming(state)
        if not events:
            return Transition(state=state, events=[], schedule=[], stop=[], dead=[])
        workflow = self._workflow(tx.conn, tenant, name, version)
        transition = advance(workflow, state, events, now, decide_next=decide)
        if not self._persist(tx, run_id, last_seq, transition):
            raise RuntimeError(f"run {run_id} changed inside a write transaction")
        return transition

    def _persist(self, tx: Tx, run_id: str, last_seq: int, t: Transition) -> bool:
        """Write a transition of the run at ``last_seq``; False (nothing written) if it moved."""
        conn, now, state, encode = tx.conn, tx.now, t.state, self.codec.encode
        seq = last_seq + len(t.events)
        finished_at = None if state.finished_at is None else micros(state.finished_at)
        output = self.codec.encode_value(state.output)
        params = (state.status, output, error_text(state.error), now, finished_at, seq, run_id)
        if conn.execute(Q["run_update"], (*params, last_seq)).rowcount == 0:
            return False
        conn.executemany(
            Q["event_insert"],
            [
                (run_id, last_seq + i, e.type, micros(e.at), encode(e))
                for i, e in enumerate(t.events, start=1)
            ],
        )
        if t.schedule:
            conn.executemany(
                Q["job_insert"],
                [
                    (
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
                        micros(job.run_at),
                        now,
                        gates_text(job.gates),
                    )
                    for job in t.schedule
                ],
            )
            tx.enqueued = True
        for step_id, compensation in t.stop:
            conn.execute(Q["jobs_stop"], (now, run_id, step_id, compensation))
        for (step_id, compensation), s in t.dead:
            conn.execute(
                Q["dead_letter_insert"],
                (
                    state.tenant,
                    run_id,
                    state.workflow,
                    step_id,
                    compensation,
                    s.attempt,
                    error_text(s.error),
                    now,
                ),
            )
        self._cache.put(run_id, seq, state)
        tx.touched.add(run_id)
        tx.transitions.append(t)
        return True


def _artifacts_dir(path: str) -> str:
    base, _ = os.path.splitext(os.path.abspath(path))
    return f"{base}-artifacts"


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One consistent view of the database for a read of several statements."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def load_run(
    conn: sqlite3.Connection, run_id: str, codec: EventCodec, tenant: str | None = None
) -> RunRecord:
    """A run's record; ``NotFound`` for an unknown run or another tenant's (None: any)."""
    row = conn.execute(Q["run_get"], (run_id,)).fetchone()
    rows.check_run(row, run_id, tenant)
    return rows.run_record(row, codec, when)


def check_run(conn: sqlite3.Connection, run_id: str, tenant: str | None) -> None:
    """``NotFound`` as for ``load_run``, without decoding the run."""
    rows.check_run(conn.execute(Q["run_get"], (run_id,)).fetchone(), run_id, tenant)

"""The embedded store: one SQLite file, one writer thread, group commit.

Every write is a small function run by the writer thread (``sqlite_writer.GroupCommit``): one
fsync (``synchronous=FULL``: an acknowledged run survives a power cut) pays for a whole batch
of claims and completions.
Reads run on a small pool of reader threads; WAL lets them proceed while the writer writes.
Other processes may open the same file: ``BEGIN IMMEDIATE`` and the busy timeout serialise
their writers, and run states cached here are checked against the stored ``last_seq``.
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

from overture import serde
from overture.core import events as ev
from overture.core.advance import Transition, advance, retry_event
from overture.core.inputs import prepare_input
from overture.core.model import Workflow
from overture.core.state import TERMINAL_RUN, RunState, RunStatus, fold
from overture.errors import Conflict, NotFound
from overture.ids import new_run_id
from overture.store import facts, rows, sqlite_schema
from overture.store.artifacts import Artifacts
from overture.store.base import DEFAULT_LEASE
from overture.store.codec import (
    EventCodec,
    StateCache,
    decode_cursor,
    encode_cursor,
    error_text,
    from_micros,
    micros,
    run_id_taken,
    version_to_register,
    workflow_digest,
)
from overture.store.records import (
    DEFAULT_TENANT,
    ClaimedJob,
    Completion,
    DeadLetter,
    Lease,
    Page,
    RunRecord,
    SchemaStatus,
    StartRun,
    StoredEvent,
    WorkerRecord,
    WorkflowRecord,
)
from overture.store.sqlfiles import queries
from overture.store.sqlite_writer import GroupCommit, Tx, connect

T = TypeVar("T")
Q = queries("sqlite")


def when(value: int) -> datetime:
    """A stored time (integer microseconds since the epoch) as a datetime."""
    return from_micros(value)


def _seconds(duration: float) -> int:
    """A duration in the stored unit."""
    return round(duration * 1_000_000)


class SQLiteStore:
    """A ``Store`` in one SQLite file (the embedded default)."""

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

    # --- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._jobs_ready = asyncio.Event()
        os.makedirs(self._directory, exist_ok=True)
        if self._auto_migrate:
            await asyncio.to_thread(sqlite_schema.migrate, self.path, self.synchronous)
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="overture-read")
        self._writer = GroupCommit(
            self.path, self.synchronous, forget=self._cache.forget, enqueued=self._jobs_queued
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

    def _startable(self, tx: Tx, tenant: str, name: str, version: int | None) -> Workflow:
        """The workflow a new run starts with: a version (None: the latest), if enabled."""
        if version is None:
            head = tx.one("workflow_latest_head", tenant, name)
        else:
            head = tx.one("workflow_version_head", tenant, name, version)
        if head is None:
            raise NotFound("workflow", name if version is None else f"{name} v{version}")
        found_version, disabled = head
        if disabled:
            raise Conflict(
                f"workflow {name!r} is disabled; enable it to start runs", code="workflow_disabled"
            )
        return self._workflow(tx.conn, tenant, name, found_version)

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
        """Append ``incoming`` (and, with ``decide``, the engine's response) to a run."""
        now = when(tx.now)
        cached = self._cache.get(run_id)
        if cached is not None:
            # Optimistic: the run update below only matches if no other process moved the run.
            seq, state = cached
            workflow = self._workflow(tx.conn, state.tenant, state.workflow, state.version)
            transition = advance(workflow, state, incoming(state), now, decide_next=decide)
            if self._persist(tx, run_id, seq, transition):
                return transition
            self._cache.forget([run_id])
        head = tx.one("run_head", run_id)
        if head is None:
            raise NotFound("run", run_id)
        tenant, name, version, last_seq = head
        state = self._state(tx.conn, run_id, last_seq)
        workflow = self._workflow(tx.conn, tenant, name, version)
        transition = advance(workflow, state, incoming(state), now, decide_next=decide)
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
        return True

    # --- workflows -------------------------------------------------------------------------
    async def register_workflow(
        self, workflow: Workflow, *, tenant: str = DEFAULT_TENANT
    ) -> WorkflowRecord:
        def write(tx: Tx) -> WorkflowRecord:
            latest = tx.one("workflow_latest", tenant, workflow.name)
            same = tx.one("workflow_version", tenant, workflow.name, workflow.version)
            decided = version_to_register(
                workflow,
                None if latest is None else rows.workflow_record(latest, when),
                None if same is None else rows.workflow_record(same, when),
            )
            if isinstance(decided, WorkflowRecord):
                return decided
            key = (tenant, decided.name, decided.version)
            definition = serde.dumps_text(decided.to_data())
            params = (*key, workflow_digest(decided), definition, tx.now)
            tx.conn.execute(Q["workflow_insert"], params)
            return rows.workflow_record(tx.one("workflow_version", *key), when)

        return await self._write(write)

    async def get_workflow(
        self, name: str, version: int | None = None, *, tenant: str = DEFAULT_TENANT
    ) -> WorkflowRecord:
        def read(conn: sqlite3.Connection) -> WorkflowRecord:
            return _workflow_record(conn, tenant, name, version)

        return await self._read(read)

    async def list_workflows(self, *, tenant: str = DEFAULT_TENANT) -> list[WorkflowRecord]:
        def read(conn: sqlite3.Connection) -> list[WorkflowRecord]:
            found = conn.execute(Q["workflow_list"], (tenant,)).fetchall()
            return [rows.workflow_record(row, when) for row in found]

        return await self._read(read)

    async def set_workflow_disabled(
        self, name: str, disabled: bool, *, tenant: str = DEFAULT_TENANT
    ) -> None:
        def write(tx: Tx) -> None:
            if tx.conn.execute(Q["workflow_disable"], (disabled, tenant, name)).rowcount == 0:
                raise NotFound("workflow", name)

        await self._write(write)

    # --- runs ------------------------------------------------------------------------------
    async def start_run(self, request: StartRun) -> tuple[RunRecord, bool]:
        def write(tx: Tx) -> tuple[RunRecord, bool]:
            if request.idempotency_key is not None:
                existing = tx.one("run_by_key", request.tenant, request.idempotency_key)
                if existing is not None:
                    return _run(tx.conn, existing[0], self.codec), False
            workflow = self._startable(tx, request.tenant, request.workflow, request.version)
            data = prepare_input(workflow.name, workflow.input, request.input)
            if request.run_id is not None and tx.one("run_exists", request.run_id):
                raise run_id_taken(request.run_id)
            run_id = request.run_id or new_run_id()
            started = facts.run_started(request, workflow, data, run_id, when(tx.now))
            tx.conn.execute(
                Q["run_insert"],
                (
                    run_id,
                    request.tenant,
                    workflow.name,
                    workflow.version,
                    self.codec.encode_value(data),
                    request.priority,
                    request.correlation_id,
                    request.idempotency_key,
                    request.parent_run_id,
                    tx.now,
                    tx.now,
                ),
            )
            self._persist(tx, run_id, 0, advance(workflow, None, [started], when(tx.now)))
            return _run(tx.conn, run_id, self.codec), True

        return await self._write(write)

    async def get_run(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunRecord:
        return await self._read(lambda conn: _run(conn, run_id, self.codec, tenant))

    async def run_state(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunState:
        def read(conn: sqlite3.Connection) -> RunState:
            _run(conn, run_id, self.codec, tenant)
            found = conn.execute(Q["events_after"], (run_id, 0, -1)).fetchall()
            return fold(self.codec.decode(data) for _, data in found)

        return await self._read(read)

    async def list_runs(
        self,
        *,
        tenant: str | None = DEFAULT_TENANT,
        status: RunStatus | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[RunRecord]:
        after = None if cursor is None else decode_cursor(cursor)
        params = {
            "tenant": tenant,
            "status": status,
            "workflow": workflow,
            "since": None if since is None else micros(since),
            "cursor_at": None if after is None else micros(after[0]),
            "cursor_id": None if after is None else after[1],
            "limit": limit + 1,
        }

        def read(conn: sqlite3.Connection) -> Page[RunRecord]:
            found = conn.execute(Q["run_list"], params).fetchall()
            items = [rows.run_record(row, self.codec, when) for row in found[:limit]]
            last = items[-1] if items and len(found) > limit else None
            return Page(
                items=items,
                next_cursor=None if last is None else encode_cursor(last.created_at, last.id),
            )

        return await self._read(read)

    async def events(
        self,
        run_id: str,
        *,
        tenant: str | None = DEFAULT_TENANT,
        after: int = 0,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        def read(conn: sqlite3.Connection) -> list[StoredEvent]:
            _run(conn, run_id, self.codec, tenant)
            found = conn.execute(
                Q["events_after"], (run_id, after, -1 if limit is None else limit)
            ).fetchall()
            return [
                StoredEvent(run_id=run_id, seq=seq, event=self.codec.decode(data))
                for seq, data in found
            ]

        return await self._read(read)

    async def cancel_run(
        self, run_id: str, *, tenant: str | None = DEFAULT_TENANT, reason: str = "cancelled"
    ) -> RunRecord:
        def write(tx: Tx) -> RunRecord:
            record = _run(tx.conn, run_id, self.codec, tenant)
            if record.status not in TERMINAL_RUN:
                self._advance(
                    tx, run_id, lambda _: [ev.RunCancelled(at=when(tx.now), reason=reason)]
                )
            return _run(tx.conn, run_id, self.codec)

        return await self._write(write)

    async def retry_run(
        self,
        run_id: str,
        *,
        tenant: str | None = DEFAULT_TENANT,
        steps: Sequence[str] | None = None,
    ) -> RunRecord:
        def write(tx: Tx) -> RunRecord:
            _run(tx.conn, run_id, self.codec, tenant)
            self._reopen(tx, run_id, steps)
            return _run(tx.conn, run_id, self.codec)

        return await self._write(write)

    def _reopen(self, tx: Tx, run_id: str, steps: Sequence[str] | None) -> None:
        self._advance(tx, run_id, lambda state: [retry_event(state, when(tx.now), steps)])
        tx.conn.execute(Q["dead_letter_requeued"], (tx.now, run_id))

    # --- queue -----------------------------------------------------------------------------
    async def claim(
        self,
        worker_id: str,
        *,
        limit: int,
        lease: float = DEFAULT_LEASE,
        handlers: Sequence[str] | None = None,
    ) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        names = None if handlers is None else serde.dumps_text(list(handlers))

        def write(tx: Tx) -> list[ClaimedJob]:
            params = {
                "worker": worker_id,
                "now": tx.now,
                "lease": _seconds(lease),
                "handlers": names,
                "limit": limit,
            }
            found = tx.conn.execute(Q["jobs_claim"], params).fetchall()
            # RETURNING does not follow the subquery's order: restore priority, then FIFO.
            found.sort(key=lambda row: (row[12], row[13], row[0]))
            jobs = [rows.claimed_job(row, self.codec, when) for row in found]
            for job in jobs:
                started = ev.StepStarted(
                    at=when(tx.now),
                    step_id=job.step_id,
                    attempt=job.attempt,
                    worker_id=worker_id,
                    compensation=job.compensation,
                )
                self._advance(tx, job.run_id, facts.given(started), decide=False)
            return jobs

        return await self._write(write)

    async def heartbeat(
        self, worker_id: str, leases: Sequence[Lease], *, lease: float = DEFAULT_LEASE
    ) -> set[int]:
        def write(tx: Tx) -> set[int]:
            until = tx.now + _seconds(lease)
            lost = set()
            for held in leases:
                params = (until, held.job_id, held.token, worker_id)
                if tx.conn.execute(Q["job_extend"], params).rowcount == 0:
                    lost.add(held.job_id)
            return lost

        return await self._write(write) if leases else set()

    async def complete(self, completions: Sequence[Completion]) -> list[bool]:
        return list(await asyncio.gather(*(self._write(self._completer(c)) for c in completions)))

    def _completer(self, done: Completion) -> Callable[[Tx], bool]:
        def write(tx: Tx) -> bool:
            row = tx.one("job_finish", tx.now, done.job_id, done.token)
            if row is None:
                return False  # the lease was lost: someone else owns this attempt now
            run_id, step_id, attempt, compensation = row
            at = when(tx.now)
            event = facts.attempt_ended(done, step_id, attempt, bool(compensation), at)
            self._advance(tx, run_id, facts.given(event))
            return True

        return write

    async def release(self, leases: Sequence[Lease]) -> int:
        def write(tx: Tx) -> int:
            released = 0
            for held in leases:
                row = tx.one("job_release", tx.now, held.job_id, held.token)
                if row is None:
                    continue
                run_id, step_id, attempt, compensation = row
                back = facts.attempt_released(step_id, attempt, bool(compensation), when(tx.now))
                self._advance(tx, run_id, facts.given(back), decide=False)
                released += 1
            tx.enqueued = tx.enqueued or released > 0
            return released

        return await self._write(write) if leases else 0

    async def reap(self, *, limit: int = 100) -> int:
        def write(tx: Tx) -> int:
            expired = 0
            for (job_id,) in tx.conn.execute(Q["jobs_expired"], (tx.now, limit)).fetchall():
                row = tx.one("job_expire", tx.now, job_id, tx.now)
                if row is None:
                    continue
                run_id, step_id, attempt, compensation, owner = row
                lost = ev.StepLeaseExpired(
                    at=when(tx.now),
                    step_id=step_id,
                    attempt=attempt,
                    worker_id=owner,
                    compensation=bool(compensation),
                )
                self._advance(tx, run_id, facts.given(lost))
                expired += 1
            return expired

        return await self._write(write)

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

    async def queue_depth(self) -> int:
        return await self._read(lambda conn: int(conn.execute(Q["queue_depth"]).fetchone()[0]))

    # --- workers ---------------------------------------------------------------------------
    async def worker_seen(self, worker: WorkerRecord) -> None:
        handlers = serde.dumps_text(list(worker.handlers))

        def write(tx: Tx) -> None:
            tx.conn.execute(
                Q["worker_upsert"],
                (
                    worker.id,
                    worker.host,
                    worker.pid,
                    worker.concurrency,
                    handlers,
                    micros(worker.started_at),
                    tx.now,
                ),
            )

        await self._write(write)

    async def worker_stopped(self, worker_id: str) -> None:
        await self._write(lambda tx: tx.conn.execute(Q["worker_stop"], (tx.now, tx.now, worker_id)))

    async def list_workers(self) -> list[WorkerRecord]:
        def read(conn: sqlite3.Connection) -> list[WorkerRecord]:
            return [rows.worker_record(r, when) for r in conn.execute(Q["worker_list"])]

        return await self._read(read)

    # --- dead letters ----------------------------------------------------------------------
    async def dead_letters(
        self, *, tenant: str | None = DEFAULT_TENANT, include_requeued: bool = False
    ) -> list[DeadLetter]:
        params = {"tenant": tenant, "all": include_requeued}

        def read(conn: sqlite3.Connection) -> list[DeadLetter]:
            return [rows.dead_letter(r, when) for r in conn.execute(Q["dead_letter_list"], params)]

        return await self._read(read)

    async def requeue(
        self, ids: Sequence[int], *, tenant: str | None = DEFAULT_TENANT
    ) -> list[RunRecord]:
        def write(tx: Tx) -> list[RunRecord]:
            letters = []
            for letter_id in ids:
                row = tx.one("dead_letter_get", letter_id)
                letter = None if row is None else rows.dead_letter(row, when)
                if letter is None or (tenant is not None and letter.tenant != tenant):
                    raise NotFound("dead letter", letter_id)
                letters.append(letter)
            reopened: dict[str, RunRecord] = {}
            for letter in letters:
                if letter.run_id in reopened or letter.requeued_at is not None:
                    continue
                self._reopen(tx, letter.run_id, [letter.step_id])
                reopened[letter.run_id] = _run(tx.conn, letter.run_id, self.codec)
            return list(reopened.values())

        return await self._write(write)


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


def _run(
    conn: sqlite3.Connection, run_id: str, codec: EventCodec, tenant: str | None = None
) -> RunRecord:
    row = conn.execute(Q["run_get"], (run_id,)).fetchone()
    if row is None or (tenant is not None and row[1] != tenant):
        raise NotFound("run", run_id)
    return rows.run_record(row, codec, when)


def _workflow_record(
    conn: sqlite3.Connection, tenant: str, name: str, version: int | None
) -> WorkflowRecord:
    if version is None:
        row = conn.execute(Q["workflow_latest"], (tenant, name)).fetchone()
    else:
        row = conn.execute(Q["workflow_version"], (tenant, name, version)).fetchone()
    if row is None:
        raise NotFound("workflow", name if version is None else f"{name} v{version}")
    return rows.workflow_record(row, when)

"""The embedded store: one SQLite file, one writer thread, group commit.

Every write is a small function run by the writer thread (``sqlite_writer.GroupCommit``): one
fsync (``synchronous=FULL``: an acknowledged run survives a power cut) pays for a whole batch
of claims and completions.
Reads run on a small pool of reader threads; WAL lets them proceed while the writer writes.
Other processes may open the same file: ``BEGIN IMMEDIATE`` and the busy timeout serialise
their writers, and run states cached here are checked against the stored ``last_seq``.

The store is assembled by concern: ``sqlite_base`` (the file, threads, and appending to a run's
history), ``sqlite_workflows`` (which also starts runs), ``sqlite_events`` (events and webhook
sources), ``sqlite_schedules``, ``sqlite_keys``, and here runs, the queue, workers and dead letters.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from overture import serde
from overture.core import events as ev
from overture.core.admission import NO_LIMITS, TenantLimits
from overture.core.advance import retry_event
from overture.core.state import TERMINAL_RUN, RunState, RunStatus, fold
from overture.errors import NotFound
from overture.serde import JSON
from overture.store import facts, rows
from overture.store.base import DEFAULT_LEASE
from overture.store.codec import (
    decode_cursor,
    encode_cursor,
    micros,
    run_finished,
)
from overture.store.records import (
    DEFAULT_TENANT,
    ClaimedJob,
    Completion,
    DeadLetter,
    Lease,
    LogRecord,
    Page,
    RunRecord,
    StartRun,
    StoredEvent,
    WorkerRecord,
)
from overture.store.sqlite_base import Q, check_run, load_run, when
from overture.store.sqlite_events import SQLiteEvents
from overture.store.sqlite_flow import SQLiteFlow
from overture.store.sqlite_keys import SQLiteKeys
from overture.store.sqlite_observe import SQLiteObserve
from overture.store.sqlite_schedules import SQLiteSchedules
from overture.store.sqlite_writer import Tx


def _seconds(duration: float) -> int:
    """A duration in the stored unit."""
    return round(duration * 1_000_000)


class SQLiteStore(SQLiteEvents, SQLiteSchedules, SQLiteKeys, SQLiteObserve, SQLiteFlow):
    """A ``Store`` in one SQLite file (the embedded default)."""

    # --- runs ------------------------------------------------------------------------------
    async def start_run(self, request: StartRun) -> tuple[RunRecord, bool]:
        return await self._write(lambda tx: self._start(tx, request))

    async def get_run(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunRecord:
        return await self._read(lambda conn: load_run(conn, run_id, self.codec, tenant))

    async def run_state(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunState:
        def read(conn: sqlite3.Connection) -> RunState:
            check_run(conn, run_id, tenant)
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
        scheduled: bool = False,
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
            "scheduled": scheduled,
            "now": micros(datetime.now(UTC)),
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
            check_run(conn, run_id, tenant)
            found = conn.execute(
                Q["events_after"], (run_id, after, -1 if limit is None else limit)
            ).fetchall()
            return [
                StoredEvent(run_id=run_id, seq=seq, event=self.codec.decode(data))
                for seq, data in found
            ]

        return await self._read(read)

    async def logs(
        self,
        run_id: str,
        *,
        tenant: str | None = DEFAULT_TENANT,
        after: int = 0,
        limit: int | None = None,
    ) -> list[LogRecord]:
        def read(conn: sqlite3.Connection) -> list[LogRecord]:
            check_run(conn, run_id, tenant)
            params = (run_id, after, -1 if limit is None else limit)
            return [
                rows.log_record(row, when) for row in conn.execute(Q["step_logs_after"], params)
            ]

        return await self._read(read)

    async def signal_run(
        self, run_id: str, name: str, payload: JSON = None, *, tenant: str | None = DEFAULT_TENANT
    ) -> StoredEvent:
        def write(tx: Tx) -> StoredEvent:
            record = load_run(tx.conn, run_id, self.codec, tenant)
            if record.status in TERMINAL_RUN:
                raise run_finished(run_id, record.status)
            signal = ev.SignalReceived(at=when(tx.now), name=name, payload=payload)
            self._advance(tx, run_id, facts.given(signal))
            return StoredEvent(run_id=run_id, seq=record.events + 1, event=signal)

        return await self._write(write)

    async def cancel_run(
        self, run_id: str, *, tenant: str | None = DEFAULT_TENANT, reason: str = "cancelled"
    ) -> RunRecord:
        def write(tx: Tx) -> RunRecord:
            record = load_run(tx.conn, run_id, self.codec, tenant)
            if record.status in TERMINAL_RUN:
                return record
            self._advance(tx, run_id, lambda _: [ev.RunCancelled(at=when(tx.now), reason=reason)])
            return load_run(tx.conn, run_id, self.codec)

        return await self._write(write)

    async def retry_run(
        self,
        run_id: str,
        *,
        tenant: str | None = DEFAULT_TENANT,
        steps: Sequence[str] | None = None,
    ) -> RunRecord:
        def write(tx: Tx) -> RunRecord:
            check_run(tx.conn, run_id, tenant)
            self._reopen(tx, run_id, steps)
            return load_run(tx.conn, run_id, self.codec)

        return await self._write(write)

    def _reopen(self, tx: Tx, run_id: str, steps: Sequence[str] | None) -> None:
        self._advance(
            tx,
            run_id,
            lambda state: [retry_event(state, when(tx.now), steps, **facts.reopened_trace(state))],
        )
        tx.conn.execute(Q["dead_letter_requeued"], (tx.now, run_id))

    # --- queue -----------------------------------------------------------------------------
    async def claim(
        self,
        worker_id: str,
        *,
        limit: int,
        lease: float = DEFAULT_LEASE,
        handlers: Sequence[str] | None = None,
        limits: TenantLimits = NO_LIMITS,
    ) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        names = None if handlers is None else serde.dumps_text(list(handlers))

        def write(tx: Tx) -> list[ClaimedJob]:
            admitted, deferred = self._admit(tx, limit, names, limits)
            if deferred:
                tx.enqueued = True  # more due jobs may be waiting behind the deferred ones
            if not admitted:
                return []
            params = {
                "worker": worker_id,
                "now": tx.now,
                "lease": _seconds(lease),
                "ids": serde.dumps_text(admitted),
            }
            found = tx.conn.execute(Q["jobs_lease"], params).fetchall()
            order = {job_id: i for i, job_id in enumerate(admitted)}
            found.sort(key=lambda row: order[row[0]])  # RETURNING keeps no order: claim order
            claimed = []
            for job in (rows.claimed_job(row, self.codec, when) for row in found):
                started = ev.StepStarted(
                    at=when(tx.now),
                    step_id=job.step_id,
                    attempt=job.attempt,
                    worker_id=worker_id,
                    compensation=job.compensation,
                )
                run = self._advance(tx, job.run_id, facts.given(started), decide=False).state
                claimed.append(replace(job, traceparent=run.traceparent))
            return claimed

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
            run_id, step_id, attempt, compensation, tenant, gates = row
            if gates is not None:
                self._count_outcome(tx, tenant, gates, done.job_id, done.error)
                tx.enqueued = True  # its slots' release may have woken a waiting job
            at = when(tx.now)
            event = facts.attempt_ended(done, step_id, attempt, bool(compensation), at)
            self._advance(tx, run_id, facts.given(event))
            attempt_of = (run_id, tenant, step_id, attempt, compensation)
            tx.conn.executemany(
                Q["step_log_insert"],
                [
                    (*attempt_of, micros(e.at), e.level, e.message, serde.dumps_text(e.fields))
                    for e in done.logs
                ],
            )
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
                reopened[letter.run_id] = load_run(tx.conn, letter.run_id, self.codec)
            return list(reopened.values())

        return await self._write(write)

"""The scale-out store: PostgreSQL through an asyncpg connection pool.

Every change is one transaction on a pooled connection, and the database's clock is the only
clock: a transaction's time is ``now()`` (its start), read once and used for every row and
event it writes, so leases mean the same on every machine.

Concurrency, without deadlocks:

- A transaction that appends to a run's history first locks the run's row (``FOR UPDATE``),
  so ``seq`` stays gapless and two workers finishing steps of one run take turns. Several runs
  are always locked in id order, and before any of their jobs; jobs are locked in id order.
- Claims take due jobs and their runs with ``FOR UPDATE SKIP LOCKED``: a claim never waits for
  anyone, so workers never queue behind each other and a claim can never deadlock with a
  transaction that holds a run and stops its jobs. A job skipped because its run was busy for
  a moment is claimed again a few milliseconds later (the claimers are woken).
- Reaping skips jobs and runs other transactions hold, so concurrent reapers never collide.
- Should PostgreSQL still pick a transaction as a deadlock victim, it is run again.

Completions are written in batches: one transaction locks the runs of every completion, then
per table one statement (``unnest`` of arrays) writes what all their transitions produced. A run
with several completions in one batch advances once per round, in order, exactly as one-by-one
writes would. If anything in a batch fails, nothing of it is kept and each completion is written
again in its own transaction, so one bad completion never takes its neighbours down.

Run states are cached in process (``StateCache``) as in the embedded store, but a transaction's
new states become visible to other transactions only once it has committed.

Workers wait on ``LISTEN overture_jobs`` on a connection of their own; every transaction that
queues jobs notifies the channel (delivered on commit). If that connection drops, waiting
degrades to the caller's polling timeout while it is re-established in the background.

The store is assembled by concern: ``postgres_base`` (the pool, transactions, and appending to
locked runs' histories), ``postgres_workflows`` (which also starts runs), ``postgres_events``
(events and webhook sources), ``postgres_schedules``, ``postgres_keys``, and here runs, the queue,
workers and dead letters.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from overture import serde
from overture.core import events as ev
from overture.core.admission import NO_LIMITS, TenantLimits
from overture.core.advance import retry_event
from overture.core.events import ErrorInfo
from overture.core.state import TERMINAL_RUN, RunState, RunStatus, fold
from overture.errors import NotFound
from overture.serde import JSON
from overture.store import facts, flow, rows
from overture.store.base import DEFAULT_LEASE
from overture.store.codec import (
    decode_cursor,
    encode_cursor,
    run_finished,
)
from overture.store.postgres_base import load_run
from overture.store.postgres_events import PostgresEvents
from overture.store.postgres_flow import PostgresFlow
from overture.store.postgres_keys import PostgresKeys
from overture.store.postgres_observe import PostgresObserve
from overture.store.postgres_schedules import PostgresSchedules
from overture.store.postgres_tx import CHANNEL, Head, Q, Tx, append_row, when
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

logger = logging.getLogger("overture.store.postgres")


class PostgresStore(PostgresEvents, PostgresSchedules, PostgresKeys, PostgresObserve, PostgresFlow):
    """A ``Store`` in a PostgreSQL database (scale-out: many workers, many machines)."""

    # --- runs ------------------------------------------------------------------------------
    async def start_run(self, request: StartRun) -> tuple[RunRecord, bool]:
        try:
            return await self._write(lambda tx: self._start(tx, request))
        except asyncpg.exceptions.UniqueViolationError:
            # A concurrent start inserted this run id first (ours waited for it to commit, then
            # failed). Asked again, the winner is visible: the same key returns it, another
            # start with this id is refused (run_exists).
            return await self._write(lambda tx: self._start(tx, request))

    async def get_run(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunRecord:
        row = await self._need_pool().fetchrow(Q["run_get"], run_id)
        return load_run(row, run_id, self.codec, tenant)

    async def run_state(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunState:
        async with self._connection() as conn:
            rows.check_run(await conn.fetchrow(Q["run_get"], run_id), run_id, tenant)
            found = await conn.fetch(Q["events_after"], run_id, 0, None)
        return fold(self.codec.decode(data) for _, data in found)

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
        found = await self._need_pool().fetch(
            Q["run_list"],
            tenant,
            status,
            workflow,
            since,
            None if after is None else after[0],
            None if after is None else after[1],
            limit + 1,
            scheduled,
        )
        items = [rows.run_record(row, self.codec, when) for row in found[:limit]]
        last = items[-1] if items and len(found) > limit else None
        return Page(
            items=items,
            next_cursor=None if last is None else encode_cursor(last.created_at, last.id),
        )

    async def events(
        self,
        run_id: str,
        *,
        tenant: str | None = DEFAULT_TENANT,
        after: int = 0,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        async with self._connection() as conn:
            rows.check_run(await conn.fetchrow(Q["run_get"], run_id), run_id, tenant)
            found = await conn.fetch(Q["events_after"], run_id, after, limit)
        return [
            StoredEvent(run_id=run_id, seq=seq, event=self.codec.decode(data))
            for seq, data in found
        ]

    async def logs(
        self,
        run_id: str,
        *,
        tenant: str | None = DEFAULT_TENANT,
        after: int = 0,
        limit: int | None = None,
    ) -> list[LogRecord]:
        async with self._connection() as conn:
            rows.check_run(await conn.fetchrow(Q["run_get"], run_id), run_id, tenant)
            found = await conn.fetch(Q["step_logs_after"], run_id, after, limit)
        return [rows.log_record(row, when) for row in found]

    async def signal_run(
        self, run_id: str, name: str, payload: JSON = None, *, tenant: str | None = DEFAULT_TENANT
    ) -> StoredEvent:
        async def write(tx: Tx) -> StoredEvent:
            record, head = await self._locked_run(tx, run_id, tenant)
            if record.status in TERMINAL_RUN:
                raise run_finished(run_id, record.status)
            signal = ev.SignalReceived(at=await tx.clock(), name=name, payload=payload)
            await self._advance(tx, {run_id: head}, {run_id: facts.given(signal)})
            return StoredEvent(run_id=run_id, seq=record.events + 1, event=signal)

        return await self._write(write)

    async def cancel_run(
        self, run_id: str, *, tenant: str | None = DEFAULT_TENANT, reason: str = "cancelled"
    ) -> RunRecord:
        async def write(tx: Tx) -> RunRecord:
            record, head = await self._locked_run(tx, run_id, tenant)
            if record.status in TERMINAL_RUN:
                return record
            cancelled = ev.RunCancelled(at=await tx.clock(), reason=reason)
            done = await self._advance(
                tx, {run_id: head}, {run_id: facts.given(cancelled)}, records=True
            )
            return done[run_id]

        return await self._write(write)

    async def retry_run(
        self,
        run_id: str,
        *,
        tenant: str | None = DEFAULT_TENANT,
        steps: Sequence[str] | None = None,
    ) -> RunRecord:
        async def write(tx: Tx) -> RunRecord:
            _, head = await self._locked_run(tx, run_id, tenant)
            return await self._reopen(tx, run_id, head, steps)

        return await self._write(write)

    async def _reopen(
        self, tx: Tx, run_id: str, head: Head, steps: Sequence[str] | None
    ) -> RunRecord:
        now = await tx.clock()
        reopened = await self._advance(
            tx,
            {run_id: head},
            {run_id: lambda state: [retry_event(state, now, steps, **facts.reopened_trace(state))]},
            records=True,
        )
        await tx.conn.execute(Q["dead_letter_requeued"], run_id)
        return reopened[run_id]

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
        names = None if handlers is None else list(handlers)

        async def write(tx: Tx) -> list[ClaimedJob]:
            conn = tx.conn
            await conn.execute(Q["claim_plan"])
            per_tenant = limit * flow.PER_TENANT
            found = flow.fair_order(await conn.fetch(Q["jobs_candidates"], names, per_tenant))
            if len(found) < limit and await conn.fetchval(Q["jobs_held_back"], names) is not None:
                tx.claim_again = True  # skipped for a busy run: it will be free in a moment
            await conn.execute(Q["claim_plan_done"])
            if not found:
                return []
            tx.now = now = when(found[0][10])
            candidates = [flow.candidate(r[0], r[1], r[2], r[5]) for r in found]
            decision = await self._admit(tx, candidates, now.timestamp(), limit, limits)
            if decision.deferred:
                tx.claim_again = True  # more due jobs may be waiting behind the deferred ones
            if not decision.admitted:
                return []
            leased = await conn.fetch(Q["jobs_lease"], worker_id, float(lease), decision.admitted)
            order = {job_id: i for i, job_id in enumerate(decision.admitted)}
            leased.sort(key=lambda row: order[row[0]])  # RETURNING keeps no order: claim order
            jobs = [rows.claimed_job(row, self.codec, when) for row in leased]
            heads = {row[2]: Head(row[6], row[7], row[8], row[9]) for row in found}
            started: dict[str, list[ev.Event]] = {}
            for job in jobs:
                started.setdefault(job.run_id, []).append(
                    ev.StepStarted(
                        at=now,
                        step_id=job.step_id,
                        attempt=job.attempt,
                        worker_id=worker_id,
                        compensation=job.compensation,
                    )
                )
            incoming = {run_id: facts.given(*events) for run_id, events in started.items()}
            await self._advance(tx, {r: heads[r] for r in incoming}, incoming, decide=False)
            return [replace(job, traceparent=tx.states[job.run_id][1].traceparent) for job in jobs]

        return await self._write(write)

    async def heartbeat(
        self, worker_id: str, leases: Sequence[Lease], *, lease: float = DEFAULT_LEASE
    ) -> set[int]:
        if not leases:
            return set()
        held = sorted(leases, key=lambda h: h.job_id)  # rows locked in one order by everyone

        async def write(tx: Tx) -> set[int]:
            found = await tx.conn.fetch(
                Q["jobs_extend"],
                float(lease),
                [h.job_id for h in held],
                [h.token for h in held],
                worker_id,
            )
            return {h.job_id for h in leases} - {row[0] for row in found}

        return await self._write(write)

    async def complete(self, completions: Sequence[Completion]) -> list[bool]:
        if not completions:
            return []
        if len(completions) == 1:
            return await self._write(lambda tx: self._finish(tx, completions))
        try:
            return await self._write(lambda tx: self._finish(tx, completions))
        except Exception:
            logger.debug("a batch of completions failed; writing them one by one", exc_info=True)
        results: list[bool] = []
        failure: BaseException | None = None
        for done in completions:
            try:
                (ok,) = await self._write(functools.partial(self._finish, completions=[done]))
            except Exception as error:
                failure = failure or error
                ok = False
            results.append(ok)
        if failure is not None:
            raise failure
        return results

    async def _finish(self, tx: Tx, completions: Sequence[Completion]) -> list[bool]:
        recorded = [False] * len(completions)
        found = await tx.conn.fetch(Q["runs_lock_for_jobs"], [c.job_id for c in completions])
        run_of = {row[0]: row[1] for row in found}
        heads = {row[1]: Head(row[2], row[3], row[4], row[5]) for row in found}
        # Consecutive rounds in which no run appears twice (a round advances each run once):
        # in order, so runs move exactly as they would with one completion at a time.
        rounds: list[list[int]] = [[]]
        in_round: set[str] = set()
        logs: list[list[Any]] = [[] for _ in range(9)]  # a column each, as in step_logs
        outcomes: list[tuple[str, str | None, int, ErrorInfo | None]] = []
        for i, done in enumerate(completions):
            run_id = run_of.get(done.job_id)
            if run_id is None:
                continue  # no such job
            if run_id in in_round:
                rounds.append([])
                in_round.clear()
            rounds[-1].append(i)
            in_round.add(run_id)
        for members in rounds:
            if not members:
                continue
            locking = sorted(members, key=lambda i: completions[i].job_id)  # id order
            finished = await tx.conn.fetch(
                Q["jobs_finish"],
                [completions[i].job_id for i in locking],
                [completions[i].token for i in locking],
            )
            if not finished:
                continue  # every lease in this round was lost
            tx.now = now = when(finished[0][5])
            by_job = {row[0]: row for row in finished}
            incoming: dict[str, Callable[[RunState], Sequence[ev.Event]]] = {}
            for i in members:
                done = completions[i]
                row = by_job.get(done.job_id)
                if row is None:
                    continue  # the lease was lost: someone else owns this attempt now
                _, run_id, step_id, attempt, compensation, _, tenant, gates = row
                event = facts.attempt_ended(done, step_id, attempt, compensation, now)
                incoming[run_id] = facts.given(event)
                recorded[i] = True
                if gates is not None:
                    outcomes.append((tenant, gates, done.job_id, done.error))
                attempt_of = (run_id, heads[run_id].tenant, step_id, attempt, compensation)
                for e in done.logs:
                    fields = serde.dumps_text(e.fields)
                    append_row(logs, *attempt_of, e.at, e.level, e.message, fields)
            await self._advance(tx, heads, incoming)
        if logs[0]:
            await tx.conn.execute(Q["step_logs_insert"], *logs)
        await self._count_outcomes(tx, outcomes)
        return recorded

    async def release(self, leases: Sequence[Lease]) -> int:
        if not leases:
            return 0

        async def write(tx: Tx) -> int:
            conn = tx.conn
            found = await conn.fetch(Q["runs_lock_for_jobs"], [h.job_id for h in leases])
            heads = {row[1]: Head(row[2], row[3], row[4], row[5]) for row in found}
            back = await conn.fetch(
                Q["jobs_release"], [h.job_id for h in leases], [h.token for h in leases]
            )
            if not back:
                return 0
            tx.now = now = when(back[0][5])
            by_job = {row[0]: row for row in back}
            returned: dict[str, list[ev.Event]] = {}
            for held in leases:
                row = by_job.pop(held.job_id, None)
                if row is None:
                    continue
                _, run_id, step_id, attempt, compensation, _ = row
                returned.setdefault(run_id, []).append(
                    facts.attempt_released(step_id, attempt, compensation, now)
                )
            incoming = {run_id: facts.given(*events) for run_id, events in returned.items()}
            await self._advance(tx, heads, incoming, decide=False)
            await conn.execute(Q["notify"], CHANNEL)
            tx.enqueued = True
            return len(back)

        return await self._write(write)

    async def reap(self, *, limit: int = 100) -> int:
        async def write(tx: Tx) -> int:
            conn = tx.conn
            found = await conn.fetch(Q["jobs_expired"], limit)
            if not found:
                return 0
            tx.now = now = when(found[0][1])
            heads: dict[str, Head] = {}
            expired = 0
            for job_id, _ in found:
                row = await conn.fetchrow(Q["job_expire"], job_id)
                if row is None:
                    continue
                run_id, step_id, attempt, compensation, owner = row
                if run_id not in heads:
                    heads.update(await self._lock(tx, [run_id]))  # held already: no wait
                lost = ev.StepLeaseExpired(
                    at=now,
                    step_id=step_id,
                    attempt=attempt,
                    worker_id=owner,
                    compensation=compensation,
                )
                await self._advance(tx, heads, {run_id: facts.given(lost)})
                expired += 1
            return expired

        return await self._write(write)

    async def queue_depth(self) -> int:
        return int(await self._need_pool().fetchval(Q["queue_depth"]))

    # --- workers ---------------------------------------------------------------------------
    async def worker_seen(self, worker: WorkerRecord) -> None:
        await self._need_pool().execute(
            Q["worker_upsert"],
            worker.id,
            worker.host,
            worker.pid,
            worker.concurrency,
            serde.dumps_text(list(worker.handlers)),
            worker.started_at,
        )

    async def worker_stopped(self, worker_id: str) -> None:
        await self._need_pool().execute(Q["worker_stop"], worker_id)

    async def list_workers(self) -> list[WorkerRecord]:
        found = await self._need_pool().fetch(Q["worker_list"])
        return [rows.worker_record(row, when) for row in found]

    # --- dead letters ----------------------------------------------------------------------
    async def dead_letters(
        self, *, tenant: str | None = DEFAULT_TENANT, include_requeued: bool = False
    ) -> list[DeadLetter]:
        found = await self._need_pool().fetch(Q["dead_letter_list"], tenant, include_requeued)
        return [rows.dead_letter(row, when) for row in found]

    async def requeue(
        self, ids: Sequence[int], *, tenant: str | None = DEFAULT_TENANT
    ) -> list[RunRecord]:
        async def write(tx: Tx) -> list[RunRecord]:
            letters = await self._letters(tx, ids, tenant)
            heads = await self._lock(tx, [letter.run_id for letter in letters])
            letters = await self._letters(tx, ids, tenant)  # as they are now their runs are ours
            reopened: dict[str, RunRecord] = {}
            for letter in letters:
                if letter.run_id in reopened or letter.requeued_at is not None:
                    continue
                head = heads.get(letter.run_id)
                if head is None:
                    raise NotFound("run", letter.run_id)
                run = await self._reopen(tx, letter.run_id, head, [letter.step_id])
                reopened[letter.run_id] = run
            return list(reopened.values())

        return await self._write(write)

    async def _letters(self, tx: Tx, ids: Sequence[int], tenant: str | None) -> list[DeadLetter]:
        found = await tx.conn.fetch(Q["dead_letters_get"], list(ids))
        by_id = {row[0]: rows.dead_letter(row, when) for row in found}
        letters = []
        for letter_id in ids:
            letter = by_id.get(letter_id)
            if letter is None or (tenant is not None and letter.tenant != tenant):
                raise NotFound("dead letter", letter_id)
            letters.append(letter)
        return letters

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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from overture import serde
from overture.core import events as ev
from overture.core.advance import advance, retry_event
from overture.core.inputs import prepare_input
from overture.core.model import Workflow
from overture.core.state import TERMINAL_RUN, RunState, RunStatus, fold
from overture.errors import Conflict, NotFound
from overture.ids import new_run_id
from overture.store import facts, postgres_schema, redact_url, rows
from overture.store.artifacts import Artifacts
from overture.store.base import DEFAULT_LEASE
from overture.store.codec import (
    EventCodec,
    StateCache,
    decode_cursor,
    encode_cursor,
    error_text,
    run_id_taken,
    version_to_register,
    workflow_digest,
)
from overture.store.postgres_listen import JobListener
from overture.store.postgres_tx import CHANNEL, Batch, Head, Q, Tx, when
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

T = TypeVar("T")
RETRIES = 8
"""Times a transaction chosen as a deadlock (or serialisation) victim is run again."""
CLAIM_AGAIN = 0.005
"""Seconds after which a claim that skipped a busy run's job wakes the claimers again."""

logger = logging.getLogger("overture.store.postgres")

_RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


async def _keep_session(conn: Any) -> None:
    """Pool connections never LISTEN, SET, or take session locks: nothing to reset on release
    (asyncpg still rolls back an open transaction), which saves a round trip per transaction."""


_POOL_OPTIONS: dict[str, Any] = (
    {"reset": _keep_session} if "reset" in inspect.signature(asyncpg.create_pool).parameters else {}
)
"""asyncpg 0.30 added ``reset``; older versions reset every connection they take back."""


class PostgresStore:
    """A ``Store`` in a PostgreSQL database (scale-out: many workers, many machines)."""

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        artifacts: Artifacts,
        min_size: int = 2,
        max_size: int = 10,
        migrate: bool = True,
    ) -> None:
        self._dsn = url
        self.url = redact_url(url)
        self.codec = EventCodec(artifacts)
        self.min_size = min_size
        self.max_size = max_size
        self._auto_migrate = migrate
        self._cache = StateCache()
        self._workflows: dict[tuple[str, str, int], Workflow] = {}
        self._pool: Any = None
        self._listener: JobListener | None = None
        self._inflight: set[asyncio.Future[Any]] = set()

    # --- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=self.min_size, max_size=self.max_size, **_POOL_OPTIONS
        )
        try:
            if self._auto_migrate:
                await self.migrate()
        except BaseException:
            await self.close()
            raise
        self._listener = JobListener(self._dsn, self.url)
        await self._listener.start()

    async def close(self) -> None:
        if self._inflight:  # writes whose callers stopped waiting still finish
            await asyncio.wait(set(self._inflight), timeout=30)
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(10):
                    await pool.close()
            except TimeoutError:
                pool.terminate()

    async def migrate(self) -> SchemaStatus:
        async with self._connection() as conn:
            return await postgres_schema.migrate(conn)

    async def schema_status(self) -> SchemaStatus:
        async with self._connection() as conn:
            return await postgres_schema.status(conn)

    def _need_pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the store is not open: call `await store.open()` first")
        return self._pool

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        async with self._need_pool().acquire() as conn:
            yield conn

    async def _write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``fn`` in a transaction of its own (again if it lost a deadlock).

        As in the embedded store, a caller that stops waiting (cancelled, timed out) does not
        undo the write: it runs to its end, and ``close()`` waits for it.
        """
        self._need_pool()
        task = asyncio.ensure_future(self._transact(fn))
        self._inflight.add(task)
        task.add_done_callback(self._settled)
        return await asyncio.shield(task)

    def _settled(self, task: asyncio.Future[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # mark it retrieved: a caller that stopped waiting never will

    async def _transact(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        pool = self._need_pool()
        attempt = 0
        while True:
            async with pool.acquire() as conn:
                tx = Tx(conn)
                try:
                    async with conn.transaction():
                        result = await fn(tx)
                except _RETRYABLE:
                    self._cache.forget(tx.states)
                    if attempt >= RETRIES:
                        raise
                    attempt += 1
                    continue
                except BaseException:
                    self._cache.forget(tx.states)
                    raise
            self._committed(tx)
            return result

    def _committed(self, tx: Tx) -> None:
        for run_id, (seq, state) in tx.states.items():
            cached = self._cache.get(run_id)
            if cached is None or cached[0] < seq:  # a later transaction may have been quicker
                self._cache.put(run_id, seq, state)
        if tx.enqueued:
            self._wake_claimers()
        if tx.claim_again:
            asyncio.get_running_loop().call_later(CLAIM_AGAIN, self._wake_claimers)

    # --- run state inside a transaction ----------------------------------------------------
    async def _workflow(self, tx: Tx, tenant: str, name: str, version: int) -> Workflow:
        key = (tenant, name, version)
        workflow = self._workflows.get(key)
        if workflow is None:
            row = await tx.conn.fetchrow(Q["workflow_version"], *key)
            if row is None:
                raise NotFound("workflow", f"{name} v{version}")
            workflow = rows.workflow_record(row, when).workflow
            self._workflows[key] = workflow
        return workflow

    async def _lock(self, tx: Tx, run_ids: Sequence[str]) -> dict[str, Head]:
        """Lock runs (in id order) for appending to their histories."""
        found = await tx.conn.fetch(Q["runs_lock"], sorted(set(run_ids)))
        return {row[0]: Head(row[1], row[2], row[3], row[4]) for row in found}

    async def _states(self, tx: Tx, heads: Mapping[str, Head]) -> dict[str, RunState]:
        """The states of locked runs: cached where current, else folded from what is missing."""
        states: dict[str, RunState] = {}
        stale: dict[str, tuple[int, RunState | None]] = {}
        for run_id, head in heads.items():
            entry = tx.states.get(run_id) or self._cache.get(run_id)
            seq, state = entry if entry is not None else (0, None)
            if seq > head.last_seq:
                seq, state = 0, None  # cannot be: start over rather than trust it
            if seq == head.last_seq and state is not None:
                states[run_id] = state
            else:
                stale[run_id] = (seq, state)
        if stale:
            ids = list(stale)
            found = await tx.conn.fetch(Q["events_after_each"], ids, [stale[i][0] for i in ids])
            missing: dict[str, list[tuple[int, str]]] = {run_id: [] for run_id in ids}
            for run_id, seq, data in found:
                missing[run_id].append((seq, data))
            for run_id in ids:
                events = sorted(missing[run_id])
                state = fold((self.codec.decode(data) for _, data in events), stale[run_id][1])
                # Committed history only (this transaction's own runs are in tx.states).
                self._cache.put(run_id, heads[run_id].last_seq, state)
                states[run_id] = state
        return states

    async def _advance(
        self,
        tx: Tx,
        heads: Mapping[str, Head],
        incoming: Mapping[str, Callable[[RunState], Sequence[ev.Event]]],
        *,
        decide: bool = True,
        records: bool = False,
    ) -> dict[str, RunRecord]:
        """Append ``incoming`` (and, with ``decide``, the engine's response) to locked runs,
        each at most once; returns the runs' records when asked."""
        if not incoming:
            return {}
        for run_id in incoming:
            if run_id not in heads:
                raise NotFound("run", run_id)
        states = await self._states(tx, {run_id: heads[run_id] for run_id in incoming})
        now = await tx.clock()
        batch = Batch(self.codec)
        for run_id, events_of in incoming.items():
            head, state = heads[run_id], states[run_id]
            workflow = await self._workflow(tx, head.tenant, head.workflow, head.version)
            transition = advance(workflow, state, events_of(state), now, decide_next=decide)
            head.last_seq = batch.add(run_id, head.last_seq, transition)
            tx.states[run_id] = (head.last_seq, transition.state)
        return await batch.write(tx, records=records)

    # --- workflows -------------------------------------------------------------------------
    async def register_workflow(
        self, workflow: Workflow, *, tenant: str = DEFAULT_TENANT
    ) -> WorkflowRecord:
        async def write(tx: Tx) -> WorkflowRecord:
            conn = tx.conn
            await conn.execute(Q["workflow_lock"], tenant, workflow.name)
            latest = await conn.fetchrow(Q["workflow_latest"], tenant, workflow.name)
            same = await conn.fetchrow(
                Q["workflow_version"], tenant, workflow.name, workflow.version
            )
            decided = version_to_register(
                workflow,
                None if latest is None else rows.workflow_record(latest, when),
                None if same is None else rows.workflow_record(same, when),
            )
            if isinstance(decided, WorkflowRecord):
                return decided
            row = await conn.fetchrow(
                Q["workflow_insert"],
                tenant,
                decided.name,
                decided.version,
                workflow_digest(decided),
                serde.dumps_text(decided.to_data()),
            )
            return rows.workflow_record(row, when)

        return await self._write(write)

    async def get_workflow(
        self, name: str, version: int | None = None, *, tenant: str = DEFAULT_TENANT
    ) -> WorkflowRecord:
        pool = self._need_pool()
        if version is None:
            row = await pool.fetchrow(Q["workflow_latest"], tenant, name)
        else:
            row = await pool.fetchrow(Q["workflow_version"], tenant, name, version)
        if row is None:
            raise NotFound("workflow", name if version is None else f"{name} v{version}")
        return rows.workflow_record(row, when)

    async def list_workflows(self, *, tenant: str = DEFAULT_TENANT) -> list[WorkflowRecord]:
        found = await self._need_pool().fetch(Q["workflow_list"], tenant)
        return [rows.workflow_record(row, when) for row in found]

    async def set_workflow_disabled(
        self, name: str, disabled: bool, *, tenant: str = DEFAULT_TENANT
    ) -> None:
        async def write(tx: Tx) -> None:
            status = await tx.conn.execute(Q["workflow_disable"], disabled, tenant, name)
            if _rowcount(status) == 0:
                raise NotFound("workflow", name)

        await self._write(write)

    # --- runs ------------------------------------------------------------------------------
    async def start_run(self, request: StartRun) -> tuple[RunRecord, bool]:
        tenant, key = request.tenant, request.idempotency_key

        async def write(tx: Tx) -> tuple[RunRecord, bool]:
            conn = tx.conn
            if key is not None:
                existing = await conn.fetchrow(Q["run_by_key"], tenant, key)
                if existing is not None:
                    return rows.run_record(existing, self.codec, when), False
            name, version = request.workflow, request.version
            head = await conn.fetchrow(Q["workflow_head_for_start"], tenant, name, version)
            if head is None:
                raise NotFound("workflow", name if version is None else f"{name} v{version}")
            found_version, disabled, tx.now = head
            if disabled:
                raise Conflict(
                    f"workflow {name!r} is disabled; enable it to start runs",
                    code="workflow_disabled",
                )
            workflow = await self._workflow(tx, tenant, name, found_version)
            data = prepare_input(workflow.name, workflow.input, request.input)
            if request.run_id is not None and await conn.fetchval(Q["run_exists"], request.run_id):
                raise run_id_taken(request.run_id)
            run_id = request.run_id or new_run_id()
            now = await tx.clock()
            started = facts.run_started(request, workflow, data, run_id, now)
            transition = advance(workflow, None, [started], now)
            state, seq = transition.state, len(transition.events)
            inserted = await conn.fetchrow(
                Q["run_insert"],
                run_id,
                tenant,
                workflow.name,
                workflow.version,
                state.status,
                self.codec.encode_value(data),
                self.codec.encode_value(state.output),
                error_text(state.error),
                request.priority,
                request.correlation_id,
                key,
                request.parent_run_id,
                now,
                state.finished_at,
                seq,
            )
            if inserted is None:
                # A concurrent start with the same key committed first (we waited for it).
                existing = await conn.fetchrow(Q["run_by_key"], tenant, key)
                if existing is None:
                    raise Conflict(
                        f"idempotency key {key!r} is being used by a start that did not finish",
                        code="idempotency_conflict",
                    )
                return rows.run_record(existing, self.codec, when), False
            batch = Batch(self.codec)
            batch.add(run_id, 0, transition)
            await batch.write(tx, update_runs=False)
            tx.states[run_id] = (seq, state)
            return rows.run_record(inserted, self.codec, when), True

        return await self._write(write)

    async def get_run(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunRecord:
        row = await self._need_pool().fetchrow(Q["run_get"], run_id)
        return _run(row, run_id, self.codec, tenant)

    async def run_state(self, run_id: str, *, tenant: str | None = DEFAULT_TENANT) -> RunState:
        async with self._connection() as conn:
            _run(await conn.fetchrow(Q["run_get"], run_id), run_id, self.codec, tenant)
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
            _run(await conn.fetchrow(Q["run_get"], run_id), run_id, self.codec, tenant)
            found = await conn.fetch(Q["events_after"], run_id, after, limit)
        return [
            StoredEvent(run_id=run_id, seq=seq, event=self.codec.decode(data))
            for seq, data in found
        ]

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

    async def _locked_run(self, tx: Tx, run_id: str, tenant: str | None) -> tuple[RunRecord, Head]:
        row = await tx.conn.fetchrow(Q["run_get_locked"], run_id)
        record = _run(None if row is None else row[:16], run_id, self.codec, tenant)
        tx.now = when(row[16])
        return record, Head(record.tenant, record.workflow, record.version, record.events)

    async def _reopen(
        self, tx: Tx, run_id: str, head: Head, steps: Sequence[str] | None
    ) -> RunRecord:
        now = await tx.clock()
        reopened = await self._advance(
            tx,
            {run_id: head},
            {run_id: lambda state: [retry_event(state, now, steps)]},
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
    ) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        names = None if handlers is None else list(handlers)

        async def write(tx: Tx) -> list[ClaimedJob]:
            conn = tx.conn
            await conn.execute(Q["claim_plan"])
            found = await conn.fetch(Q["jobs_claim"], worker_id, float(lease), names, limit)
            if len(found) < limit and await conn.fetchval(Q["jobs_held_back"], names) is not None:
                tx.claim_again = True  # skipped for a busy run: it will be free in a moment
            if not found:
                return []
            tx.now = now = when(found[0][14])
            heads = {row[2]: Head(row[15], row[16], row[17], row[18]) for row in found}
            # RETURNING does not follow the subquery's order: restore priority, then FIFO.
            found.sort(key=lambda row: (row[12], row[13], row[0]))
            jobs = [rows.claimed_job(row, self.codec, when) for row in found]
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
            await self._advance(tx, heads, incoming, decide=False)
            return jobs

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
                _, run_id, step_id, attempt, compensation, _ = row
                event = facts.attempt_ended(done, step_id, attempt, compensation, now)
                incoming[run_id] = facts.given(event)
                recorded[i] = True
            await self._advance(tx, heads, incoming)
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

    async def wait_for_jobs(self, timeout: float) -> None:
        if self._listener is None:
            raise RuntimeError("the store is not open: call `await store.open()` first")
        await self._listener.wait(timeout)

    def _wake_claimers(self) -> None:
        if self._listener is not None:
            self._listener.wake()

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


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


def _run(row: Any, run_id: str, codec: EventCodec, tenant: str | None) -> RunRecord:
    if row is None or (tenant is not None and row[1] != tenant):
        raise NotFound("run", run_id)
    return rows.run_record(row, codec, when)

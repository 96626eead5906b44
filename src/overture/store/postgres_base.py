"""What every part of the PostgreSQL store builds on: the pool, transactions (run again when
chosen as a deadlock victim; finished even if their caller stops waiting), and appending to the
histories of locked runs. ``postgres`` says how transactions avoid waiting for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from overture.core import children
from overture.core import events as ev
from overture.core.advance import Transition, advance
from overture.core.model import Workflow
from overture.core.state import RunState, fold
from overture.errors import NotFound
from overture.store import postgres_schema, redact_url, rows
from overture.store.artifacts import Artifacts
from overture.store.base import StoreObserver
from overture.store.codec import EventCodec, StateCache
from overture.store.keys import KeyCache
from overture.store.observers import notify
from overture.store.postgres_listen import JobListener
from overture.store.postgres_tx import Batch, Head, Q, Tx, when
from overture.store.records import RunRecord, SchemaStatus

T = TypeVar("T")
RETRIES = 8
"""Times a transaction chosen as a deadlock (or serialisation) victim is run again."""
CLAIM_AGAIN = 0.005
"""Seconds after which a claim that skipped a busy run's job wakes the claimers again."""

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


class PostgresBase:
    """The plumbing of ``PostgresStore``; its parts by concern subclass this."""

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
        self._keys = KeyCache()
        self.observers: list[StoreObserver] = []

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
        if self.observers and (tx.transitions or tx.deferred):
            notify(self.observers, tx.transitions, tx.deferred)

    async def wait_for_jobs(self, timeout: float) -> None:
        if self._listener is None:
            raise RuntimeError("the store is not open: call `await store.open()` first")
        await self._listener.wait(timeout)

    def _wake_claimers(self) -> None:
        if self._listener is not None:
            self._listener.wake()

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
        heads: dict[str, Head],
        incoming: Mapping[str, Callable[[RunState], Sequence[ev.Event]]],
        *,
        decide: bool = True,
        records: bool = False,
    ) -> dict[str, RunRecord]:
        """Append ``incoming`` (and, with ``decide``, the engine's response) to locked runs,
        each at most once, then start, end and cancel the child runs that concerns (runs they
        lock join ``heads``); returns the runs' records when asked."""
        transitions, found = await self._advance_runs(
            tx, heads, incoming, decide=decide, records=records
        )
        follow = [(t, 0) for t in transitions if children.concerns(t)]
        touched = await self._follow(tx, heads, follow) if follow else set()
        for run_id in touched & found.keys():  # moved again since: as it is now
            found[run_id] = load_run(
                await tx.conn.fetchrow(Q["run_get"], run_id), run_id, self.codec, None
            )
        return found

    async def _follow(
        self, tx: Tx, heads: dict[str, Head], transitions: list[tuple[Transition, int]]
    ) -> set[str]:
        """Start, end and cancel the child runs of these transitions; the runs it moved
        (``PostgresWorkflows``)."""
        return set()

    async def _advance_runs(
        self,
        tx: Tx,
        heads: Mapping[str, Head],
        incoming: Mapping[str, Callable[[RunState], Sequence[ev.Event]]],
        *,
        decide: bool = True,
        records: bool = False,
    ) -> tuple[list[Transition], dict[str, RunRecord]]:
        """``_advance`` of these runs alone; a run given no events is left as it is."""
        if not incoming:
            return [], {}
        for run_id in incoming:
            if run_id not in heads:
                raise NotFound("run", run_id)
        states = await self._states(tx, {run_id: heads[run_id] for run_id in incoming})
        now = await tx.clock()
        batch = Batch(self.codec)
        transitions: list[Transition] = []
        for run_id, events_of in incoming.items():
            head, state = heads[run_id], states[run_id]
            events = events_of(state)
            if not events:
                continue
            workflow = await self._workflow(tx, head.tenant, head.workflow, head.version)
            transition = advance(workflow, state, events, now, decide_next=decide)
            head.last_seq = batch.add(run_id, head.last_seq, transition)
            tx.states[run_id] = (head.last_seq, transition.state)
            transitions.append(transition)
        tx.transitions.extend(transitions)
        if not transitions:
            return [], {}
        return transitions, await batch.write(tx, records=records)

    async def _locked_run(self, tx: Tx, run_id: str, tenant: str | None) -> tuple[RunRecord, Head]:
        """A run, locked for appending to its history (``NotFound`` as for ``load_run``)."""
        row = await tx.conn.fetchrow(Q["run_get_locked"], run_id)
        record = load_run(None if row is None else row[:17], run_id, self.codec, tenant)
        tx.now = when(row[17])
        return record, Head(record.tenant, record.workflow, record.version, record.events)


def load_run(row: Any, run_id: str, codec: EventCodec, tenant: str | None) -> RunRecord:
    """The run a ``run_get`` row holds; ``NotFound`` for no row or another tenant's run (None:
    any tenant)."""
    rows.check_run(row, run_id, tenant)
    return rows.run_record(row, codec, when)

"""The embedded store's writer: one thread, one connection, group commit.

Every write is a small function run on this thread inside ``BEGIN IMMEDIATE``. The thread takes
every write waiting in its queue and commits them together, each inside its own savepoint: one
fsync pays for a whole batch of claims and completions, and one failing write never takes its
neighbours down with it (its in-memory effects are undone through ``forget``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from overture.core.advance import Transition
from overture.store.sqlfiles import queries

T = TypeVar("T")
Q = queries("sqlite")
logger = logging.getLogger("overture.store")

MAX_BATCH = 512
"""Writes committed together at most: bounds the latency a batch adds to its first write."""


CHECKPOINT_EVERY = 0.5
"""Seconds between WAL checkpoints (the WAL grows by at most what is written in between)."""

BUSY_TIMEOUT = 30.0
"""Seconds a connection waits for another one's lock before giving up."""


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    _use_wal(conn)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch a new file to WAL (it stays so). The switch needs the file to itself and does not
    wait on the busy timeout, so connections opened at once retry it themselves."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@dataclass(slots=True)
class Tx:
    """What one write sees: the connection, the time, and what to undo in memory on rollback."""

    conn: sqlite3.Connection
    now: int
    """Microseconds since the epoch, by this host's clock: the embedded database's clock."""
    touched: set[str] = field(default_factory=set)
    enqueued: bool = False
    transitions: list[Transition] = field(default_factory=list)
    """What the store's observers are told once this commits."""
    deferred: list[tuple[str, str]] = field(default_factory=list)
    """``(tenant, Deferred.reason)`` of each due job a claim left queued."""

    def one(self, name: str, *params: Any) -> Any:
        return self.conn.execute(Q[name], params).fetchone()


@dataclass(slots=True)
class _Write:
    fn: Callable[[Tx], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class GroupCommit:
    """The writer thread. ``forget`` drops cached run states a rolled-back write touched;
    ``committed`` is told (on this thread) what a commit's writes did, before their callers get
    their results; ``enqueued`` is called after a commit that queued jobs."""

    def __init__(
        self,
        path: str,
        synchronous: str,
        *,
        forget: Callable[[Iterable[str]], None],
        enqueued: Callable[[], None],
        committed: Callable[[list[Transition], list[tuple[str, str]]], None],
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self._forget = forget
        self._enqueued = enqueued
        self._committed = committed
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="overture-write", daemon=True)
        self._thread.start()
        self._checkpointer = Checkpointer(path, synchronous)

    async def submit(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in the next batch; its result (or exception) once the batch commits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Write(fn, loop, future))
        return await future

    async def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._checkpointer.stop)

    def _loop(self) -> None:
        conn = connect(self.path, self.synchronous)
        # Checkpoints are the checkpointer thread's: done inline, one would stall a commit (and
        # every write in its batch) for as long as copying the WAL and an fsync take.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self._queue.put(None)  # finish this batch, then stop
                        break
                    batch.append(item)
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Write]) -> None:
        results: list[tuple[_Write, bool, Any]] = []
        touched: set[str] = set()
        enqueued = False
        transitions: list[Transition] = []
        deferred: list[tuple[str, str]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            _settle_all([(write, False, error) for write in batch])
            return
        for write in batch:
            tx = Tx(conn=conn, now=time.time_ns() // 1000)
            conn.execute("SAVEPOINT write")
            try:
                result = write.fn(tx)
            except BaseException as error:
                conn.execute("ROLLBACK TO write")
                conn.execute("RELEASE write")
                self._forget(tx.touched)
                results.append((write, False, error))
                continue
            conn.execute("RELEASE write")
            touched |= tx.touched
            enqueued = enqueued or tx.enqueued
            transitions += tx.transitions
            deferred += tx.deferred
            results.append((write, True, result))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._forget(touched)
            results = [(write, False, error) for write, _, _ in results]
            enqueued = False
            transitions, deferred = [], []
        # Observers first: a caller resuming on its result sees what its write was counted as.
        if transitions or deferred:
            self._committed(transitions, deferred)
        _settle_all(results)
        if enqueued:
            self._enqueued()


class Checkpointer:
    """Copies the WAL back into the database file every ``CHECKPOINT_EVERY`` seconds, in a
    thread of its own. PASSIVE checkpoints never wait for (nor block) the writer or readers;
    the WAL is rewound from its start by the first commit after a complete one."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.path, self.synchronous = path, synchronous
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="overture-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _loop(self) -> None:
        conn = connect(self.path, self.synchronous)
        try:
            while not self._stopping.wait(CHECKPOINT_EVERY):
                self._checkpoint(conn, "PASSIVE")
            self._checkpoint(conn, "TRUNCATE")  # leave a small file behind
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as error:  # a busy database now is not a failure: try again later
            logger.debug("WAL checkpoint (%s) skipped: %s", mode, error)


def _settle_all(results: list[tuple[_Write, bool, Any]]) -> None:
    """Hand each write's result to its caller: one wake-up per event loop, not per write."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Write, bool, Any]]] = {}
    for item in results:
        by_loop.setdefault(item[0].loop, []).append(item)
    for loop, items in by_loop.items():
        loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[tuple[_Write, bool, Any]]) -> None:
    for write, ok, value in items:
        if write.future.done():
            continue  # the caller gave up waiting; the write itself stands
        if ok:
            write.future.set_result(value)
        else:
            write.future.set_exception(value)

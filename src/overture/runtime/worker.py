"""The durable worker: claim attempts, run their handlers, heartbeat, complete, reap.

One asyncio task per concern:

- **claim**: leases as many due jobs as there are free slots, sleeping on the store's wake-up
  (LISTEN/NOTIFY, or the in-process signal of the embedded store) with polling as the fallback;
- **complete**: finished attempts queue up while a completion is being written, then go to the
  store together, so the store can commit them in one transaction;
- **heartbeat**: renews the leases of running attempts; an attempt whose lease the store says is
  gone (expired and taken over, or its run cancelled) has its handler cancelled at once, and so
  does one whose lease ran out while the store could not be reached: it could not commit anyway;
- **reap**: expires other workers' leases that ran out, so a dead worker's steps run again
  within seconds.

``stop()`` is graceful: claiming stops, running handlers get ``grace`` seconds to finish and
complete, the rest are cancelled and their jobs given back to the queue unspent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets as random_secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from overture.core.admission import NO_LIMITS, TenantLimits
from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import LogLine, StepContext
from overture.runtime.executor import execute
from overture.store.base import DEFAULT_LEASE, Store
from overture.store.records import ClaimedJob, Completion, Lease, LogEntry, WorkerRecord
from overture.telemetry import logs, tracecontext

if TYPE_CHECKING:
    from overture.telemetry.metrics import Metrics
    from overture.telemetry.spans import Tracing

logger = logging.getLogger("overture.worker")


def new_worker_id() -> str:
    """Unique across machines and restarts: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{random_secrets.token_hex(3)}"


@dataclass(slots=True)
class _Running:
    job: ClaimedJob
    task: asyncio.Task[None]
    expires: float
    """``time.monotonic()`` after which this worker can no longer assume it holds the lease."""


class Worker:
    """Runs the jobs of one store with the handlers of one registry."""

    def __init__(
        self,
        store: Store,
        registry: HandlerRegistry,
        *,
        concurrency: int = 10,
        lease: float = DEFAULT_LEASE,
        heartbeat: float | None = None,
        poll: float = 1.0,
        reap_every: float | None = None,
        grace: float = 30.0,
        worker_id: str | None = None,
        secrets: Mapping[str, str] | None = None,
        limits: TenantLimits = NO_LIMITS,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if lease <= 0:
            raise ValueError(f"lease must be positive, got {lease}")
        self.store = store
        self.registry = registry
        self.concurrency = concurrency
        self.lease = lease
        # At least every 10 s whatever the lease: the worker's row is its liveness.
        self.heartbeat_every = heartbeat if heartbeat is not None else min(lease / 3, 10.0)
        self.poll = poll
        self.reap_every = reap_every if reap_every is not None else min(1.0, lease / 2)
        self.grace = grace
        self.id = worker_id or new_worker_id()
        self.secrets: Mapping[str, str] = {} if secrets is None else secrets
        self.limits = limits
        """Flow limits every tenant gets; every process of a deployment should agree on them."""
        self.metrics = metrics
        self.tracing = tracing
        self.started_at = datetime.now(UTC)
        self._running: dict[int, _Running] = {}
        self._finished: list[tuple[ClaimedJob, Completion]] = []
        self._finished_ready = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._abort = asyncio.Event()
        self._closing = False
        self._handlers = sorted(registry.names())
        self.completed = 0
        """Attempts this worker completed (its result was recorded)."""
        self.lost = 0
        """Attempts whose result was refused because the lease was gone."""

    # --- lifecycle -------------------------------------------------------------------------
    def stop(self, *, grace: float | None = None) -> None:
        """Stop claiming; let running handlers finish within ``grace`` seconds, then give back.

        Called again with ``grace=0`` while draining, it gives running steps back at once.
        """
        if grace is not None:
            self.grace = grace
            if grace <= 0:
                self._abort.set()
        self._stopping.set()
        self._slot_free.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Work until ``stop()``; then shut down gracefully."""
        with logs.bound(worker_id=self.id):
            await self._run()

    async def _run(self) -> None:
        await self.store.worker_seen(self._record())
        logger.info(
            "worker %s started: concurrency %d, lease %gs, handlers %s",
            self.id,
            self.concurrency,
            self.lease,
            ", ".join(self._handlers),
        )
        completer = asyncio.create_task(self._complete_loop(), name="overture-complete")
        background = [
            asyncio.create_task(self._heartbeat_loop(), name="overture-heartbeat"),
            asyncio.create_task(self._reap_loop(), name="overture-reap"),
        ]
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._give_back()
            await self._stop_completing(completer)
            await self.store.worker_stopped(self.id)
            logger.info("worker %s stopped", self.id)

    def _record(self) -> WorkerRecord:
        now = datetime.now(UTC)
        return WorkerRecord(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            concurrency=self.concurrency,
            handlers=tuple(self._handlers),
            started_at=self.started_at,
            last_seen=now,
        )

    # --- claiming --------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self.stopping:
            free = self.concurrency - len(self._running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                jobs = await self.store.claim(
                    self.id,
                    limit=free,
                    lease=self.lease,
                    handlers=self._handlers,
                    limits=self.limits,
                )
            except Exception:  # the database may come back: keep the worker alive
                logger.exception("claim failed; retrying in %gs", self.poll)
                await self._sleep_unless_stopping(self.poll)
                continue
            for job in jobs:
                self._start(job)
            if len(jobs) < free:
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        waiter = asyncio.create_task(self.store.wait_for_jobs(self.poll))
        stopper = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopper):
            task.cancel()
        await asyncio.gather(waiter, stopper, return_exceptions=True)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    def _start(self, job: ClaimedJob) -> None:
        task = asyncio.create_task(self._attempt(job), name=f"overture-step-{job.step_id}")
        self._running[job.id] = _Running(job, task, time.monotonic() + self.lease)

    async def _attempt(self, job: ClaimedJob) -> None:
        """Run one attempt inside its span and log context; queue its completion."""
        trace = tracecontext.parse_traceparent(job.traceparent)
        context = logs.bound(
            run_id=job.run_id,
            step_id=job.step_id,
            attempt=job.attempt,
            workflow=job.workflow,
            tenant=job.tenant,
            trace_id=None if trace is None else trace.trace_id,
        )
        started = time.perf_counter()
        status = "error"  # the worker failed around the handler (its errors are outcomes)
        try:
            with context:
                done = await self._traced(job, trace)
                if done.error is not None:  # the error as stored: its secrets are masked
                    logger.warning(
                        "step %s attempt %d failed: %s: %s",
                        job.step_id,
                        job.attempt,
                        done.error.code,
                        done.error.message,
                    )
            status = "succeeded" if done.error is None else "failed"
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            if self.metrics is not None:
                self.metrics.attempt_finished(
                    handler=job.uses,
                    tenant=job.tenant,
                    status=status,
                    seconds=time.perf_counter() - started,
                )
        self._finished.append((job, done))
        self._finished_ready.set()

    async def _traced(self, job: ClaimedJob, run: tracecontext.TraceParent | None) -> Completion:
        """The attempt inside its span (a child of the run's), when spans are exported."""
        if self.tracing is None:
            # Nothing is exported, but outbound calls still join the run's trace.
            return await self._execute(job, None if run is None else run.child().header())
        with self.tracing.attempt(job, run, self.id) as (span_context, span):
            done = await self._execute(job, span_context.header())
            self.tracing.ended(span, done.error)
            return done

    async def _execute(self, job: ClaimedJob, traceparent: str | None) -> Completion:
        """Run the handler; its outbound calls carry ``traceparent``."""
        ctx = StepContext(
            run_id=job.run_id,
            step_id=job.step_id,
            attempt=job.attempt,
            workflow=job.workflow,
            tenant=job.tenant,
            compensation=job.compensation,
            secrets=self.secrets,
        )
        spec = self.registry.get(job.uses)
        token = tracecontext.outbound.set(traceparent)
        try:
            outcome = await execute(spec, job.input, ctx, self.secrets, timeout=job.timeout)
        finally:
            tracecontext.outbound.reset(token)
        return Completion(
            job_id=job.id,
            token=job.token,
            output=outcome.output,
            error=outcome.error,
            logs=tuple(self._log_entry(line) for line in ctx.logs),
        )

    def _log_entry(self, line: LogLine) -> LogEntry:
        """A line as stored (``StepContext.log`` already masked the secrets in it)."""
        return LogEntry(at=line.at, level=line.level, message=line.message, fields=line.fields)

    # --- completing ------------------------------------------------------------------------
    async def _complete_loop(self) -> None:
        while True:
            await self._finished_ready.wait()
            self._finished_ready.clear()
            await self._flush()
            if self._closing and not self._finished:
                return

    async def _stop_completing(self, completer: asyncio.Task[None]) -> None:
        """Let the completer record what finished (never cancel a write half-way), then stop."""
        self._closing = True
        self._finished_ready.set()
        done, _ = await asyncio.wait({completer}, timeout=self.grace + 10)
        if not done:  # the database never answered: the leases will expire instead
            logger.error("could not record finished steps before stopping")
            completer.cancel()
            await asyncio.gather(completer, return_exceptions=True)

    async def _flush(self) -> None:
        while self._finished:
            batch, self._finished = self._finished, []
            completions = [done for _, done in batch]
            try:
                accepted = await self.store.complete(completions)
            except Exception:
                # Not recorded: the leases will expire and the attempts run again elsewhere.
                logger.exception("could not record %d finished attempts", len(batch))
                accepted = [False] * len(batch)
            for (job, _), ok in zip(batch, accepted, strict=True):
                self._running.pop(job.id, None)
                if ok:
                    self.completed += 1
                else:
                    self.lost += 1
                    logger.warning(
                        "result of %s/%s attempt %d refused: the lease was lost",
                        job.run_id,
                        job.step_id,
                        job.attempt,
                    )
            self._slot_free.set()

    # --- leases ----------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        held = [r for r in self._running.values() if not r.task.done()]
        sent_at = time.monotonic()
        try:
            await self.store.worker_seen(self._record())
            lost = await self.store.heartbeat(
                self.id, [Lease(job_id=r.job.id, token=r.job.token) for r in held], lease=self.lease
            )
        except Exception:
            logger.exception("heartbeat failed")
            expired = [r for r in held if time.monotonic() > r.expires]
            self._abandon(expired, "its lease ran out while the database was unreachable")
            return
        if self.metrics is not None:
            self.metrics.heartbeat()
        for r in held:
            r.expires = sent_at + self.lease
        self._abandon([r for r in held if r.job.id in lost], "its lease is gone")

    def _abandon(self, running: list[_Running], why: str) -> None:
        """Cancel handlers whose results could no longer be recorded."""
        for r in running:
            logger.warning(
                "cancelling %s/%s attempt %d: %s", r.job.run_id, r.job.step_id, r.job.attempt, why
            )
            r.task.cancel()
            self._running.pop(r.job.id, None)
            self.lost += 1
        if running:
            self._slot_free.set()

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reap_every)
            try:
                if expired := await self.store.reap():
                    logger.warning(
                        "re-queued %d attempts whose worker stopped heartbeating", expired
                    )
            except Exception:
                logger.exception("reaping failed")

    # --- shutting down ---------------------------------------------------------------------
    async def _drain(self) -> None:
        """Let running handlers finish within the grace period."""
        pending: set[asyncio.Task[Any]] = {r.task for r in self._running.values()}
        if pending:
            logger.info("waiting up to %gs for %d running steps", self.grace, len(pending))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        abort = asyncio.create_task(self._abort.wait())
        try:
            while pending and not self._abort.is_set() and loop.time() < deadline:
                _, pending = await asyncio.wait(
                    pending | {abort},
                    timeout=deadline - loop.time(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                pending.discard(abort)
        finally:
            abort.cancel()
        await self._flush()

    async def _give_back(self) -> None:
        unfinished = [r for r in self._running.values() if not r.task.done()]
        for r in unfinished:
            r.task.cancel()
        await asyncio.gather(*(r.task for r in unfinished), return_exceptions=True)
        if not unfinished:
            return
        leases = [Lease(job_id=r.job.id, token=r.job.token) for r in unfinished]
        for r in unfinished:
            self._running.pop(r.job.id, None)
        try:
            released = await self.store.release(leases)
            logger.info("gave %d unfinished steps back to the queue", released)
        except Exception:
            logger.exception("could not give steps back; their leases will expire")

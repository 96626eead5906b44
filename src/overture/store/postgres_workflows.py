"""The PostgreSQL store's workflow catalogue: versions registered, looked up, disabled, and
started (a run starts from the catalogue, inside any transaction that needs one)."""

from __future__ import annotations

from collections import deque

from overture import serde
from overture.core import children
from overture.core.advance import Transition, advance
from overture.core.children import ChildStart, Incoming
from overture.core.inputs import prepare_input
from overture.core.model import Workflow
from overture.errors import Conflict, NotFound
from overture.ids import new_run_id
from overture.store import facts, rows
from overture.store import trigger_rows as tr
from overture.store.codec import error_text, run_id_taken, version_to_register, workflow_digest
from overture.store.postgres_base import PostgresBase, load_run
from overture.store.postgres_tx import Batch, Head, Q, Tx, when
from overture.store.records import DEFAULT_TENANT, RunRecord, StartRun, WorkflowRecord
from overture.store.triggers import schedule_params, schedule_taken
from overture.triggers.schedules import workflow_schedules


class PostgresWorkflows(PostgresBase):
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
                if latest is not None and decided.version == latest[2]:
                    # The same definition again (``serve`` registers its files at every start):
                    # its schedules may predate the cron triggers (databases before 003).
                    await self._sync_schedules(tx, tenant, decided.workflow)
                return decided
            row = await conn.fetchrow(
                Q["workflow_insert"],
                tenant,
                decided.name,
                decided.version,
                workflow_digest(decided),
                serde.dumps_text(decided.to_data()),
            )
            if latest is None or decided.version > latest[2]:
                await self._sync_schedules(tx, tenant, decided)
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

    async def workflow_versions(
        self, name: str, *, tenant: str = DEFAULT_TENANT
    ) -> list[WorkflowRecord]:
        found = await self._need_pool().fetch(Q["workflow_versions"], tenant, name)
        if not found:
            raise NotFound("workflow", name)
        return [rows.workflow_record(row, when) for row in found]

    async def set_workflow_disabled(
        self, name: str, disabled: bool, *, tenant: str = DEFAULT_TENANT
    ) -> None:
        async def write(tx: Tx) -> None:
            status = await tx.conn.execute(Q["workflow_disable"], disabled, tenant, name)
            if _rowcount(status) == 0:
                raise NotFound("workflow", name)

        await self._write(write)

    async def _start(self, tx: Tx, request: StartRun) -> tuple[RunRecord, bool]:
        """Start a run inside ``tx`` (with the child runs its first steps start);
        ``(existing run, False)`` for a repeated key; a key in the engine's namespace is refused
        (``children.check_key``: child runs come through ``_insert_run``)."""
        children.check_key(request.idempotency_key)
        record, first = await self._insert_run(tx, request)
        if first is None:
            return record, False
        if children.concerns(first) and record.id in await self._follow(tx, {}, [(first, 0)]):
            row = await tx.conn.fetchrow(Q["run_get"], record.id)
            record = load_run(row, record.id, self.codec, None)
        return record, True

    async def _insert_run(self, tx: Tx, request: StartRun) -> tuple[RunRecord, Transition | None]:
        """A new run and its first transition, written; ``(existing run, None)`` for a repeated
        key. Refusals (``NotFound``, ``Conflict``, ``InputInvalid``) come before any write."""
        tenant, key = request.tenant, request.idempotency_key
        conn = tx.conn
        if key is not None:
            existing = await conn.fetchrow(Q["run_by_key"], tenant, key)
            if existing is not None:
                return rows.run_record(existing, self.codec, when), None
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
            request.run_at,
        )
        if inserted is None:
            # A concurrent start with the same key committed first (we waited for it).
            existing = await conn.fetchrow(Q["run_by_key"], tenant, key)
            if existing is None:
                raise Conflict(
                    f"idempotency key {key!r} is being used by a start that did not finish",
                    code="idempotency_conflict",
                )
            return rows.run_record(existing, self.codec, when), None
        batch = Batch(self.codec)
        batch.add(run_id, 0, transition)
        await batch.write(tx, update_runs=False)
        tx.states[run_id] = (seq, state)
        tx.transitions.append(transition)
        return rows.run_record(inserted, self.codec, when), transition

    async def _follow(
        self, tx: Tx, heads: dict[str, Head], transitions: list[tuple[Transition, int]]
    ) -> set[str]:
        """Start, end and cancel the child runs these transitions concern, and whatever that
        causes in turn, in this transaction (``overture.core.children`` says what).

        Parents and children are locked as they are reached, so a child's completion (child,
        then parent) and its parent's cancellation (parent, then child) take two runs in
        opposite orders: should they deadlock, PostgreSQL picks one and it is run again.
        """
        moved: set[str] = set()
        queue = deque(transitions)
        while queue:
            t, depth = queue.popleft()
            at = await tx.clock()
            for start in children.starts(t):
                queue.extend(await self._start_child(tx, heads, start, depth, moved))
            for child_id, reason in t.orphans:
                stopping = children.stopping(reason, at)
                queue.extend(await self._move(tx, heads, child_id, stopping, depth + 1, moved))
            if (parent := children.parent_of(t)) is not None:
                parent_id, step_id = parent
                ending = children.ending(step_id, children.child_of(t.state), at)
                queue.extend(await self._move(tx, heads, parent_id, ending, depth - 1, moved))
        return moved

    async def _start_child(
        self, tx: Tx, heads: dict[str, Head], start: ChildStart, depth: int, moved: set[str]
    ) -> list[tuple[Transition, int]]:
        """Start a ``workflow`` step's child run and record it on the parent, unless the parent
        no longer waits for it (an earlier start of the same transition failed the run)."""
        parent = start.parent.run_id
        if parent not in heads:
            heads.update(await self._lock(tx, [parent]))
        current = await self._states(tx, {parent: heads[parent]})
        if not children.still_due(start, current[parent]):
            return []
        at = await tx.clock()
        follow: list[tuple[Transition, int]] = []
        error = children.cannot_start(start, depth)
        if error is None:
            try:
                record, first = await self._insert_run(tx, facts.child_request(start))
            except children.REFUSED as problem:
                error = children.refused(start, problem)
            else:
                events = children.started(start, facts.child_run(record), at)
                if first is not None:
                    follow.append((first, depth + 1))
        if error is not None:
            events = children.not_started(start, error, at)
        return [*follow, *await self._move(tx, heads, parent, facts.given(*events), depth, moved)]

    async def _move(
        self,
        tx: Tx,
        heads: dict[str, Head],
        run_id: str,
        incoming: Incoming,
        depth: int,
        moved: set[str],
    ) -> list[tuple[Transition, int]]:
        """Advance one more run (locked first, if this transaction does not hold it yet)."""
        if run_id not in heads:
            heads.update(await self._lock(tx, [run_id]))
        transitions, _ = await self._advance_runs(tx, heads, {run_id: incoming})
        moved.update(t.state.run_id for t in transitions)
        return [(t, max(depth, 0)) for t in transitions]

    async def _sync_schedules(self, tx: Tx, tenant: str, workflow: Workflow) -> None:
        """Keep the schedules of a workflow's ``on.cron`` in step with its latest version."""
        now = await tx.clock()
        found = await tx.conn.fetch(Q["schedules_of_workflow"], tenant, workflow.name)
        old = {r.id: r for r in (tr.schedule_record(row, when) for row in found)}
        for spec in workflow_schedules(workflow, tenant):
            previous = old.pop(spec.id, None)
            params = schedule_params(spec, previous, now)
            # Both statements number their parameters in schedule_params' order.
            if previous is not None:
                await tx.conn.execute(Q["schedule_update"], *params.values())
            elif await tx.conn.fetchrow(Q["schedule_insert"], *params.values()) is None:
                raise schedule_taken(spec.id)
        for gone in old:
            await tx.conn.execute(Q["schedule_delete"], tenant, gone)
            await tx.conn.execute(Q["ticks_delete"], tenant, gone)


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])

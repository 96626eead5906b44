"""The PostgreSQL store's workflow catalogue: versions registered, looked up, disabled, and
started (a run starts from the catalogue, inside any transaction that needs one)."""

from __future__ import annotations

from overture import serde
from overture.core.advance import advance
from overture.core.inputs import prepare_input
from overture.core.model import Workflow
from overture.errors import Conflict, NotFound
from overture.ids import new_run_id
from overture.store import facts, rows
from overture.store import trigger_rows as tr
from overture.store.codec import error_text, run_id_taken, version_to_register, workflow_digest
from overture.store.postgres_base import PostgresBase
from overture.store.postgres_tx import Batch, Q, Tx, when
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
        """Start a run inside ``tx``; ``(existing run, False)`` for a repeated key."""
        tenant, key = request.tenant, request.idempotency_key
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
            return rows.run_record(existing, self.codec, when), False
        batch = Batch(self.codec)
        batch.add(run_id, 0, transition)
        await batch.write(tx, update_runs=False)
        tx.states[run_id] = (seq, state)
        return rows.run_record(inserted, self.codec, when), True

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

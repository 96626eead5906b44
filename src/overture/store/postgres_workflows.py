"""The PostgreSQL store's workflow catalogue: versions registered, looked up, disabled."""

from __future__ import annotations

from overture import serde
from overture.core.model import Workflow
from overture.errors import NotFound
from overture.store import rows
from overture.store.codec import version_to_register, workflow_digest
from overture.store.postgres_base import PostgresBase
from overture.store.postgres_tx import Q, Tx, when
from overture.store.records import DEFAULT_TENANT, WorkflowRecord


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


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])

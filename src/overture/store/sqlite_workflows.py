"""The embedded store's workflow catalogue: versions registered, looked up, disabled."""

from __future__ import annotations

import sqlite3

from overture import serde
from overture.core.model import Workflow
from overture.errors import Conflict, NotFound
from overture.store import rows
from overture.store.codec import version_to_register, workflow_digest
from overture.store.records import DEFAULT_TENANT, WorkflowRecord
from overture.store.sqlite_base import Q, SQLiteBase, when
from overture.store.sqlite_writer import Tx


class SQLiteWorkflows(SQLiteBase):
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
            if version is None:
                row = conn.execute(Q["workflow_latest"], (tenant, name)).fetchone()
            else:
                row = conn.execute(Q["workflow_version"], (tenant, name, version)).fetchone()
            if row is None:
                raise NotFound("workflow", name if version is None else f"{name} v{version}")
            return rows.workflow_record(row, when)

        return await self._read(read)

    async def list_workflows(self, *, tenant: str = DEFAULT_TENANT) -> list[WorkflowRecord]:
        def read(conn: sqlite3.Connection) -> list[WorkflowRecord]:
            found = conn.execute(Q["workflow_list"], (tenant,)).fetchall()
            return [rows.workflow_record(row, when) for row in found]

        return await self._read(read)

    async def workflow_versions(
        self, name: str, *, tenant: str = DEFAULT_TENANT
    ) -> list[WorkflowRecord]:
        def read(conn: sqlite3.Connection) -> list[WorkflowRecord]:
            found = conn.execute(Q["workflow_versions"], (tenant, name)).fetchall()
            if not found:
                raise NotFound("workflow", name)
            return [rows.workflow_record(row, when) for row in found]

        return await self._read(read)

    async def set_workflow_disabled(
        self, name: str, disabled: bool, *, tenant: str = DEFAULT_TENANT
    ) -> None:
        def write(tx: Tx) -> None:
            if tx.conn.execute(Q["workflow_disable"], (disabled, tenant, name)).rowcount == 0:
                raise NotFound("workflow", name)

        await self._write(write)

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

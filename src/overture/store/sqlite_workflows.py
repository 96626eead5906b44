"""The embedded store's workflow catalogue: versions registered, looked up, disabled, and
started (a run starts from the catalogue, inside any transaction that needs one)."""

from __future__ import annotations

import sqlite3
from collections import deque
from typing import Any

from overture import serde
from overture.core import children
from overture.core.advance import Transition, advance
from overture.core.children import ChildStart
from overture.core.inputs import prepare_input
from overture.core.model import Workflow
from overture.errors import Conflict, NotFound
from overture.ids import new_run_id
from overture.store import facts, rows
from overture.store import trigger_rows as tr
from overture.store.codec import micros, run_id_taken, version_to_register, workflow_digest
from overture.store.records import (
    DEFAULT_TENANT,
    RunRecord,
    ScheduleRecord,
    ScheduleSpec,
    StartRun,
    WorkflowRecord,
)
from overture.store.sqlite_base import Q, SQLiteBase, load_run, when
from overture.store.sqlite_writer import Tx
from overture.store.triggers import schedule_params, schedule_taken
from overture.triggers.schedules import workflow_schedules


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
                if latest is not None and decided.version == latest[2]:
                    # The same definition again (``serve`` registers its files at every start):
                    # its schedules may predate the cron triggers (databases before 003).
                    self._sync_schedules(tx, tenant, decided.workflow)
                return decided
            key = (tenant, decided.name, decided.version)
            definition = serde.dumps_text(decided.to_data())
            params = (*key, workflow_digest(decided), definition, tx.now)
            tx.conn.execute(Q["workflow_insert"], params)
            if latest is None or decided.version > latest[2]:
                self._sync_schedules(tx, tenant, decided)
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

    def _start(self, tx: Tx, request: StartRun) -> tuple[RunRecord, bool]:
        """Start a run inside ``tx`` (with the child runs its first steps start);
        ``(existing run, False)`` for a repeated key; a key in the engine's namespace is refused
        (``children.check_key``: child runs come through ``_insert_run``)."""
        children.check_key(request.idempotency_key)
        record, first = self._insert_run(tx, request)
        if first is None:
            return record, False
        if not children.concerns(first):
            return record, True
        self._follow(tx, [(first, 0)])
        return load_run(tx.conn, record.id, self.codec), True

    def _insert_run(self, tx: Tx, request: StartRun) -> tuple[RunRecord, Transition | None]:
        """A new run and its first transition, written; ``(existing run, None)`` for a repeated
        key. Refusals (``NotFound``, ``Conflict``, ``InputInvalid``) come before any write."""
        if request.idempotency_key is not None:
            existing = tx.one("run_by_key", request.tenant, request.idempotency_key)
            if existing is not None:
                return load_run(tx.conn, existing[0], self.codec), None
        workflow = self._startable(tx, request.tenant, request.workflow, request.version)
        data = prepare_input(workflow.name, workflow.input, request.input)
        if request.run_id is not None and tx.one("run_exists", request.run_id):
            raise run_id_taken(request.run_id)
        run_id = request.run_id or new_run_id()
        started = facts.run_started(request, workflow, data, run_id, when(tx.now))
        tx.conn.execute(
            Q["run_insert"],
            (
                run_id,
                request.tenant,
                workflow.name,
                workflow.version,
                self.codec.encode_value(data),
                request.priority,
                request.correlation_id,
                request.idempotency_key,
                request.parent_run_id,
                tx.now,
                tx.now,
                None if request.run_at is None else micros(request.run_at),
            ),
        )
        first = advance(workflow, None, [started], when(tx.now))
        self._persist(tx, run_id, 0, first)
        return load_run(tx.conn, run_id, self.codec), first

    def _follow(self, tx: Tx, transitions: list[tuple[Transition, int]]) -> None:
        """Start, end and cancel the child runs these transitions concern, and whatever that
        causes in turn, in this transaction (``overture.core.children`` says what)."""
        at = when(tx.now)
        queue = deque(transitions)
        while queue:
            t, depth = queue.popleft()
            for start in children.starts(t):
                queue.extend(self._start_child(tx, start, depth))
            for child_id, reason in t.orphans:
                stopped = self._advance_run(tx, child_id, children.stopping(reason, at))
                queue.append((stopped, depth + 1))
            if (parent := children.parent_of(t)) is not None:
                parent_id, step_id = parent
                ending = children.ending(step_id, children.child_of(t.state), at)
                queue.append((self._advance_run(tx, parent_id, ending), max(depth - 1, 0)))

    def _start_child(self, tx: Tx, start: ChildStart, depth: int) -> list[tuple[Transition, int]]:
        """Start a ``workflow`` step's child run and record it on the parent, unless the parent
        no longer waits for it (an earlier start of the same transition failed the run)."""
        parent_id = start.parent.run_id
        head = tx.one("run_head", parent_id)
        if head is None or not children.still_due(start, self._state(tx.conn, parent_id, head[3])):
            return []
        at = when(tx.now)
        follow: list[tuple[Transition, int]] = []
        error = children.cannot_start(start, depth)
        if error is None:
            try:
                record, first = self._insert_run(tx, facts.child_request(start))
            except children.REFUSED as problem:
                error = children.refused(start, problem)
            else:
                events = children.started(start, facts.child_run(record), at)
                if first is not None:
                    follow.append((first, depth + 1))
        if error is not None:
            events = children.not_started(start, error, at)
        parent = self._advance_run(tx, parent_id, facts.given(*events))
        return [*follow, (parent, depth)]

    def _sync_schedules(self, tx: Tx, tenant: str, workflow: Workflow) -> None:
        """Keep the schedules of a workflow's ``on.cron`` in step with its latest version."""
        rows_ = tx.conn.execute(Q["schedules_of_workflow"], (tenant, workflow.name))
        old = {r.id: r for r in (tr.schedule_record(row, when) for row in rows_)}
        for spec in workflow_schedules(workflow, tenant):
            previous = old.pop(spec.id, None)
            params = schedule_columns(tx, spec, previous)
            if previous is not None:
                tx.conn.execute(Q["schedule_update"], params)
            elif tx.conn.execute(Q["schedule_insert"], params).fetchone() is None:
                raise schedule_taken(spec.id)
        for gone in old:
            tx.conn.execute(Q["schedule_delete"], (tenant, gone))
            tx.conn.execute(Q["ticks_delete"], (tenant, gone))


def schedule_columns(
    tx: Tx, spec: ScheduleSpec, previous: ScheduleRecord | None, origin: str = "workflow"
) -> dict[str, Any]:
    """``schedule_params`` as this dialect stores them (times in microseconds), with ``now``."""
    params = schedule_params(spec, previous, when(tx.now), origin)
    at = params["next_fire_at"]
    return {**params, "next_fire_at": None if at is None else micros(at), "now": tx.now}

"""The embedded store's cron schedules: made, paused, and fired (one row per tick)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from overture.core.inputs import prepare_input
from overture.errors import NotFound
from overture.store import trigger_rows as tr
from overture.store.codec import micros
from overture.store.records import DEFAULT_TENANT, ScheduleRecord, ScheduleSpec, Tick
from overture.store.sqlite_base import Q, when
from overture.store.sqlite_workflows import SQLiteWorkflows, schedule_columns
from overture.store.sqlite_writer import Tx
from overture.store.triggers import (
    ROUTE_ERRORS,
    cannot_plan,
    fired_tick,
    route_error,
    schedule_from_workflow,
    schedule_taken,
    tick_request,
)
from overture.triggers.schedules import check_schedule, first_tick, plan


class SQLiteSchedules(SQLiteWorkflows):
    async def create_schedule(self, spec: ScheduleSpec) -> ScheduleRecord:
        check_schedule(spec)

        def write(tx: Tx) -> ScheduleRecord:
            head = tx.one("workflow_latest_head", spec.tenant, spec.workflow)
            if head is None:
                raise NotFound("workflow", spec.workflow)
            workflow = self._workflow(tx.conn, spec.tenant, spec.workflow, head[0])
            prepare_input(workflow.name, workflow.input, spec.input)  # each tick's run's input
            params = schedule_columns(tx, spec, None, origin="api")
            row = tx.conn.execute(Q["schedule_insert"], params).fetchone()
            if row is None:
                raise schedule_taken(spec.id)
            return tr.schedule_record(row, when)

        return await self._write(write)

    async def get_schedule(
        self, schedule_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> ScheduleRecord:
        return await self._read(lambda conn: _schedule(conn, tenant, schedule_id))

    async def list_schedules(self, *, tenant: str = DEFAULT_TENANT) -> list[ScheduleRecord]:
        def read(conn: sqlite3.Connection) -> list[ScheduleRecord]:
            found = conn.execute(Q["schedule_list"], (tenant,)).fetchall()
            return [tr.schedule_record(row, when) for row in found]

        return await self._read(read)

    async def schedule_ticks(
        self, schedule_id: str, *, tenant: str = DEFAULT_TENANT, limit: int = 20
    ) -> list[Tick]:
        def read(conn: sqlite3.Connection) -> list[Tick]:
            _schedule(conn, tenant, schedule_id)
            found = conn.execute(Q["tick_list"], (tenant, schedule_id, limit)).fetchall()
            return [tr.tick(row, when) for row in found]

        return await self._read(read)

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, *, tenant: str = DEFAULT_TENANT
    ) -> ScheduleRecord:
        def write(tx: Tx) -> ScheduleRecord:
            current = _schedule(tx.conn, tenant, schedule_id)
            if current.paused == paused:
                return current
            # Resumed, a schedule fires from the next tick: ticks while paused never fire.
            at = None if paused else first_tick(current.cron, current.timezone, when(tx.now))
            params = {
                "tenant": tenant,
                "id": schedule_id,
                "paused": paused,
                "next_fire_at": None if at is None else micros(at),
                "now": tx.now,
            }
            return tr.schedule_record(tx.conn.execute(Q["schedule_pause"], params).fetchone(), when)

        return await self._write(write)

    async def delete_schedule(self, schedule_id: str, *, tenant: str = DEFAULT_TENANT) -> None:
        def write(tx: Tx) -> None:
            if _schedule(tx.conn, tenant, schedule_id).origin == "workflow":
                raise schedule_from_workflow(schedule_id)
            tx.conn.execute(Q["schedule_delete"], (tenant, schedule_id))
            tx.conn.execute(Q["ticks_delete"], (tenant, schedule_id))

        await self._write(write)

    async def fire_schedules(self, *, now: datetime | None = None, limit: int = 100) -> list[Tick]:
        at_most = micros(now or datetime.now(UTC))
        if not await self._read(
            lambda c: c.execute(Q["schedules_any_due"], (at_most,)).fetchone()[0]
        ):
            return []

        def write(tx: Tx) -> list[Tick]:
            at = now or when(tx.now)
            due = tx.conn.execute(Q["schedules_due"], (micros(at), limit)).fetchall()
            fired: list[Tick] = []
            for schedule in (tr.schedule_record(row, when) for row in due):
                fired += self._fire(tx, schedule, at)
            return fired

        return await self._write(write)

    def _fire(self, tx: Tx, schedule: ScheduleRecord, now: datetime) -> list[Tick]:
        """Fire a due schedule's ticks (each at most once, ever) and move it to its next."""
        key, due = (schedule.tenant, schedule.id), schedule.next_fire_at
        if due is None:  # only paused schedules have none, and those are not due
            return []
        try:
            ticks = plan(schedule.cron, schedule.timezone, due, now, schedule.catch_up)
        except ValueError as error:  # a time zone this machine's tzdata does not know
            cannot_plan(schedule, error)
            return []
        fired = []
        for tick in ticks.fire:
            if tx.one("tick_insert", *key, micros(tick), tx.now) is None:
                continue  # another scheduler fired it
            run_id, problem = None, None
            try:
                run_id = self._start(tx, tick_request(schedule, tick))[0].id
            except ROUTE_ERRORS as failure:
                problem = route_error(failure)
            tx.conn.execute(Q["tick_result"], (run_id, problem, *key, micros(tick)))
            fired.append(fired_tick(schedule, tick, when(tx.now), run_id, problem))
        tx.conn.execute(Q["schedule_advance"], (micros(ticks.next_fire_at), *key))
        return fired

    async def next_schedule_at(self) -> datetime | None:
        def read(conn: sqlite3.Connection) -> datetime | None:
            at = conn.execute(Q["schedule_next_due"]).fetchone()[0]
            return None if at is None else when(at)

        return await self._read(read)


def _schedule(conn: sqlite3.Connection, tenant: str, schedule_id: str) -> ScheduleRecord:
    row = conn.execute(Q["schedule_get"], (tenant, schedule_id)).fetchone()
    if row is None:
        raise NotFound("schedule", schedule_id)
    return tr.schedule_record(row, when)

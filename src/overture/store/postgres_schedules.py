"""The PostgreSQL store's cron schedules: made, paused, and fired (one row per tick)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from overture.core.inputs import prepare_input
from overture.errors import NotFound
from overture.store import trigger_rows as tr
from overture.store.postgres_tx import Q, Tx, when
from overture.store.postgres_workflows import PostgresWorkflows
from overture.store.records import DEFAULT_TENANT, ScheduleRecord, ScheduleSpec, Tick
from overture.store.triggers import (
    ROUTE_ERRORS,
    cannot_plan,
    fired_tick,
    route_error,
    schedule_from_workflow,
    schedule_params,
    schedule_taken,
    tick_request,
)
from overture.triggers.schedules import check_schedule, first_tick, plan


class PostgresSchedules(PostgresWorkflows):
    async def create_schedule(self, spec: ScheduleSpec) -> ScheduleRecord:
        check_schedule(spec)

        async def write(tx: Tx) -> ScheduleRecord:
            head = await tx.conn.fetchrow(
                Q["workflow_head_for_start"], spec.tenant, spec.workflow, None
            )
            if head is None:
                raise NotFound("workflow", spec.workflow)
            workflow = await self._workflow(tx, spec.tenant, spec.workflow, head[0])
            prepare_input(workflow.name, workflow.input, spec.input)  # each tick's run's input
            params = schedule_params(spec, None, await tx.clock(), origin="api")
            row = await tx.conn.fetchrow(Q["schedule_insert"], *params.values())
            if row is None:
                raise schedule_taken(spec.id)
            return tr.schedule_record(row, when)

        return await self._write(write)

    async def get_schedule(
        self, schedule_id: str, *, tenant: str = DEFAULT_TENANT
    ) -> ScheduleRecord:
        return await _schedule(self._need_pool(), tenant, schedule_id)

    async def list_schedules(self, *, tenant: str = DEFAULT_TENANT) -> list[ScheduleRecord]:
        found = await self._need_pool().fetch(Q["schedule_list"], tenant)
        return [tr.schedule_record(row, when) for row in found]

    async def schedule_ticks(
        self, schedule_id: str, *, tenant: str = DEFAULT_TENANT, limit: int = 20
    ) -> list[Tick]:
        pool = self._need_pool()
        await _schedule(pool, tenant, schedule_id)
        found = await pool.fetch(Q["tick_list"], tenant, schedule_id, limit)
        return [tr.tick(row, when) for row in found]

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, *, tenant: str = DEFAULT_TENANT
    ) -> ScheduleRecord:
        async def write(tx: Tx) -> ScheduleRecord:
            current = await _schedule(tx.conn, tenant, schedule_id, lock=True)
            if current.paused == paused:
                return current
            # Resumed, a schedule fires from the next tick: ticks while paused never fire.
            now = await tx.clock()
            at = None if paused else first_tick(current.cron, current.timezone, now)
            row = await tx.conn.fetchrow(Q["schedule_pause"], tenant, schedule_id, paused, at)
            return tr.schedule_record(row, when)

        return await self._write(write)

    async def delete_schedule(self, schedule_id: str, *, tenant: str = DEFAULT_TENANT) -> None:
        async def write(tx: Tx) -> None:
            if (await _schedule(tx.conn, tenant, schedule_id, lock=True)).origin == "workflow":
                raise schedule_from_workflow(schedule_id)
            await tx.conn.execute(Q["schedule_delete"], tenant, schedule_id)
            await tx.conn.execute(Q["ticks_delete"], tenant, schedule_id)

        await self._write(write)

    async def fire_schedules(self, *, now: datetime | None = None, limit: int = 100) -> list[Tick]:
        if not await self._need_pool().fetchval(Q["schedules_any_due"], now):
            return []

        async def write(tx: Tx) -> list[Tick]:
            at = now or await tx.clock()
            due = await tx.conn.fetch(Q["schedules_due"], at, limit)
            fired: list[Tick] = []
            for schedule in (tr.schedule_record(row, when) for row in due):
                fired += await self._fire(tx, schedule, at)
            return fired

        return await self._write(write)

    async def _fire(self, tx: Tx, schedule: ScheduleRecord, now: datetime) -> list[Tick]:
        """Fire a due schedule's ticks (each at most once, ever) and move it to its next."""
        key, due = (schedule.tenant, schedule.id), schedule.next_fire_at
        if due is None:  # only paused schedules have none, and those are not due
            return []
        try:
            ticks = plan(schedule.cron, schedule.timezone, due, now, schedule.catch_up)
        except ValueError as error:  # a time zone this machine's tzdata does not know
            cannot_plan(schedule, error)
            return []
        fired_at = await tx.clock()
        fired = []
        for tick in ticks.fire:
            if await tx.conn.fetchval(Q["tick_insert"], *key, tick, fired_at) is None:
                continue  # another scheduler fired it
            run_id, problem = None, None
            try:
                run_id = (await self._start(tx, tick_request(schedule, tick)))[0].id
            except ROUTE_ERRORS as failure:
                problem = route_error(failure)
            await tx.conn.execute(Q["tick_result"], run_id, problem, *key, tick)
            fired.append(fired_tick(schedule, tick, fired_at, run_id, problem))
        await tx.conn.execute(Q["schedule_advance"], ticks.next_fire_at, *key)
        return fired

    async def next_schedule_at(self) -> datetime | None:
        at = await self._need_pool().fetchval(Q["schedule_next_due"])
        return None if at is None else when(at)


async def _schedule(
    conn: Any, tenant: str, schedule_id: str, *, lock: bool = False
) -> ScheduleRecord:
    query = Q["schedule_get_locked" if lock else "schedule_get"]
    row = await conn.fetchrow(query, tenant, schedule_id)
    if row is None:
        raise NotFound("schedule", schedule_id)
    return tr.schedule_record(row, when)

"""Events and schedules for the CLI, on the database (the server's are ``RemoteClient``'s).

Answers are the API's JSON, built with ``api.trigger_views``, so a command renders one shape
whichever it talks to (see ``cli.backends``).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from overture.api import runs
from overture.api import trigger_views as views
from overture.api.routes.events import check_repeat, new_event
from overture.api.trigger_schemas import CreateScheduleIn, SendEventIn
from overture.cli.backends import as_http_json as _json
from overture.errors import RequestInvalid
from overture.serde import JSON
from overture.store.base import Store
from overture.store.records import ScheduleSpec

M = TypeVar("M", bound=BaseModel)


class TriggerBackend(Protocol):
    """The operations the ``events`` and ``schedules`` commands use."""

    async def send_event(
        self,
        type: str,
        payload: JSON = None,
        *,
        id: str | None = None,
        user_id: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
    ) -> dict[str, Any]: ...

    async def get_event(self, event_id: str) -> dict[str, Any]: ...

    async def list_events(
        self,
        *,
        type: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]: ...

    async def create_schedule(
        self,
        id: str,
        workflow: str,
        cron: str,
        *,
        timezone: str = "UTC",
        input: JSON = None,
        catch_up: int = 0,
        paused: bool = False,
    ) -> dict[str, Any]: ...

    async def list_schedules(self) -> dict[str, Any]: ...

    async def get_schedule(self, schedule_id: str) -> dict[str, Any]: ...

    async def pause_schedule(self, schedule_id: str) -> dict[str, Any]: ...

    async def resume_schedule(self, schedule_id: str) -> dict[str, Any]: ...

    async def delete_schedule(self, schedule_id: str) -> None: ...


def _checked(model: type[M], **fields: Any) -> M:
    """``fields`` as the API would take them: the same rules, on the database too."""
    try:
        return model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the request"
        raise RequestInvalid(f"{where}: {first['msg']}") from None


class DatabaseTriggers:
    """Events and schedules straight on a database, as one tenant."""

    def __init__(self, store: Store, tenant: str) -> None:
        self.store = store
        self.tenant = tenant

    async def send_event(
        self,
        type: str,
        payload: JSON = None,
        *,
        id: str | None = None,
        user_id: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        body = _checked(
            SendEventIn,
            type=type,
            payload=payload,
            id=id,
            user_id=user_id,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            source=source,
        )
        record, created = await self.store.record_event(new_event(body, self.tenant))
        if not created:
            check_repeat(body, record)
        return _json({"event": views.event(record), "created": created})

    async def get_event(self, event_id: str) -> dict[str, Any]:
        return _json(views.event(await self.store.get_event(event_id, tenant=self.tenant)))

    async def list_events(
        self,
        *,
        type: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        page = await self.store.list_events(
            tenant=self.tenant, type=type, cursor=cursor, limit=limit or 50
        )
        items = [views.event(e) for e in page.items]
        return _json({"items": items, "next_cursor": page.next_cursor})

    async def create_schedule(
        self,
        id: str,
        workflow: str,
        cron: str,
        *,
        timezone: str = "UTC",
        input: JSON = None,
        catch_up: int = 0,
        paused: bool = False,
    ) -> dict[str, Any]:
        body = _checked(
            CreateScheduleIn,
            id=id,
            workflow=workflow,
            cron=cron,
            timezone=timezone,
            input=input,
            catch_up=catch_up,
            paused=paused,
        )
        spec = ScheduleSpec(tenant=self.tenant, **body.model_dump())
        return _json(views.schedule(await self.store.create_schedule(spec)))

    async def list_schedules(self) -> dict[str, Any]:
        found = await self.store.list_schedules(tenant=self.tenant)
        return _json({"items": [views.schedule(s) for s in found]})

    async def get_schedule(self, schedule_id: str) -> dict[str, Any]:
        return _json(await runs.schedule_detail(self.store, schedule_id, self.tenant))

    async def pause_schedule(self, schedule_id: str) -> dict[str, Any]:
        record = await self.store.set_schedule_paused(schedule_id, True, tenant=self.tenant)
        return _json(views.schedule(record))

    async def resume_schedule(self, schedule_id: str) -> dict[str, Any]:
        record = await self.store.set_schedule_paused(schedule_id, False, tenant=self.tenant)
        return _json(views.schedule(record))

    async def delete_schedule(self, schedule_id: str) -> None:
        await self.store.delete_schedule(schedule_id, tenant=self.tenant)

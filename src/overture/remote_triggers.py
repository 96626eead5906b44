"""The trigger operations of ``overture.RemoteClient``: events, schedules, webhook sources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from overture.remote_parts import path_part, present
from overture.serde import JSON


class _Caller(Protocol):
    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...


class TriggerOperations:
    """Mixed into ``RemoteClient``."""

    # --- events ----------------------------------------------------------------------------
    async def send_event(
        self: _Caller,
        type: str,
        payload: JSON = None,
        *,
        id: str | None = None,
        user_id: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        """Record an event and start a run of every workflow listening for ``type``: the event
        with its ``routes`` (one per listening workflow: the run it started, or why not).
        An ``id`` (or ``idempotency_key``) sent before starts nothing and answers ``created:
        false`` with the first event. The runs join the trace of ``traceparent``."""
        body = present(
            type=type,
            payload=payload,
            id=id,
            user_id=user_id,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            source=source,
        )
        headers = {"traceparent": traceparent} if traceparent else None
        return await self._call("POST", "/v1/events", body=body, headers=headers)

    async def get_event(self: _Caller, event_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/events/{path_part(event_id)}")

    async def list_events(
        self: _Caller,
        *,
        type: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """A page of events, newest first: ``{items, next_cursor}``."""
        params = present(type=type, cursor=cursor, limit=limit)
        return await self._call("GET", "/v1/events", params=params)

    # --- schedules -------------------------------------------------------------------------
    async def create_schedule(
        self: _Caller,
        id: str,
        workflow: str,
        cron: str,
        *,
        timezone: str = "UTC",
        input: JSON = None,
        catch_up: int = 0,
        paused: bool = False,
    ) -> dict[str, Any]:
        """Run ``workflow`` at each tick of ``cron`` read in ``timezone``."""
        body = present(
            id=id,
            workflow=workflow,
            cron=cron,
            timezone=timezone,
            input=input,
            catch_up=catch_up,
            paused=paused,
        )
        return await self._call("POST", "/v1/schedules", body=body)

    async def list_schedules(self: _Caller) -> dict[str, Any]:
        """``{items}``, each with its ``next_fire_at``."""
        return await self._call("GET", "/v1/schedules")

    async def get_schedule(self: _Caller, schedule_id: str) -> dict[str, Any]:
        """A schedule with its last ticks (``ticks``: the runs they started)."""
        return await self._call("GET", f"/v1/schedules/{path_part(schedule_id)}")

    async def pause_schedule(self: _Caller, schedule_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/schedules/{path_part(schedule_id)}/pause")

    async def resume_schedule(self: _Caller, schedule_id: str) -> dict[str, Any]:
        """Fire again from the next tick (ticks while paused never fire)."""
        return await self._call("POST", f"/v1/schedules/{path_part(schedule_id)}/resume")

    async def delete_schedule(self: _Caller, schedule_id: str) -> None:
        await self._call("DELETE", f"/v1/schedules/{path_part(schedule_id)}")

    # --- webhook sources (admin) -----------------------------------------------------------
    async def create_webhook_source(
        self: _Caller,
        name: str,
        scheme: str,
        secrets: Sequence[str],
        *,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Accept webhooks at ``/v1/webhooks/{name}``, verified by ``scheme``."""
        body: dict[str, Any] = {"name": name, "scheme": scheme, "secrets": list(secrets)}
        if options:
            body["options"] = dict(options)
        return await self._call("POST", "/v1/webhook-sources", body=body)

    async def list_webhook_sources(self: _Caller) -> dict[str, Any]:
        """``{items}``; secrets are never shown, only how many are active."""
        return await self._call("GET", "/v1/webhook-sources")

    async def get_webhook_source(self: _Caller, name: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/webhook-sources/{path_part(name)}")

    async def rotate_webhook_secret(
        self: _Caller, name: str, secret: str, *, retire_after: float | str | None = None
    ) -> dict[str, Any]:
        """Make ``secret`` the source's first; the others stay valid for ``retire_after``
        (seconds or ``'24h'``; the server's default when None, 0 retires them at once)."""
        body = present(secret=secret, retire_after=retire_after)
        return await self._call("POST", f"/v1/webhook-sources/{path_part(name)}/rotate", body=body)

    async def delete_webhook_source(self: _Caller, name: str) -> None:
        await self._call("DELETE", f"/v1/webhook-sources/{path_part(name)}")

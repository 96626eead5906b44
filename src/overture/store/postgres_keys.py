"""The PostgreSQL store's API keys (see ``store.keys`` for what is cached and for how long)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from overture import serde
from overture.apikeys import parse_scopes
from overture.errors import NotFound
from overture.store import rows
from overture.store.codec import api_key_taken
from overture.store.keys import USE_RECORDED_EVERY
from overture.store.postgres_base import PostgresBase
from overture.store.postgres_tx import Q, when
from overture.store.records import ApiKeyRecord


class PostgresKeys(PostgresBase):
    # Each method is one statement, so each runs on the pool in a transaction of its own.

    async def create_api_key(
        self, *, key_id: str, tenant: str, name: str, secret_hash: str, scopes: Sequence[str]
    ) -> ApiKeyRecord:
        scopes_text = serde.dumps_text(list(parse_scopes(scopes)))
        row = await self._need_pool().fetchrow(
            Q["api_key_insert"], key_id, tenant, name, secret_hash, scopes_text
        )
        if row is None:
            raise api_key_taken(key_id)
        return rows.api_key_record(row, when)

    async def api_key(self, secret_hash: str) -> ApiKeyRecord | None:
        return await self._keys.find(secret_hash, self._active_key, self._key_used)

    async def _active_key(self, secret_hash: str) -> ApiKeyRecord | None:
        row = await self._need_pool().fetchrow(Q["api_key_active"], secret_hash)
        return None if row is None else rows.api_key_record(row, when)

    async def _key_used(self, key_id: str) -> datetime | None:
        every = USE_RECORDED_EVERY.total_seconds()
        used_at = await self._need_pool().fetchval(Q["api_key_used"], key_id, every)
        return None if used_at is None else when(used_at)

    async def list_api_keys(
        self, *, tenant: str | None = None, include_revoked: bool = False
    ) -> list[ApiKeyRecord]:
        found = await self._need_pool().fetch(Q["api_key_list"], tenant, include_revoked)
        return [rows.api_key_record(row, when) for row in found]

    async def revoke_api_key(self, key_id: str, *, tenant: str | None = None) -> ApiKeyRecord:
        row = await self._need_pool().fetchrow(Q["api_key_revoke"], key_id, tenant)
        if row is None:
            raise NotFound("API key", key_id)
        self._keys.revoked(key_id)
        return rows.api_key_record(row, when)

    async def has_api_keys(self) -> bool:
        return bool(await self._need_pool().fetchval(Q["api_keys_any_active"]))

"""The embedded store's API keys (see ``store.keys`` for what is cached and for how long)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from overture import serde
from overture.apikeys import parse_scopes
from overture.errors import NotFound
from overture.store import rows
from overture.store.codec import MICROSECOND, api_key_taken
from overture.store.keys import USE_RECORDED_EVERY
from overture.store.records import ApiKeyRecord
from overture.store.sqlite_base import Q, SQLiteBase, when
from overture.store.sqlite_writer import Tx


class SQLiteKeys(SQLiteBase):
    async def create_api_key(
        self, *, key_id: str, tenant: str, name: str, secret_hash: str, scopes: Sequence[str]
    ) -> ApiKeyRecord:
        scopes_text = serde.dumps_text(list(parse_scopes(scopes)))

        def write(tx: Tx) -> ApiKeyRecord:
            row = tx.one("api_key_insert", key_id, tenant, name, secret_hash, scopes_text, tx.now)
            if row is None:
                raise api_key_taken(key_id)
            return rows.api_key_record(row, when)

        return await self._write(write)

    async def api_key(self, secret_hash: str) -> ApiKeyRecord | None:
        return await self._keys.find(secret_hash, self._active_key, self._key_used)

    async def _active_key(self, secret_hash: str) -> ApiKeyRecord | None:
        def read(conn: sqlite3.Connection) -> ApiKeyRecord | None:
            row = conn.execute(Q["api_key_active"], (secret_hash,)).fetchone()
            return None if row is None else rows.api_key_record(row, when)

        return await self._read(read)

    async def _key_used(self, key_id: str) -> datetime | None:
        def write(tx: Tx) -> datetime | None:
            params = {"id": key_id, "now": tx.now, "every": USE_RECORDED_EVERY // MICROSECOND}
            row = tx.conn.execute(Q["api_key_used"], params).fetchone()
            return None if row is None else when(row[0])

        return await self._write(write)

    async def list_api_keys(
        self, *, tenant: str | None = None, include_revoked: bool = False
    ) -> list[ApiKeyRecord]:
        params = {"tenant": tenant, "all": include_revoked}

        def read(conn: sqlite3.Connection) -> list[ApiKeyRecord]:
            return [
                rows.api_key_record(row, when) for row in conn.execute(Q["api_key_list"], params)
            ]

        return await self._read(read)

    async def revoke_api_key(self, key_id: str, *, tenant: str | None = None) -> ApiKeyRecord:
        def write(tx: Tx) -> ApiKeyRecord:
            params = {"id": key_id, "tenant": tenant, "now": tx.now}
            row = tx.conn.execute(Q["api_key_revoke"], params).fetchone()
            if row is None:
                raise NotFound("API key", key_id)
            return rows.api_key_record(row, when)

        revoked = await self._write(write)
        self._keys.revoked(key_id)
        return revoked

    async def has_api_keys(self) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute(Q["api_keys_any_active"]).fetchone()[0])

        return await self._read(read)

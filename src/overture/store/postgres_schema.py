"""The scale-out store's schema: migrations under an advisory lock, so that any number of
processes starting at once apply each exactly once."""

from __future__ import annotations

from typing import Any

from overture.store.postgres_tx import Q
from overture.store.records import SchemaStatus
from overture.store.sqlfiles import migrations, schema_status


async def migrate(conn: Any) -> SchemaStatus:
    """Apply pending migrations, each in its own transaction, and return the new status."""
    current = await status(conn)
    if not current.pending:
        return current
    for migration in migrations("postgres"):
        async with conn.transaction():
            await conn.execute(Q["migrations_lock"])
            if not await conn.fetchval(Q["migrations_table_exists"]):
                await conn.execute(Q["migrations_table"])
            if migration.version in await _applied(conn):
                continue  # another process applied it first
            await conn.execute(migration.sql)
            await conn.execute(Q["migration_record"], migration.version, migration.name)
    return await status(conn)


async def status(conn: Any) -> SchemaStatus:
    return schema_status("postgres", await _applied(conn))


async def _applied(conn: Any) -> set[int]:
    if not await conn.fetchval(Q["migrations_table_exists"]):
        return set()
    return {row[0] for row in await conn.fetch(Q["migrations_applied"])}

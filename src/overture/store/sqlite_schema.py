"""The embedded store's schema: numbered migrations applied once each, across processes."""

from __future__ import annotations

import sqlite3
import time

from overture.store.records import SchemaStatus
from overture.store.sqlfiles import migrations, schema_status
from overture.store.sqlite_writer import connect


def migrate(path: str, synchronous: str) -> SchemaStatus:
    """Apply pending migrations; safe while other processes do the same."""
    conn = connect(path, synchronous)
    try:
        for migration in migrations("sqlite"):
            if migration.version in _applied(conn):
                continue
            script = (
                "BEGIN IMMEDIATE;\n"
                f"{migration.sql}\n;"
                "INSERT INTO overture_migrations (version, name, applied_at) "
                f"VALUES ({migration.version}, '{migration.name}', {time.time_ns() // 1000});\n"
                "COMMIT;"
            )
            try:
                conn.executescript(script)
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if migration.version not in _applied(conn):
                    raise  # not another process applying it first: a real failure
        return _status(conn)
    finally:
        conn.close()


def status(path: str, synchronous: str) -> SchemaStatus:
    conn = connect(path, synchronous)
    try:
        return _status(conn)
    finally:
        conn.close()


def _applied(conn: sqlite3.Connection) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS overture_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    return {v for (v,) in conn.execute("SELECT version FROM overture_migrations")}


def _status(conn: sqlite3.Connection) -> SchemaStatus:
    return schema_status("sqlite", _applied(conn))

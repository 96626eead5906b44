"""Durable storage: one ``Store`` protocol, SQLite (embedded) and PostgreSQL (scale-out)."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

from overture.errors import DatabaseUrlInvalid
from overture.store.artifacts import DEFAULT_THRESHOLD, Artifacts
from overture.store.base import DEFAULT_LEASE, Store

DEFAULT_DATABASE_URL = "sqlite:///./overture.db"

__all__ = ["DEFAULT_DATABASE_URL", "DEFAULT_LEASE", "Store", "create_store", "redact_url"]


def create_store(
    url: str = DEFAULT_DATABASE_URL,
    *,
    artifacts_dir: str | None = None,
    artifact_threshold: int = DEFAULT_THRESHOLD,
    migrate: bool = True,
) -> Store:
    """The store a database URL names (not yet opened: ``await store.open()``).

    - ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``; ``?synchronous=NORMAL``
      trades the last commits before a power cut for speed (default ``FULL``).
    - ``postgresql://user@host:port/dbname`` (also ``postgres://``).

    ``migrate``: bring the schema up to date when opening (otherwise ``overture db migrate``).
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path or path == ":memory:":
            raise DatabaseUrlInvalid(
                f"{url!r} names no file: use sqlite:///./overture.db (relative) "
                "or sqlite:////var/lib/overture.db (absolute)"
            )
        synchronous = parse_qs(parts.query).get("synchronous", ["FULL"])[0]
        default_dir = os.path.splitext(os.path.abspath(path))[0] + "-artifacts"
        artifacts = Artifacts(artifacts_dir or default_dir, threshold=artifact_threshold)
        from overture.store.sqlite import SQLiteStore  # noqa: PLC0415 - each dialect on demand

        try:
            return SQLiteStore(path, synchronous=synchronous, artifacts=artifacts, migrate=migrate)
        except ValueError as error:
            raise DatabaseUrlInvalid(f"{redact_url(url)}: {error}") from None
    if parts.scheme in ("postgresql", "postgres"):
        default_dir = os.environ.get("OVERTURE_ARTIFACTS_DIR", "./overture-artifacts")
        artifacts = Artifacts(artifacts_dir or default_dir, threshold=artifact_threshold)
        from overture.store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(url, artifacts=artifacts, migrate=migrate)
    raise DatabaseUrlInvalid(
        f"unsupported database URL {redact_url(url)!r}: "
        "use sqlite:///path/to/file.db or postgresql://user@host/dbname"
    )


def redact_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()

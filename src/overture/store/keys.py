"""API key lookups that stay cheap when the API makes one per request, for both stores.

A key found by its hash is trusted for ``KEY_CACHE_SECONDS`` without asking the database again.
Revoking a key through a store forgets it in that store at once (and for good: a revoked key
never comes back); a key revoked by another process stops working here within
``KEY_CACHE_SECONDS``. Unknown keys are not cached: a key created elsewhere works at once.

A key's use is written to the database at most once per ``USE_RECORDED_EVERY`` per process,
and the write itself only changes a row whose ``last_used_at`` is older than that, so
``last_used_at`` moves at most once a minute whatever the number of processes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from overture.store.records import ApiKeyRecord

KEY_CACHE_SECONDS = 5.0
"""Seconds a key found in the database is trusted without asking it again."""
USE_RECORDED_EVERY = timedelta(minutes=1)
"""How often a key's use is written at most (``last_used_at`` is that far behind at worst)."""
MAX_CACHED = 10_000
"""Keys cached at most (a bound on memory: past it the cache starts afresh)."""

logger = logging.getLogger("overture.store")

Lookup = Callable[[str], Awaitable[ApiKeyRecord | None]]
"""The active key with this hash, from the database."""
RecordUse = Callable[[str], Awaitable[datetime | None]]
"""Set this key id's ``last_used_at`` unless it was set less than a minute ago; the new value,
or None if nothing was written."""


class KeyCache:
    """Positive key lookups of one store, and when it last recorded each key's use."""

    def __init__(self) -> None:
        self._found: dict[str, tuple[float, ApiKeyRecord]] = {}
        self._revoked: set[str] = set()
        self._use_recorded: dict[str, float] = {}

    async def find(
        self, secret_hash: str, lookup: Lookup, record_use: RecordUse
    ) -> ApiKeyRecord | None:
        """The active key with ``secret_hash``, from the cache or through ``lookup``."""
        now = time.monotonic()
        entry = self._found.get(secret_hash)
        if entry is None or now - entry[0] > KEY_CACHE_SECONDS or entry[1].id in self._revoked:
            self._found.pop(secret_hash, None)
            found = await lookup(secret_hash)
            if found is None or found.id in self._revoked:
                return None
            if len(self._found) >= MAX_CACHED:
                self._found.clear()
            entry = (now, found)
        fetched_at, key = entry
        last = self._use_recorded.get(key.id)
        if last is None or now - last >= USE_RECORDED_EVERY.total_seconds():
            self._use_recorded[key.id] = now
            used_at = await _record(record_use, key.id)
            if used_at is not None:
                key = dataclasses.replace(key, last_used_at=used_at)
        if key.id in self._revoked:  # revoked here while its use was being recorded
            return None
        self._found[secret_hash] = (fetched_at, key)
        return key

    def revoked(self, key_id: str) -> None:
        """Forget a key revoked through this store: from now on it is refused here."""
        self._revoked.add(key_id)
        for secret_hash, (_, key) in list(self._found.items()):
            if key.id == key_id:
                del self._found[secret_hash]


async def _record(record_use: RecordUse, key_id: str) -> datetime | None:
    """Record a use, best effort: bookkeeping that fails must not turn a valid key away."""
    try:
        return await record_use(key_id)
    except Exception:
        logger.warning("could not record the use of API key %s", key_id, exc_info=True)
        return None

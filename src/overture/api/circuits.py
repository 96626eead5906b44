"""Circuit breakers as the API shows them, shared by its routes and the CLI on a database."""

from __future__ import annotations

from typing import Any

from overture.errors import NotFound
from overture.store.base import Store
from overture.store.records import CircuitRecord


def circuit(record: CircuitRecord) -> dict[str, Any]:
    return {
        "key": record.key,
        "status": record.status,
        "failures": record.failures,
        "threshold": record.threshold,
        "window": record.window,
        "cooldown": record.cooldown,
        "opened_at": record.opened_at,
        "open_until": record.open_until,
        "updated_at": record.updated_at,
    }


async def circuit_named(store: Store, key: str, *, tenant: str) -> CircuitRecord:
    """The tenant's circuit ``key`` (``NotFound`` if there is none)."""
    for found in await store.list_circuits(tenant=tenant):
        if found.key == key:
            return found
    raise NotFound("circuit", key)

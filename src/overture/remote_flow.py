"""The flow-control operations of ``overture.RemoteClient``: circuit breakers."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from overture.remote_triggers import _Caller


def _key_path(key: str) -> str:
    """A circuit key in the path: ``/`` and ``:`` stay (the route takes the rest of the path)."""
    return quote(key, safe="/:@")


class FlowOperations:
    """Mixed into ``RemoteClient``."""

    async def list_circuits(self: _Caller) -> dict[str, Any]:
        """The tenant's circuit breakers: ``{"items": [{key, status, failures, ...}]}``."""
        return await self._call("GET", "/v1/circuits")

    async def get_circuit(self: _Caller, key: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/circuits/{_key_path(key)}")

    async def reset_circuit(self: _Caller, key: str) -> dict[str, Any]:
        """Close the circuit; the jobs it parked start at once."""
        return await self._call("POST", f"/v1/circuits/{_key_path(key)}/reset")

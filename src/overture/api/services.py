"""What the routes share: the store, the settings, and what the handlers in play are."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from overture.handlers.registry import BUILTIN_HANDLER_NAMES
from overture.settings import Settings
from overture.store.base import Store
from overture.store.records import WebhookSource
from overture.telemetry.metrics import Metrics

WORKER_HANDLERS_TTL = 5.0
"""Seconds the handler names of running workers are cached between lookups."""


@dataclass(kw_only=True)
class Services:
    store: Store
    settings: Settings
    auth_required: bool
    local_handlers: frozenset[str] = frozenset()
    """Handlers this process's own worker runs."""
    task_workflows: set[tuple[str, str]] = field(default_factory=set)
    """(tenant, name) of the task workflows registered by this process."""
    webhook_sources: Mapping[str, WebhookSource] = field(default_factory=dict, repr=False)
    """The config file's webhook sources, by name (``triggers.webhooks.config_sources``)."""
    metrics: Metrics | None = None
    """This process's Prometheus series (``GET /metrics``; webhook verifications)."""
    _worker_handlers: frozenset[str] = field(default=frozenset(), repr=False)
    _worker_handlers_at: float = field(default=float("-inf"), repr=False)

    async def known_handlers(self) -> frozenset[str]:
        """Handlers some worker can run: built-in, this process's, and running workers'."""
        now = time.monotonic()
        if now - self._worker_handlers_at > WORKER_HANDLERS_TTL:
            self._worker_handlers = await running_handlers(self.store)
            self._worker_handlers_at = now
        return BUILTIN_HANDLER_NAMES | self.local_handlers | self._worker_handlers


async def running_handlers(store: Store) -> frozenset[str]:
    """The handlers of the workers running now."""
    return frozenset(h for w in await store.list_workers() if w.running for h in w.handlers)


async def services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in a thread pool, per request.
    found: Services = request.app.state.services
    return found


Svc = Annotated[Services, Depends(services)]

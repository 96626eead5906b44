"""What a long-running command (``overture serve``, ``overture worker``) sets up first: its log,
then its error reports, which read the log's lines; then its metrics and traces, which observe
its store and its worker."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from overture.runtime.secrets import secrets_from_env
from overture.settings import Settings
from overture.store.base import Store
from overture.telemetry.logs import configure_logging
from overture.telemetry.metrics import Metrics
from overture.telemetry.sentry import configure_sentry
from overture.telemetry.tracing import configure_tracing

if TYPE_CHECKING:
    from overture.telemetry.spans import Tracing


def configure_process(settings: Settings, environ: Mapping[str, str] = os.environ) -> None:
    """Log as ``settings`` say, with ``environ``'s secrets masked, and report errors to Sentry
    when ``environ`` has a ``SENTRY_DSN``."""
    configure_logging(settings.log_level, settings.log_format, secrets=secrets_from_env(environ))
    configure_sentry(environ)


@dataclass(frozen=True)
class Instruments:
    """What a process observes itself with: its metrics, and its traces when configured."""

    metrics: Metrics
    tracing: Tracing | None

    def observe(self, store: Store) -> None:
        """Count (and trace) what ``store``'s transactions do in this process."""
        store.observers.append(self.metrics)
        if self.tracing is not None:
            store.observers.append(self.tracing)

    def close(self) -> None:
        """Export the spans still buffered (bounded: see ``Tracing.shutdown``)."""
        if self.tracing is not None:
            self.tracing.shutdown()


def instruments(worker_id: str, environ: Mapping[str, str] = os.environ) -> Instruments:
    """Metrics labelled with ``worker_id``, and traces if ``environ``'s ``OTEL_*`` ask."""
    return Instruments(Metrics(worker=worker_id), configure_tracing(environ))

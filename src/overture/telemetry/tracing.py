"""OpenTelemetry traces: a span per run and per step attempt, in the run's trace.

Off unless the standard ``OTEL_*`` variables ask for an exporter, and an optional extra
(``pip install 'overture[otel]'``): the core never imports the SDK (``spans`` does).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from overture.telemetry.spans import Tracing

logger = logging.getLogger("overture.tracing")

EXTRA_HINT = "pip install 'overture[otel]'"


def exporter_name(environ: Mapping[str, str]) -> str | None:
    """The span exporter the ``OTEL_*`` variables ask for (``otlp``, ``console``...), or None
    for no traces. ``OTEL_TRACES_EXPORTER`` may list several; the first is used."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = environ.get("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
    if named:
        return None if named == "none" else named
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    return "otlp" if endpoint else None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces to be exported."""
    return exporter_name(environ) is not None


def configure_tracing(environ: Mapping[str, str]) -> Tracing | None:
    """A ``Tracing`` exporting as the ``OTEL_*`` variables say, or None when they say nothing
    (or the ``otel`` extra is not installed: a warning says how to install it)."""
    if not wanted(environ):
        return None
    try:  # the SDK is an optional extra: import it only now
        spans = importlib.import_module("overture.telemetry.spans")
    except ImportError as missing:
        logger.warning(
            "OTEL_* variables ask for traces, but OpenTelemetry is not installed (%s): %s",
            missing.name,
            EXTRA_HINT,
        )
        return None
    tracing: Tracing | None = spans.exporting(environ, exporter_name(environ) or "otlp")
    return tracing

"""The OpenTelemetry side of ``tracing``: imported only when traces are wanted and the ``otel``
extra is installed.

A run outlives the process that started it, so its span cannot be held open: the run's span
context is chosen when it starts and kept in its ``RunStarted`` event (``tracecontext``), every
attempt's span is a child of that context wherever it runs, and the run's span itself is
exported when the run ends, by the process that records the end, with the run's start time and
the span id chosen at the start. An id generator that returns a given id for that one span is
what lets the SDK build a span whose id was decided in another process, maybe days before.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import Span, Status, StatusCode

from overture import __version__
from overture.core import events as ev
from overture.core.state import RUN_ENDINGS
from overture.telemetry.tracecontext import TraceParent, parse_traceparent

if TYPE_CHECKING:
    from overture.core.advance import Transition
    from overture.core.state import RunState
    from overture.store.records import ClaimedJob

logger = logging.getLogger("overture.tracing")

FLUSH_TIMEOUT = 5.0
_forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "overture_forced_span_ids", default=None
)


def exporting(environ: Mapping[str, str], name: str) -> Tracing | None:
    """A ``Tracing`` batching spans to the exporter ``name`` (``tracing.exporter_name``): OTLP
    over HTTP, configured by the ``OTEL_EXPORTER_OTLP_*`` variables, or ``console``."""
    exporter = _exporter(environ, name)
    if exporter is None:
        return None
    tracing = Tracing(BatchSpanProcessor(exporter))
    # Global, so spans a handler's own instrumentation makes nest under the attempt's span.
    trace.set_tracer_provider(tracing.provider)
    return tracing


def _exporter(environ: Mapping[str, str], name: str) -> SpanExporter | None:
    if name == "otlp":
        protocol = environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        )
        if protocol.strip().lower() not in ("", "http/protobuf"):
            logger.warning("OTLP protocol %r is not supported: use http/protobuf", protocol)
            return None
        return OTLPSpanExporter()  # endpoint, headers, timeout: from the OTEL_* variables
    if name == "console":
        return ConsoleSpanExporter()
    logger.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none)", name)
    return None


class Tracing:
    """Spans of runs and attempts, through one tracer provider; a store observer (it ends
    run spans when it sees runs end)."""

    def __init__(self, processor: SpanProcessor) -> None:
        resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "overture"}))
        # Sampling is decided once per trace, where it starts: by the caller's sampled flag, or
        # (a run with no caller) always on. A ratio sampler here would keep the attempts of a
        # run whose run span it dropped: their parent is remote and sampled.
        self.provider = TracerProvider(
            resource=resource, id_generator=_ChosenIds(), sampler=ParentBased(ALWAYS_ON)
        )
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("overture", __version__)

    @classmethod
    def exporting_to(cls, exporter: SpanExporter) -> Tracing:
        """Every span handed to ``exporter`` as it ends (tests, with an in-memory exporter)."""
        return cls(SimpleSpanProcessor(exporter))

    def shutdown(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Export what is buffered, waiting at most ``timeout`` seconds (an unreachable
        collector must not hold a stopping process past its grace period)."""
        if not self.provider.force_flush(timeout_millis=int(timeout * 1000)):
            logger.warning("spans not exported within %gs of stopping were dropped", timeout)

    # --- attempts --------------------------------------------------------------------------
    @contextlib.contextmanager
    def attempt(
        self, job: ClaimedJob, run: TraceParent | None, worker_id: str
    ) -> Iterator[tuple[TraceParent, Span]]:
        """The attempt's span, current inside (a child of ``run``, the run's span context): its
        context, for outbound calls, and the span, for ``ended``."""
        with self.tracer.start_as_current_span(
            f"step {job.step_id}",
            context=_context_of(run),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "overture.run_id": job.run_id,
                "overture.workflow": job.workflow,
                "overture.tenant": job.tenant,
                "overture.step_id": job.step_id,
                "overture.attempt": job.attempt,
                "overture.handler": job.uses,
                "overture.compensation": job.compensation,
                "overture.worker_id": worker_id,
            },
            record_exception=False,  # an error is an outcome, recorded by ``ended``
            set_status_on_exception=False,
        ) as span:
            context = span.get_span_context()
            own = TraceParent(
                f"{context.trace_id:032x}", f"{context.span_id:016x}", context.trace_flags
            )
            try:
                yield own, span
            except BaseException:  # cancelled, or the worker failed: not the handler's outcome
                span.set_attribute("overture.cancelled", True)
                raise

    @staticmethod
    def ended(span: Span, error: ev.ErrorInfo | None) -> None:
        """Mark the attempt's span with how it ended (its error as stored: secrets masked)."""
        if error is None:
            span.set_status(Status(StatusCode.OK))
            return
        span.set_attribute("overture.error.code", error.code)
        span.set_attribute("overture.error.retryable", error.retryable)
        span.set_status(Status(StatusCode.ERROR, f"{error.code}: {error.message}"))

    # --- runs (StoreObserver) --------------------------------------------------------------
    def recorded(self, transitions: Sequence[Transition]) -> None:
        for transition in transitions:
            for event in transition.events:
                if type(event) in RUN_ENDINGS:
                    try:
                        self._run_span(transition.state, event)
                    except Exception:  # one run's span never costs the others theirs
                        logger.exception("span of run %s not exported", transition.state.run_id)

    def deferred(self, deferrals: Sequence[tuple[str, str]]) -> None:
        """Deferrals make no spans."""

    def _run_span(self, run: RunState, end: ev.Event) -> None:
        own = parse_traceparent(run.traceparent)
        if own is None or not own.sampled:
            return
        parent = None
        if run.parent_span_id is not None:
            parent = _context_of(TraceParent(own.trace_id, run.parent_span_id, own.flags))
        token = _forced_ids.set((int(own.trace_id, 16), int(own.span_id, 16)))
        try:
            span = self.tracer.start_span(
                f"run {run.workflow}",
                context=parent or Context(),  # never the caller's current span
                start_time=_nanos(run.reopened_at or run.created_at or end.at),
                attributes={
                    "overture.run_id": run.run_id,
                    "overture.workflow": run.workflow,
                    "overture.version": run.version,
                    "overture.tenant": run.tenant,
                    "overture.status": run.status,
                },
            )
        finally:
            _forced_ids.reset(token)
        if run.parent_run_id is not None:
            span.set_attribute("overture.parent_run_id", run.parent_run_id)
        if run.reopened_at is not None:
            span.set_attribute("overture.reopened", True)
        if run.status == "succeeded":
            span.set_status(Status(StatusCode.OK))
        elif run.error is not None:
            span.set_status(Status(StatusCode.ERROR, f"{run.error.code}: {run.error.message}"))
        span.end(end_time=_nanos(run.finished_at or end.at))


def _context_of(parent: TraceParent | None) -> Context:
    """An OpenTelemetry context whose current span is ``parent`` (in another process)."""
    if parent is None:
        return Context()
    remote = trace.SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(parent.flags),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(remote), Context())


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000


class _ChosenIds(RandomIdGenerator):
    """Random ids, except for the span being built under ``_forced_ids``."""

    def generate_span_id(self) -> int:
        forced = _forced_ids.get()
        return super().generate_span_id() if forced is None else forced[1]

    def generate_trace_id(self) -> int:
        forced = _forced_ids.get()
        return super().generate_trace_id() if forced is None else forced[0]

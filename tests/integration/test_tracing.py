"""OpenTelemetry spans of real runs on both stores: an in-process worker exports through an
in-memory exporter, and an ``http`` step calls a real server on 127.0.0.1, which must receive
a ``traceparent`` of the run's trace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from tests.support.http_target import LOOPBACK, Target, serve_target

from overture.client import Client
from overture.core import events as ev
from overture.core.document import Document
from overture.core.loader import from_document
from overture.core.model import Workflow
from overture.handlers.builtin import builtin_registry
from overture.runtime.worker import Worker
from overture.telemetry.spans import Tracing
from overture.telemetry.tracecontext import parse_traceparent

pytestmark = pytest.mark.asyncio

WAIT = 20.0
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
INBOUND = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def workflow(data: dict[str, Any]) -> Workflow:
    return from_document(Document(data=data, positions={}, source=None))


def three_steps(url: str) -> Workflow:
    """prepare → call (http to ``url``) → finish."""
    return workflow(
        {
            "name": "traced",
            "steps": [
                {"id": "prepare", "uses": "echo", "with": {"text": "hi"}},
                {
                    "id": "call",
                    "uses": "http",
                    "depends_on": ["prepare"],
                    "with": {"method": "GET", "url": f"{url}/json"},
                },
                {"id": "finish", "uses": "noop", "depends_on": ["call"]},
            ],
        }
    )


@pytest.fixture
def target() -> Iterator[Target]:
    yield from serve_target("127.0.0.1")


@pytest_asyncio.fixture
async def client(database_url: str) -> AsyncIterator[Client]:
    async with Client(database_url) as opened:
        yield opened


@asynccontextmanager
async def traced_worker(client: Client) -> AsyncIterator[InMemorySpanExporter]:
    """An in-process worker whose spans (and the store's run spans) go to the exporter."""
    exporter = InMemorySpanExporter()
    tracing = Tracing.exporting_to(exporter)
    client.store.observers.append(tracing)
    async with builtin_registry(LOOPBACK) as registry:
        worker = Worker(client.store, registry, poll=0.05, tracing=tracing)
        task = asyncio.create_task(worker.run())
        try:
            yield exporter
        finally:
            worker.stop(grace=0)
            await task
            client.store.observers.remove(tracing)


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


def hex_span(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def hex_parent(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


async def finished(client: Client, exporter: InMemorySpanExporter, run_id: str, count: int) -> Any:
    run = await client.wait(run_id, timeout=WAIT)
    for _ in range(100):  # the run span is exported just after the commit that ends the run
        if len(exporter.get_finished_spans()) >= count:
            break
        await asyncio.sleep(0.05)
    return run


async def test_a_three_step_run_is_one_trace_under_the_callers_span(
    client: Client, target: Target
) -> None:
    async with traced_worker(client) as exporter:
        run = await client.start_run(three_steps(target.url), traceparent=INBOUND)
        done = await finished(client, exporter, run.id, 4)
    assert done.status == "succeeded"

    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"run traced", "step prepare", "step call", "step finish"}
    assert {f"{s.context.trace_id:032x}" for s in spans.values() if s.context} == {CALLER_TRACE}
    run_span = spans["run traced"]
    assert hex_parent(run_span) == CALLER_SPAN
    assert run_span.parent is not None and run_span.parent.is_remote
    for step in ("prepare", "call", "finish"):
        assert hex_parent(spans[f"step {step}"]) == hex_span(run_span)
    # The run span covers its steps, though its id was chosen when the run started.
    assert run_span.start_time is not None and run_span.end_time is not None
    for step in ("prepare", "call", "finish"):
        span = spans[f"step {step}"]
        assert span.start_time is not None and span.end_time is not None
        assert run_span.start_time <= span.start_time <= span.end_time <= run_span.end_time
    assert run_span.status.status_code is StatusCode.OK
    assert run_span.attributes is not None and run_span.attributes["overture.run_id"] == run.id
    call = spans["step call"]
    assert call.attributes is not None
    assert call.attributes["overture.handler"] == "http"
    assert call.attributes["overture.attempt"] == 1

    # The server the run called joined the trace, as a child of the call's attempt span.
    [request] = target.received
    received = parse_traceparent(request.headers["traceparent"])
    assert received is not None
    assert (received.trace_id, received.span_id) == (CALLER_TRACE, hex_span(call))

    # The history keeps the run's span context: the span exported at the end has its id.
    [first, *_] = await client.events(run.id)
    started = first.event
    assert isinstance(started, ev.RunStarted)
    own = parse_traceparent(started.traceparent)
    assert own is not None and own.span_id == hex_span(run_span)
    assert started.parent_span_id == CALLER_SPAN


async def test_without_a_caller_the_run_starts_a_trace_of_its_own(client: Client) -> None:
    async with traced_worker(client) as exporter:
        first = await client.start_run(
            workflow({"name": "plain", "steps": [{"id": "only", "uses": "noop"}]})
        )
        second = await client.start_run("plain", traceparent="not-a-traceparent")
        await finished(client, exporter, first.id, 2)
        await finished(client, exporter, second.id, 4)
    runs = [s for s in exporter.get_finished_spans() if s.name == "run plain"]
    assert len(runs) == 2
    assert all(span.parent is None for span in runs)
    traces = {span.context.trace_id for span in runs if span.context}
    assert len(traces) == 2  # an invalid header is ignored: a new trace, as the spec says
    steps = [s for s in exporter.get_finished_spans() if s.name == "step only"]
    assert {hex_parent(s) for s in steps} == {hex_span(r) for r in runs}


async def test_a_failed_attempt_and_run_are_marked_as_errors(client: Client) -> None:
    failing = workflow(
        {
            "name": "failing",
            "steps": [{"id": "boom", "uses": "fail", "with": {"message": "no luck"}}],
        }
    )
    async with traced_worker(client) as exporter:
        run = await client.start_run(failing)
        done = await finished(client, exporter, run.id, 2)
    assert done.status == "failed"
    spans = by_name(exporter.get_finished_spans())
    assert spans["step boom"].status.status_code is StatusCode.ERROR
    assert spans["run failing"].status.status_code is StatusCode.ERROR
    assert spans["run failing"].attributes is not None
    assert spans["run failing"].attributes["overture.status"] == "failed"


async def test_a_child_runs_span_is_a_child_of_its_parent_runs_span(client: Client) -> None:
    await client.register_workflow(
        workflow({"name": "child", "steps": [{"id": "inner", "uses": "noop"}]})
    )
    parent = workflow(
        {
            "name": "parent",
            "steps": [{"id": "spawn", "uses": "workflow", "with": {"workflow": "child"}}],
        }
    )
    async with traced_worker(client) as exporter:
        run = await client.start_run(parent, traceparent=INBOUND)
        done = await finished(client, exporter, run.id, 3)
    assert done.status == "succeeded"
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert hex_parent(spans["run parent"]) == CALLER_SPAN
    assert hex_parent(spans["run child"]) == hex_span(spans["run parent"])
    assert hex_parent(spans["step inner"]) == hex_span(spans["run child"])


async def test_without_tracing_an_http_call_still_carries_the_runs_trace(
    client: Client, target: Target
) -> None:
    async with builtin_registry(LOOPBACK) as registry:
        worker = Worker(client.store, registry, poll=0.05)
        task = asyncio.create_task(worker.run())
        try:
            run = await client.start_run(three_steps(target.url), traceparent=INBOUND)
            assert (await client.wait(run.id, timeout=WAIT)).status == "succeeded"
        finally:
            worker.stop(grace=0)
            await task
    [request] = target.received
    received = parse_traceparent(request.headers["traceparent"])
    assert received is not None and received.trace_id == CALLER_TRACE
    assert received.span_id != CALLER_SPAN  # the attempt's own span id, not the caller's


async def test_a_retried_run_gets_a_new_span_under_its_first(client: Client) -> None:
    """Span ids are unique in a trace: the reopened run is a new span, a child of the first."""
    flaky = workflow(
        {
            "name": "flaky",
            "steps": [{"id": "once", "uses": "fail", "with": {"message": "first time"}}],
        }
    )
    async with traced_worker(client) as exporter:
        run = await client.start_run(flaky, traceparent=INBOUND)
        assert (await finished(client, exporter, run.id, 2)).status == "failed"
        await client.retry(run.id)
        await finished(client, exporter, run.id, 4)
    runs = sorted(
        (s for s in exporter.get_finished_spans() if s.name == "run flaky"),
        key=lambda s: s.start_time or 0,
    )
    assert len(runs) == 2
    first, second = runs
    assert hex_span(first) != hex_span(second)
    assert hex_parent(first) == CALLER_SPAN and hex_parent(second) == hex_span(first)
    assert second.attributes is not None and second.attributes["overture.reopened"] is True
    steps = sorted(
        (s for s in exporter.get_finished_spans() if s.name == "step once"),
        key=lambda s: s.start_time or 0,
    )
    assert [hex_parent(s) for s in steps] == [hex_span(first), hex_span(second)]
    assert first.start_time is not None and second.start_time is not None
    assert second.start_time > first.start_time  # the second span starts at the retry


async def test_a_caller_that_does_not_sample_gets_no_spans(client: Client) -> None:
    async with traced_worker(client) as exporter:
        run = await client.start_run(
            workflow({"name": "quiet", "steps": [{"id": "only", "uses": "noop"}]}),
            traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-00",
        )
        assert (await client.wait(run.id, timeout=WAIT)).status == "succeeded"
        # A sampled run after it, whose spans show the exporter was working all along.
        control = await client.start_run("quiet")
        await finished(client, exporter, control.id, 2)
    [first, *_] = await client.events(control.id)
    assert isinstance(first.event, ev.RunStarted)
    sampled = parse_traceparent(first.event.traceparent)
    assert sampled is not None
    traces = {s.context.trace_id for s in exporter.get_finished_spans() if s.context}
    assert traces == {int(sampled.trace_id, 16)}  # nothing of the unsampled run's trace


async def test_a_compensated_run_ends_its_span_too(client: Client) -> None:
    saga = workflow(
        {
            "name": "saga",
            "steps": [
                {"id": "book", "uses": "noop", "compensate": {"uses": "noop"}},
                {"id": "pay", "uses": "fail", "depends_on": ["book"], "with": {"message": "no"}},
            ],
        }
    )
    async with traced_worker(client) as exporter:
        run = await client.start_run(saga)
        done = await finished(client, exporter, run.id, 4)
    assert done.status == "compensated"
    [span] = [s for s in exporter.get_finished_spans() if s.name == "run saga"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["overture.status"] == "compensated"


async def test_a_steps_own_traceparent_header_is_sent_as_it_is(
    client: Client, target: Target
) -> None:
    own = f"00-{'1' * 32}-{'2' * 16}-01"
    step = {"method": "GET", "url": f"{target.url}/json", "headers": {"traceparent": own}}
    async with traced_worker(client) as exporter:
        run = await client.start_run(
            workflow({"name": "own", "steps": [{"id": "call", "uses": "http", "with": step}]}),
            traceparent=INBOUND,
        )
        await finished(client, exporter, run.id, 2)
    [request] = target.received
    assert request.headers.getlist("traceparent") == [own]

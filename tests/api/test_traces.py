"""Traces from a real ``overture serve`` configured only by ``OTEL_*`` variables, exported over
OTLP/HTTP to a local collector that decodes the real protobuf wire format; and the
``traceparent`` of requests to the runs, tasks and events endpoints becoming the runs' parent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from tests.support.server import RunningServer, running_server
from tests.support.threaded import serving_in_thread, url_of

from overture.remote import RemoteClient
from overture.triggers.signatures import sign

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
INBOUND = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
WAIT = 20.0


@dataclass(frozen=True)
class ExportedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    service: str


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver on 127.0.0.1: what it was sent, decoded."""

    url: str
    spans: list[ExportedSpan] = field(default_factory=list)

    def wait_for(self, names: set[str], trace_id: str) -> dict[str, ExportedSpan]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = {s.name: s for s in list(self.spans) if s.trace_id == trace_id}
            if names <= set(found):
                return found
            time.sleep(0.05)
        raise AssertionError(f"spans {names} of {trace_id} never came; got {self.spans}")


def _receiver(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert self.path == "/v1/traces"
            assert self.headers["Content-Type"] == "application/x-protobuf"
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        collector.spans.append(
                            ExportedSpan(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                service=attributes.get("service.name", ""),
                            )
                        )
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Receiver


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    received = Collector(url="")
    with serving_in_thread(ThreadingHTTPServer(("127.0.0.1", 0), _receiver(received))) as server:
        received.url = url_of(server)
        yield received


@pytest.fixture(scope="module")
def server(
    collector: Collector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    workdir: Path = tmp_path_factory.mktemp("traced")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "overture-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # milliseconds between batches
    }
    with running_server(f"sqlite:///{workdir / 'overture.db'}", cwd=workdir, env=env) as serving:
        push(
            serving,
            {
                "name": "two",
                "steps": [
                    {"id": "first", "uses": "echo", "with": {"text": "a"}},
                    {"id": "second", "uses": "noop", "depends_on": ["first"]},
                ],
            },
        )
        push(
            serving,
            {
                "name": "on-github",
                "on": {"events": ["github.pull_request"]},
                "steps": [{"id": "only", "uses": "noop"}],
            },
        )
        push(
            serving,
            {
                "name": "listener",
                "on": {"events": ["order.placed"]},
                "steps": [{"id": "only", "uses": "noop"}],
            },
        )
        yield serving


def push(server: RunningServer, workflow: dict[str, Any]) -> None:
    response = httpx.post(f"{server.url}/v1/workflows", json=workflow)
    assert response.status_code in (200, 201), response.text


def run_started(server: RunningServer, run_id: str) -> dict[str, Any]:
    events = httpx.get(f"{server.url}/v1/runs/{run_id}/events").json()["items"]
    first: dict[str, Any] = events[0]["event"] if "event" in events[0] else events[0]
    assert first["type"] == "RunStarted"
    return first


def finish(server: RunningServer, run_id: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/v1/runs/{run_id}").json()["status"]
        if status in ("succeeded", "failed", "cancelled"):
            assert status == "succeeded"
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never finished")


def test_a_run_started_with_a_traceparent_is_exported_under_the_callers_span(
    server: RunningServer, collector: Collector
) -> None:
    started = httpx.post(
        f"{server.url}/v1/runs", json={"workflow": "two"}, headers={"traceparent": INBOUND}
    )
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    finish(server, run_id)
    spans = collector.wait_for({"run two", "step first", "step second"}, CALLER_TRACE)
    run = spans["run two"]
    assert run.parent_span_id == CALLER_SPAN
    assert spans["step first"].parent_span_id == run.span_id
    assert spans["step second"].parent_span_id == run.span_id
    assert {s.service for s in spans.values()} == {"overture-under-test"}
    stored = run_started(server, run_id)
    assert stored["traceparent"] == f"00-{CALLER_TRACE}-{run.span_id}-01"
    assert stored["parent_span_id"] == CALLER_SPAN


def test_events_and_tasks_take_the_callers_trace_too(server: RunningServer) -> None:
    event = httpx.post(
        f"{server.url}/v1/events",
        json={"type": "order.placed", "payload": {"n": 1}},
        headers={"traceparent": INBOUND},
    )
    assert event.status_code == 201, event.text
    [route] = event.json()["event"]["routes"]
    task = httpx.post(
        f"{server.url}/v1/tasks",
        json={"type": "echo", "payload": {"text": "t"}},
        headers={"traceparent": INBOUND},
    )
    assert task.status_code == 201, task.text
    for run_id in (route["run_id"], task.json()["id"]):
        stored = run_started(server, run_id)
        assert stored["traceparent"].split("-")[1] == CALLER_TRACE
        assert stored["parent_span_id"] == CALLER_SPAN


def test_a_request_without_a_valid_traceparent_starts_a_new_trace(server: RunningServer) -> None:
    for headers in ({}, {"traceparent": "00-zz-nonsense-01"}):
        started = httpx.post(f"{server.url}/v1/runs", json={"workflow": "two"}, headers=headers)
        assert started.status_code == 201, started.text
        stored = run_started(server, started.json()["id"])
        assert stored["traceparent"].split("-")[1] != CALLER_TRACE
        assert "parent_span_id" not in stored


def test_a_signed_webhook_delivery_joins_the_senders_trace(server: RunningServer) -> None:
    secret = "whsec-" + "k" * 24
    made = httpx.post(
        f"{server.url}/v1/webhook-sources",
        json={"name": "gh", "scheme": "github", "secrets": [secret]},
    )
    assert made.status_code == 201, made.text
    body = b'{"action": "opened"}'
    headers = sign(
        "github",
        body=body,
        secret=secret,
        options={},
        now=int(time.time()),
        delivery_id="d-1",
        event_type="pull_request",
    )
    delivered = httpx.post(
        f"{server.url}/v1/webhooks/gh",
        content=body,
        headers={"Content-Type": "application/json", "traceparent": INBOUND, **headers},
    )
    assert delivered.status_code == 202, delivered.text
    [route] = delivered.json()["event"]["routes"]
    stored = run_started(server, route["run_id"])
    assert stored["traceparent"].split("-")[1] == CALLER_TRACE
    assert stored["parent_span_id"] == CALLER_SPAN


def test_two_traceparent_headers_are_ignored_and_a_long_one_is_no_error(
    server: RunningServer,
) -> None:
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    twice = httpx.post(
        f"{server.url}/v1/runs",
        json={"workflow": "two"},
        headers=[("traceparent", INBOUND), ("traceparent", other)],
    )
    assert twice.status_code == 201, twice.text
    stored = run_started(server, twice.json()["id"])
    assert stored["traceparent"].split("-")[1] not in (CALLER_TRACE, "1" * 32)
    long = INBOUND + "-" + "x" * 600
    for path, body in (
        ("/v1/events", {"type": "order.placed"}),
        ("/v1/tasks", {"type": "echo", "payload": {"text": "t"}}),
        ("/v1/runs", {"workflow": "two"}),
    ):
        answered = httpx.post(f"{server.url}{path}", json=body, headers={"traceparent": long})
        assert answered.status_code == 201, (path, answered.text)


@pytest.mark.asyncio
async def test_the_remote_client_passes_a_traceparent_on(server: RunningServer) -> None:
    async with RemoteClient(server.url) as remote:
        run = await remote.start_run("two", traceparent=INBOUND)
        sent = await remote.send_event("order.placed", {"n": 2}, traceparent=INBOUND)
    [route] = sent["event"]["routes"]
    for run_id in (run["id"], route["run_id"]):
        assert run_started(server, run_id)["parent_span_id"] == CALLER_SPAN

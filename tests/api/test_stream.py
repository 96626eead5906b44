"""``GET /v1/runs/{id}/stream`` (SSE) through real HTTP on both stores.

A ``gate`` step holds each run open until the test opens it, so "attached while running" is a
fact the test arranges, not a race it hopes to win.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from tests.api.helpers import GATED, Gate, Json, Message, Tenant, problem, sse_messages


@contextmanager
def stream(
    tenant: Tenant, run_id: str, last_event_id: str | None = None
) -> Iterator[Iterator[Message]]:
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    with tenant.http.stream("GET", f"/v1/runs/{run_id}/stream", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield sse_messages(response)


def until_gate_started(messages: Iterator[Message]) -> list[Json]:
    """Events up to and including the gate step's start."""
    seen = []
    for message in messages:
        event = json.loads(message.data)
        assert message.seq == event["seq"]
        seen.append(event)
        if event["type"] == "StepStarted" and event["step_id"] == "wait":
            return seen
    raise AssertionError(f"the stream ended before the gate step started: {seen}")


def rest(messages: Iterator[Message]) -> list[Json]:
    events = []
    for message in messages:
        event = json.loads(message.data)
        assert message.seq == event["seq"]
        events.append(event)
    return events


def start_gated(tenant: Tenant) -> tuple[Json, Gate]:
    tenant.register(GATED)
    gate = tenant.api.gate()
    return tenant.start("gated", {"gate": str(gate.path)}), gate


def assert_whole_history(tenant: Tenant, run_id: str, received: list[Json]) -> None:
    """``received`` is the run's history: every event once, in order, to its last."""
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    assert received == tenant.events(run_id)
    assert received[-1]["type"] == "RunSucceeded"


def test_a_client_attached_to_a_running_run_gets_every_event_in_order(tenant: Tenant) -> None:
    run, gate = start_gated(tenant)
    with stream(tenant, run["id"]) as messages:
        before = until_gate_started(messages)
        assert tenant.run(run["id"])["status"] == "running"  # attached mid-run, for sure
        gate.open()
        after = rest(messages)  # returns because the server closes the stream at the end
    assert after, "nothing arrived after the gate opened"
    assert_whole_history(tenant, run["id"], before + after)


def test_two_clients_see_the_same_events(tenant: Tenant) -> None:
    run, gate = start_gated(tenant)
    with stream(tenant, run["id"]) as one, stream(tenant, run["id"]) as two:
        first = until_gate_started(one)
        second = until_gate_started(two)
        gate.open()
        first += rest(one)
        second += rest(two)
    assert first == second
    assert_whole_history(tenant, run["id"], first)


def test_reconnecting_with_last_event_id_misses_nothing_and_repeats_nothing(
    tenant: Tenant,
) -> None:
    run, gate = start_gated(tenant)
    with stream(tenant, run["id"]) as messages:
        received = until_gate_started(messages)
    # Disconnected while the run waits on its gate; resume from the last event seen.
    with stream(tenant, run["id"], str(received[-1]["seq"])) as messages:
        gate.open()
        received += rest(messages)
    assert_whole_history(tenant, run["id"], received)

    last = str(received[-1]["seq"])
    with stream(tenant, run["id"], last) as messages:
        assert rest(messages) == []  # the run is over and nothing is new: the stream ends


def test_resuming_after_every_single_event_still_yields_the_history(tenant: Tenant) -> None:
    run, gate = start_gated(tenant)
    received: list[Json] = []
    while True:
        last = str(received[-1]["seq"]) if received else None
        with stream(tenant, run["id"], last) as messages:
            message = next(messages, None)
        if message is None:
            break
        received.append(json.loads(message.data))
        if received[-1]["type"] == "StepStarted" and received[-1]["step_id"] == "wait":
            gate.open()
    assert_whole_history(tenant, run["id"], received)


def test_a_bad_last_event_id_or_an_unknown_run_is_refused(tenant: Tenant) -> None:
    run, gate = start_gated(tenant)
    gate.open()
    tenant.wait(run["id"])
    refused = tenant.http.get(f"/v1/runs/{run['id']}/stream", headers={"Last-Event-ID": "x1"})
    problem(refused, 400, "bad_last_event_id")
    problem(tenant.http.get("/v1/runs/nope/stream"), 404, "not_found")


def test_the_stream_carries_no_cache_headers(tenant: Tenant) -> None:
    run, gate = start_gated(tenant)
    gate.open()
    response = httpx.get(
        f"{tenant.api.url}/v1/runs/{run['id']}/stream",
        headers={"Authorization": f"Bearer {tenant.keys['read']}"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    assert response.text.startswith("retry: ")


# --- log lines in the stream (?logs=true) ----------------------------------------------------

TALKING_GATE = """\
name: talking_gate
steps:
  - id: before
    uses: chatty
    with: {lines: 2}
  - id: wait
    uses: gate
    depends_on: [before]
    with: {path: "${input.gate}"}
  - id: after
    uses: chatty
    depends_on: [wait]
    with: {lines: 3}
"""


@dataclass(frozen=True)
class Named:
    """A message with its SSE event name (``message`` unless the server named it)."""

    name: str
    id: str
    item: Json


def named_messages(response: httpx.Response) -> Iterator[Named]:
    name, last_id, data = "message", "", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield Named(name, last_id, json.loads("\n".join(data)))
            name, data = "message", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "id":
                last_id = value
            elif field == "data":
                data.append(value)


@contextmanager
def log_stream(
    tenant: Tenant, run_id: str, last_event_id: str | None = None
) -> Iterator[Iterator[Named]]:
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    with tenant.http.stream(
        "GET", f"/v1/runs/{run_id}/stream", params={"logs": "true"}, headers=headers
    ) as response:
        assert response.status_code == 200, response.read()
        yield named_messages(response)


def start_talking(tenant: Tenant) -> tuple[Json, Gate]:
    tenant.register(TALKING_GATE)
    gate = tenant.api.gate()
    return tenant.start("talking_gate", {"gate": str(gate.path)}), gate


def is_gate_start(message: Named) -> bool:
    item = message.item
    return item.get("type") == "StepStarted" and item.get("step_id") == "wait"


def assert_events_and_lines(tenant: Tenant, run_id: str, received: list[Named]) -> None:
    """Every event and every line once, in order, each line before its step's success, and
    ids that carry both cursors."""
    events = [m.item for m in received if m.name == "message"]
    lines = [m.item for m in received if m.name == "log"]
    assert events == tenant.events(run_id)
    assert lines == tenant.http.get(f"/v1/runs/{run_id}/logs").json()["items"]
    assert [line["message"] for line in lines] == ["line 1", "line 2", "line 1", "line 2", "line 3"]
    cursors = [tuple(map(int, m.id.split(":"))) for m in received]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    for message, (seq, line) in zip(received, cursors, strict=True):
        assert (seq if message.name == "message" else line) == message.item.get(
            "seq", message.item.get("id")
        )
    for step in ("before", "after"):
        done = next(
            i
            for i, m in enumerate(received)
            if m.item.get("type") == "StepSucceeded" and m.item["step_id"] == step
        )
        theirs = [
            i for i, m in enumerate(received) if m.name == "log" and m.item["step_id"] == step
        ]
        assert theirs and max(theirs) < done


def test_with_logs_lines_come_interleaved_and_a_resume_misses_and_repeats_nothing(
    tenant: Tenant,
) -> None:
    run, gate = start_talking(tenant)
    received: list[Named] = []
    with log_stream(tenant, run["id"]) as messages:
        for message in messages:
            received.append(message)
            if is_gate_start(message):
                break
    assert any(m.name == "log" for m in received)  # the first step's lines came live
    with log_stream(tenant, run["id"], received[-1].id) as messages:
        gate.open()
        received += list(messages)
    assert_events_and_lines(tenant, run["id"], received)

    with log_stream(tenant, run["id"], received[-1].id) as messages:
        assert list(messages) == []


def test_with_logs_resuming_after_every_single_message_still_yields_everything(
    tenant: Tenant,
) -> None:
    run, gate = start_talking(tenant)
    received: list[Named] = []
    while True:
        with log_stream(tenant, run["id"], received[-1].id if received else None) as messages:
            message = next(messages, None)
        if message is None:
            break
        received.append(message)
        if is_gate_start(message):
            gate.open()
    assert_events_and_lines(tenant, run["id"], received)


def test_a_plain_seq_resumes_the_events_and_sends_every_line(tenant: Tenant) -> None:
    run, gate = start_talking(tenant)
    gate.open()
    tenant.wait(run["id"])
    history = tenant.events(run["id"])
    with log_stream(tenant, run["id"], str(len(history) - 1)) as messages:
        received = list(messages)
    assert [m.item for m in received if m.name == "message"] == history[-1:]
    assert len([m for m in received if m.name == "log"]) == 5


def test_without_logs_the_stream_is_events_only_whatever_the_last_event_id(
    tenant: Tenant,
) -> None:
    run, gate = start_talking(tenant)
    gate.open()
    tenant.wait(run["id"])
    with stream(tenant, run["id"]) as messages:
        assert rest(messages) == tenant.events(run["id"])
    with stream(tenant, run["id"], "3:2") as messages:  # a cursor from a stream with logs
        assert rest(messages) == tenant.events(run["id"])[3:]


def test_a_bad_cursor_is_refused(tenant: Tenant) -> None:
    run, gate = start_talking(tenant)
    gate.open()
    path = f"/v1/runs/{run['id']}/stream"
    for bad in ("1:", ":1", "1:x", "1:2:3", f"1:{2**63}"):
        refused = tenant.http.get(path, params={"logs": "true"}, headers={"Last-Event-ID": bad})
        problem(refused, 400, "bad_last_event_id")

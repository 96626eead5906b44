"""``GET /v1/runs/{id}/stream`` (SSE) through real HTTP on both stores.

A ``gate`` step holds each run open until the test opens it, so "attached while running" is a
fact the test arranges, not a race it hopes to win.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

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

"""``/v1/events`` through a real server: an event starts one run per listening workflow, once."""

from __future__ import annotations

import pytest
from tests.api.helpers import Tenant, problem

LISTENER = """\
name: {name}
on: {{events: [{type}]}}
steps:
  - id: note
    uses: echo
    with: {{who: "${{input.user_id}}", what: "${{input.payload}}"}}
output: ${{steps.note.output}}
"""


def listener(tenant: Tenant, name: str, event_type: str = "intent.created") -> None:
    tenant.register(LISTENER.format(name=name, type=event_type))


def test_an_event_type_listened_to_by_two_workflows_starts_two_runs(tenant: Tenant) -> None:
    listener(tenant, "first")
    listener(tenant, "second")
    listener(tenant, "other", "intent.deleted")

    sent = tenant.client("write").post(
        "/v1/events",
        json={"type": "intent.created", "id": "ev-1", "user_id": "u-7", "payload": {"n": 1}},
    )

    assert sent.status_code == 201, sent.text
    assert sent.headers["location"] == "/v1/events/ev-1"
    body = sent.json()
    assert body["created"] is True
    routes = body["event"]["routes"]
    assert sorted(r["workflow"] for r in routes) == ["first", "second"]
    for route in routes:
        run = tenant.wait(route["run_id"])
        assert run["status"] == "succeeded"
        assert run["output"] == {"who": "u-7", "what": {"n": 1}}
    shown = tenant.client("read").get("/v1/events/ev-1").json()
    assert shown == body["event"]


def test_the_same_event_id_again_starts_no_run(tenant: Tenant) -> None:
    listener(tenant, "first")
    listener(tenant, "second")
    http = tenant.client("write")
    first = http.post("/v1/events", json={"type": "intent.created", "id": "ev-1"}).json()

    again = http.post("/v1/events", json={"type": "intent.created", "id": "ev-1"})

    assert again.status_code == 200
    assert again.json() == {"event": first["event"], "created": False}
    assert len(tenant.http.get("/v1/runs").json()["items"]) == 2


def test_an_apex_event_envelope_is_accepted_as_is(tenant: Tenant) -> None:
    listener(tenant, "booking", "flight.requested")
    envelope = {
        "eventId": "0b6d7c1e",
        "correlationId": "corr-1",
        "idempotencyKey": "idem-1",
        "tenantId": tenant.name,
        "eventType": "flight.requested",
        "payload": {"to": "LIS"},
        "timestamp": "2026-11-21T10:00:00Z",
        "source": "sim",
        "target": ["orchestrator"],
        "trace": {"traceId": "abc", "spanId": "def"},
        "schemaVersion": "1.0",
    }

    sent = tenant.client("write").post("/v1/events", json=envelope)

    assert sent.status_code == 201, sent.text
    event = sent.json()["event"]
    assert (event["id"], event["type"], event["correlation_id"], event["source"]) == (
        "0b6d7c1e",
        "flight.requested",
        "corr-1",
        "sim",
    )
    assert event["meta"]["schema_version"] == "1.0"
    run = tenant.wait(event["routes"][0]["run_id"])
    assert run["correlation_id"] == "corr-1"
    assert run["input"]["trace"] == {"traceId": "abc", "spanId": "def"}
    snake = {"event_id": "0b6d7c1e", "event_type": "flight.requested", "idempotency_key": "idem-1"}
    repeat = tenant.client("write").post("/v1/events", json=snake)
    assert repeat.status_code == 200, "the same event in snake_case was seen before"
    assert repeat.json()["event"]["routes"] == event["routes"]


def test_a_key_or_an_id_reused_for_another_event_is_refused(tenant: Tenant) -> None:
    http = tenant.client("write")
    http.post("/v1/events", json={"type": "a", "id": "e1", "idempotency_key": "k"})

    other_id = http.post("/v1/events", json={"type": "a", "id": "e2", "idempotency_key": "k"})
    other_type = http.post("/v1/events", json={"type": "b", "id": "e1"})

    problem(other_id, 409, "idempotency_key_reused")
    problem(other_type, 409, "event_exists")
    assert [e["id"] for e in tenant.http.get("/v1/events").json()["items"]] == ["e1"]


def test_an_envelope_for_another_tenant_is_refused(tenant: Tenant) -> None:
    sent = tenant.client("write").post(
        "/v1/events", json={"type": "x", "tenant_id": "someone-else"}
    )

    problem(sent, 403, "tenant_mismatch")
    assert tenant.http.get("/v1/events").json()["items"] == []


@pytest.mark.parametrize(
    "raw",
    [
        "{}",
        '{"payload": {}}',
        '{"type": ""}',
        '{"type": "has space"}',
        '{"type": "x", "unknown": 1}',
        '{"type": "x", "id": ""}',
        '{"type": "x", "payload": {"n": Infinity}}',
        '{"type": "x", "target": 5}',
        '{"type": "x", "source": "webhook:github"}',
        '{"type": "x", "id": "webhook:github:1"}',
        '{"type": "x", "id": "a/b"}',
        '{"type": "x", "trace": {"n": 123456789012345678901234567890}}',
        '{"type": "x", "chaos": {"s": "\\ud800"}}',
        '{"type": "x", "user_id": "a\\u0000b"}',
    ],
    ids=[
        "empty",
        "no-type",
        "empty-type",
        "space",
        "unknown",
        "empty-id",
        "infinity",
        "target",
        "webhook-source",
        "webhook-id",
        "slash-id",
        "huge-int",
        "surrogate",
        "nul",
    ],
)
def test_bad_events_are_refused_and_nothing_is_stored(tenant: Tenant, raw: str) -> None:
    sent = tenant.client("write").post(
        "/v1/events", content=raw, headers={"Content-Type": "application/json"}
    )

    problem(sent, 422, "invalid_request")
    assert tenant.http.get("/v1/events").json()["items"] == []


def test_a_read_key_cannot_send_events(tenant: Tenant) -> None:
    problem(tenant.client("read").post("/v1/events", json={"type": "x"}), 403, "forbidden")


def test_events_list_newest_first_by_type_with_their_runs(tenant: Tenant) -> None:
    listener(tenant, "first")
    http = tenant.client("write")
    for n in range(3):
        http.post("/v1/events", json={"type": "intent.created", "id": f"c{n}"})
    http.post("/v1/events", json={"type": "intent.other", "id": "o1"})

    page = tenant.client("read").get("/v1/events", params={"limit": 2}).json()
    rest = tenant.client("read").get("/v1/events", params={"cursor": page["next_cursor"]}).json()
    created = tenant.client("read").get("/v1/events", params={"type": "intent.created"}).json()

    assert [e["id"] for e in page["items"] + rest["items"]] == ["o1", "c2", "c1", "c0"]
    assert rest["next_cursor"] is None
    assert [e["id"] for e in created["items"]] == ["c2", "c1", "c0"]
    assert all(len(e["routes"]) == 1 for e in created["items"])
    assert page["items"][0]["routes"] == []
    problem(tenant.http.get("/v1/events", params={"cursor": "junk"}), 400, "bad_cursor")
    problem(tenant.http.get("/v1/events/nope"), 404, "not_found")

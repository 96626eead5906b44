"""``/v1/runs`` through real HTTP on both stores: start, read, list, history, logs, and acting
on runs (cancel, retry, replay, signal), with the status and problem codes a client sees."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from tests.api.helpers import BROKEN, CHATTY, GATED, HELLO, Tenant, problem


def test_a_started_run_runs_and_reads_back_complete(tenant: Tenant) -> None:
    tenant.register(HELLO)
    response = tenant.http.post("/v1/runs", json={"workflow": "hello", "input": {"name": "Ada"}})
    assert response.status_code == 201, response.text
    started = response.json()
    assert response.headers["location"] == f"/v1/runs/{started['id']}"
    assert started["workflow"] == "hello"
    assert started["version"] == 1
    assert started["input"] == {"name": "Ada"}

    run = tenant.wait(started["id"])
    assert run["status"] == "succeeded"
    assert run["output"] == {"greeting": "hello Ada"}
    assert run["error"] is None
    assert run["finished_at"] is not None
    assert run["created_at"] <= run["finished_at"]
    [step] = run["steps"]
    assert step["id"] == "greet"
    assert step["status"] == "succeeded"
    assert step["input"] == {"greeting": "hello Ada"}
    assert step["output"] == {"greeting": "hello Ada"}
    assert step["started_at"] is not None
    assert step["finished_at"] is not None


def test_a_failed_run_says_which_step_failed_and_why(tenant: Tenant) -> None:
    tenant.register(BROKEN)
    run = tenant.wait(tenant.start("broken")["id"])
    assert run["status"] == "failed"
    assert run["failed_step"] == "explode"
    assert run["error"]["code"] == "broke"
    [step] = run["steps"]
    assert step["status"] == "failed"
    assert step["error"]["message"] == "it broke"


def test_an_idempotency_key_in_the_body_returns_the_first_run(tenant: Tenant) -> None:
    tenant.register(HELLO)
    body = {"workflow": "hello", "input": {"name": "Ada"}, "idempotency_key": "order-1"}
    first = tenant.http.post("/v1/runs", json=body)
    again = tenant.http.post("/v1/runs", json={**body, "input": {"name": "Bob"}})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["input"] == {"name": "Ada"}
    runs = tenant.http.get("/v1/runs").json()["items"]
    assert [r["id"] for r in runs] == [first.json()["id"]]


def test_the_idempotency_key_header_works_like_the_field(tenant: Tenant) -> None:
    tenant.register(HELLO)
    body = {"workflow": "hello", "input": {"name": "Ada"}}
    first = tenant.http.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-1"})
    again = tenant.http.post("/v1/runs", json=body, headers={"Idempotency-Key": "k-1"})
    same = tenant.http.post("/v1/runs", json={**body, "idempotency_key": "k-1"})
    assert (first.status_code, again.status_code, same.status_code) == (201, 200, 200)
    assert first.json()["idempotency_key"] == "k-1"
    assert again.json()["id"] == first.json()["id"] == same.json()["id"]


def test_an_idempotency_key_cannot_be_two_things(tenant: Tenant) -> None:
    tenant.register(HELLO)
    tenant.register(BROKEN)
    body = {"workflow": "hello", "input": {"name": "Ada"}, "idempotency_key": "a"}
    differ = tenant.http.post("/v1/runs", json=body, headers={"Idempotency-Key": "b"})
    problem(differ, 422, "invalid_request")
    tenant.start("hello", {"name": "Ada"}, idempotency_key="once")
    other = tenant.http.post("/v1/runs", json={"workflow": "broken", "idempotency_key": "once"})
    problem(other, 409, "idempotency_key_reused")


def test_priority_correlation_and_delay_are_kept(tenant: Tenant) -> None:
    tenant.register(HELLO)
    before = datetime.now(UTC)
    run = tenant.start("hello", {"name": "Ada"}, priority=7, correlation_id="corr-9", delay=3600)
    assert run["priority"] == 7
    assert run["correlation_id"] == "corr-9"
    detail = tenant.run(run["id"])
    assert detail["status"] == "queued"
    [step] = detail["steps"]
    assert step["status"] == "scheduled"
    assert datetime.fromisoformat(step["run_at"]) >= before + timedelta(seconds=3600)

    at = datetime(2999, 1, 2, 3, 4, 5, tzinfo=UTC)
    later = tenant.start("hello", {"name": "Ada"}, run_at=at.isoformat())
    [step] = tenant.run(later["id"])["steps"]
    assert datetime.fromisoformat(step["run_at"]) == at

    both = tenant.http.post(
        "/v1/runs",
        json={"workflow": "hello", "input": {"name": "A"}, "delay": 1, "run_at": at.isoformat()},
    )
    problem(both, 422, "invalid_request")


def test_a_version_can_be_chosen(tenant: Tenant) -> None:
    tenant.register(HELLO)
    tenant.register(HELLO.replace("hello ${input.name}", "hi ${input.name}"))
    old = tenant.wait(tenant.start("hello", {"name": "Ada"}, version=1)["id"])
    new = tenant.wait(tenant.start("hello", {"name": "Ada"})["id"])
    assert (old["version"], old["output"]) == (1, {"greeting": "hello Ada"})
    assert (new["version"], new["output"]) == (2, {"greeting": "hi Ada"})
    missing = tenant.http.post(
        "/v1/runs", json={"workflow": "hello", "version": 9, "input": {"name": "Ada"}}
    )
    problem(missing, 404, "not_found")


def test_bad_starts_get_the_documented_codes(tenant: Tenant) -> None:
    tenant.register(HELLO)
    unknown = tenant.http.post("/v1/runs", json={"workflow": "nope", "input": {}})
    assert "nope" in problem(unknown, 404, "not_found")["detail"]

    invalid = tenant.http.post("/v1/runs", json={"workflow": "hello", "input": {"name": 5}})
    body = problem(invalid, 422, "input_invalid")
    assert body["errors"]
    assert all(e["path"][0] == "input" for e in body["errors"])

    extra = tenant.http.post("/v1/runs", json={"workflow": "hello", "input": {}, "colour": 1})
    body = problem(extra, 422, "invalid_request")
    assert ["body", "colour"] in [e["path"] for e in body["errors"]]

    tenant.http.delete("/v1/workflows/hello")
    disabled = tenant.http.post("/v1/runs", json={"workflow": "hello", "input": {"name": "A"}})
    problem(disabled, 409, "workflow_disabled")


def test_listing_filters_and_pages_without_gaps_or_repeats(tenant: Tenant) -> None:
    tenant.register(HELLO)
    tenant.register(BROKEN)
    hellos = [tenant.start("hello", {"name": str(n)})["id"] for n in range(5)]
    broken = tenant.start("broken")["id"]
    for run_id in [*hellos, broken]:
        tenant.wait(run_id)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = tenant.http.get("/v1/runs", params=params).json()
        assert len(page["items"]) <= 2
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [broken, *reversed(hellos)]  # newest first, each once

    def listed(**params: str) -> list[str]:
        response = tenant.http.get("/v1/runs", params=params)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["items"]]

    assert listed(status="failed") == [broken]
    assert listed(workflow="hello") == list(reversed(hellos))
    assert listed(since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
    assert len(listed(since=(datetime.now(UTC) - timedelta(hours=1)).isoformat())) == 6

    problem(tenant.http.get("/v1/runs", params={"cursor": "not-a-cursor"}), 400, "bad_cursor")
    problem(tenant.http.get("/v1/runs", params={"status": "sleepy"}), 422, "invalid_request")


def test_the_history_reads_in_order_and_in_pages(tenant: Tenant) -> None:
    tenant.register(HELLO)
    run = tenant.wait(tenant.start("hello", {"name": "Ada"})["id"])
    events = tenant.events(run["id"])
    assert [e["seq"] for e in events] == list(range(1, run["events"] + 1))
    assert events[0]["type"] == "RunStarted"
    assert events[-1]["type"] == "RunSucceeded"

    first = tenant.http.get(f"/v1/runs/{run['id']}/events", params={"limit": 2}).json()
    assert [e["seq"] for e in first["items"]] == [1, 2]
    assert first["next_after"] == 2
    rest = tenant.http.get(f"/v1/runs/{run['id']}/events", params={"after": 2}).json()
    assert first["items"] + rest["items"] == events
    assert rest["next_after"] is None


def test_logs_of_the_steps_read_in_order_and_in_pages(tenant: Tenant) -> None:
    tenant.register(CHATTY)
    run = tenant.wait(tenant.start("chatty", {"lines": 3})["id"])
    assert run["status"] == "succeeded"
    logs = tenant.http.get(f"/v1/runs/{run['id']}/logs").json()
    assert [line["message"] for line in logs["items"]] == ["line 1", "line 2", "line 3"]
    assert [line["level"] for line in logs["items"]] == ["info", "info", "warning"]
    assert logs["items"][0]["step_id"] == "talk"
    assert logs["items"][0]["fields"] == {"n": 1}
    assert logs["next_after"] is None

    first = tenant.http.get(f"/v1/runs/{run['id']}/logs", params={"limit": 2}).json()
    assert first["next_after"] == first["items"][-1]["id"]
    rest = tenant.http.get(
        f"/v1/runs/{run['id']}/logs", params={"after": first["next_after"]}
    ).json()
    assert first["items"] + rest["items"] == logs["items"]


def test_cancel_stops_a_running_run(tenant: Tenant) -> None:
    tenant.register(GATED)
    gate = tenant.api.gate()
    run = tenant.start("gated", {"gate": str(gate.path)})
    tenant.wait_step(run["id"], "wait", "running")

    response = tenant.http.post(f"/v1/runs/{run['id']}/cancel", json={"reason": "changed mind"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    [cancelled] = [e for e in tenant.events(run["id"]) if e["type"] == "RunCancelled"]
    assert cancelled["reason"] == "changed mind"

    again = tenant.http.post(f"/v1/runs/{run['id']}/cancel")  # no body: a default reason
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    types = [e["type"] for e in tenant.events(run["id"])]
    assert types.count("RunCancelled") == 1  # cancelling a finished run changes nothing
    gate.open()
    steps = {s["id"]: s["status"] for s in tenant.run(run["id"])["steps"]}
    assert steps["first"] == "succeeded"
    assert steps["last"] not in ("scheduled", "running", "succeeded")


def test_retry_reruns_a_failed_run_and_refuses_a_running_one(tenant: Tenant) -> None:
    tenant.register(BROKEN)
    tenant.register(GATED)
    failed = tenant.wait(tenant.start("broken")["id"])
    response = tenant.http.post(f"/v1/runs/{failed['id']}/retry", json={"steps": ["explode"]})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued"
    again = tenant.wait(failed["id"], lambda run: run["events"] > failed["events"] + 1)
    assert tenant.wait(again["id"])["status"] == "failed"  # it fails again, on purpose
    types = [e["type"] for e in tenant.events(failed["id"])]
    assert types.count("RunRetried") == 1
    assert types.count("StepStarted") == 2  # but it ran again

    gate = tenant.api.gate()
    running = tenant.start("gated", {"gate": str(gate.path)})
    tenant.wait_step(running["id"], "wait", "running")
    problem(tenant.http.post(f"/v1/runs/{running['id']}/retry"), 409, "not_retryable")
    no_steps = tenant.http.post(f"/v1/runs/{failed['id']}/retry", json={"steps": []})
    problem(no_steps, 422, "invalid_request")
    gate.open()
    assert tenant.wait(running["id"])["status"] == "succeeded"


def test_replay_starts_a_new_run_with_the_same_input(tenant: Tenant) -> None:
    tenant.register(HELLO)
    old = tenant.wait(tenant.start("hello", {"name": "Ada"}, correlation_id="c-1")["id"])
    response = tenant.http.post(f"/v1/runs/{old['id']}/replay")
    assert response.status_code == 201, response.text
    new = response.json()
    assert response.headers["location"] == f"/v1/runs/{new['id']}"
    assert new["id"] != old["id"]
    assert (new["workflow"], new["version"], new["input"]) == ("hello", 1, {"name": "Ada"})
    assert new["correlation_id"] == "c-1"
    assert tenant.wait(new["id"])["output"] == old["output"]


def test_a_signal_lands_in_the_history_and_a_finished_run_refuses_it(tenant: Tenant) -> None:
    tenant.register(GATED)
    gate = tenant.api.gate()
    run = tenant.start("gated", {"gate": str(gate.path)})
    tenant.wait_step(run["id"], "wait", "running")

    response = tenant.http.post(
        f"/v1/runs/{run['id']}/signal", json={"name": "approve", "payload": {"by": "ada"}}
    )
    assert response.status_code == 202, response.text
    sent = response.json()
    assert sent["run_id"] == run["id"]
    assert sent["name"] == "approve"
    event = tenant.events(run["id"])[sent["seq"] - 1]
    assert event["type"] == "SignalReceived"
    assert (event["name"], event["payload"]) == ("approve", {"by": "ada"})

    gate.open()
    assert tenant.wait(run["id"])["status"] == "succeeded"
    late = tenant.http.post(f"/v1/runs/{run['id']}/signal", json={"name": "approve"})
    problem(late, 409, "run_finished")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/runs/{id}"),
        ("GET", "/v1/runs/{id}/events"),
        ("GET", "/v1/runs/{id}/logs"),
        ("GET", "/v1/runs/{id}/stream"),
        ("POST", "/v1/runs/{id}/cancel"),
        ("POST", "/v1/runs/{id}/retry"),
        ("POST", "/v1/runs/{id}/replay"),
    ],
)
def test_an_unknown_run_is_404(tenant: Tenant, method: str, path: str) -> None:
    response = tenant.http.request(method, path.format(id="01a1fd38-0000-7000-8000-000000000000"))
    problem(response, 404, "not_found")


def test_concurrent_starts_with_one_idempotency_key_make_one_run(tenant: Tenant) -> None:
    tenant.register(HELLO)
    body = {"workflow": "hello", "input": {"name": "Ada"}, "idempotency_key": "race"}

    def start(_: int) -> tuple[int, str]:
        response = tenant.api.client(tenant.keys["write"]).post("/v1/runs", json=body)
        assert response.status_code in (200, 201), response.text
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(start, range(8)))
    assert len({run_id for _, run_id in results}) == 1
    assert [status for status, _ in results].count(201) == 1

"""Tasks (one-step runs of a handler) through real HTTP on both stores, on the versioned paths
and on the seed's unversioned ones (``POST /tasks``, ``GET /tasks/{id}``, ``GET /stream/{id}``)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.api.helpers import HELLO, Json, Tenant, problem, sse_messages

PATHS = [("/v1/tasks", "/v1/tasks/{id}"), ("/tasks", "/tasks/{id}")]


def wait_task(tenant: Tenant, read: str, task_id: str) -> Json:
    """The task once finished (its run is polled through the runs API)."""
    tenant.wait(task_id)
    response = tenant.http.get(read.format(id=task_id))
    assert response.status_code == 200, response.text
    found: Json = response.json()
    return found


@pytest.mark.parametrize(("create", "read"), PATHS)
def test_a_task_runs_its_handler_on_the_payload(tenant: Tenant, create: str, read: str) -> None:
    response = tenant.http.post(create, json={"type": "echo", "payload": {"text": "hi"}})
    assert response.status_code == 201, response.text
    task = response.json()
    assert response.headers["location"] == f"/v1/tasks/{task['id']}"
    assert (task["type"], task["payload"]) == ("echo", {"text": "hi"})

    done = wait_task(tenant, read, task["id"])
    assert done["status"] == "succeeded"
    assert done["result"] == {"text": "hi"}
    assert done["attempts"] == 1
    assert done["error"] is None
    assert done["finished_at"] is not None


@pytest.mark.parametrize(("create", "read"), PATHS)
def test_a_repeated_idempotency_key_returns_the_first_task(
    tenant: Tenant, create: str, read: str
) -> None:
    body = {"type": "echo", "payload": {"n": 1}, "idempotency_key": "job-1", "priority": 3}
    first = tenant.http.post(create, json=body)
    again = tenant.http.post(create, json={**body, "payload": {"n": 2}})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["payload"] == {"n": 1}
    assert first.json()["priority"] == 3
    assert first.json()["idempotency_key"] == "job-1"

    other_type = tenant.http.post(create, json={**body, "type": "noop"})
    problem(other_type, 409, "idempotency_key_reused")


def test_max_retries_bounds_the_attempts(tenant: Tenant) -> None:
    body = {"type": "fail", "payload": {"code": "flaky", "retryable": True}, "max_retries": 1}
    response = tenant.http.post("/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    done = wait_task(tenant, "/v1/tasks/{id}", response.json()["id"])
    assert done["status"] == "failed"
    assert done["type"] == "fail"
    assert done["attempts"] == 2
    assert done["error"]["code"] == "flaky"


@pytest.mark.parametrize("retries", [{}, {"max_retries": 1}])
def test_a_dotted_handler_name_is_the_tasks_type(tenant: Tenant, retries: Json) -> None:
    body = {"type": "text.upper", "payload": {"text": "hi"}, **retries}
    response = tenant.http.post("/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["type"] == "text.upper"
    done = wait_task(tenant, "/v1/tasks/{id}", response.json()["id"])
    assert (done["type"], done["result"]) == ("text.upper", {"text": "HI"})


def test_an_unknown_handler_is_refused_with_a_hint(tenant: Tenant) -> None:
    response = tenant.http.post("/v1/tasks", json={"type": "ecko", "payload": {}})
    body = problem(response, 422, "unknown_handler")
    assert "did you mean 'echo'" in body["detail"]


def test_unknown_fields_are_refused(tenant: Tenant) -> None:
    response = tenant.http.post("/tasks", json={"type": "echo", "payload": {}, "retries": 3})
    body = problem(response, 422, "invalid_request")
    assert ["body", "retries"] in [e["path"] for e in body["errors"]]


@pytest.mark.parametrize("read", ["/v1/tasks/{id}", "/tasks/{id}"])
def test_a_run_that_is_not_a_task_is_not_found_as_one(tenant: Tenant, read: str) -> None:
    tenant.register(HELLO)
    run = tenant.start("hello", {"name": "Ada"})
    problem(tenant.http.get(read.format(id=run["id"])), 404, "not_found")
    problem(tenant.http.get(read.format(id="no-such-task")), 404, "not_found")


def test_the_seed_stream_path_follows_a_task_to_its_end(tenant: Tenant) -> None:
    task = tenant.http.post("/tasks", json={"type": "echo", "payload": {"x": 1}}).json()
    with tenant.http.stream("GET", f"/stream/{task['id']}") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(m.data) for m in sse_messages(response)]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "RunStarted"
    assert events[-1]["type"] == "RunSucceeded"
    assert events == tenant.events(task["id"])
    problem(tenant.http.get("/stream/no-such-task"), 404, "not_found")


def test_concurrent_first_tasks_of_a_type_all_start(tenant: Tenant) -> None:
    """The first task of a type registers its workflow: racing requests must not collide."""

    def start(n: int) -> int:
        client = tenant.api.client(tenant.keys["write"])
        response = client.post("/v1/tasks", json={"type": "noop", "payload": {"n": n}})
        return response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(start, range(8)))
    assert statuses == [201] * 8

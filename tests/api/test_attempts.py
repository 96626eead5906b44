"""``GET /v1/runs/{id}/attempts`` through real HTTP on both stores: every attempt of every step,
with its worker, timing, status, error and the lines it logged."""

from __future__ import annotations

import asyncio

from tests.api.helpers import CHATTY, Json, Tenant, problem

from overture.remote import RemoteClient

RETRIED = """\
name: retried
steps:
  - id: talk
    uses: chatty
    with: {lines: 2}
    compensate: {uses: noop}
  - id: boom
    uses: fail
    depends_on: [talk]
    retry: {max_attempts: 2, initial: 0.01, jitter: 0}
    with: {message: "it broke", code: broke, retryable: true}
"""


def attempts(tenant: Tenant, run_id: str, scope: str = "admin", **params: str) -> list[Json]:
    response = tenant.client(scope).get(f"/v1/runs/{run_id}/attempts", params=params)
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


def test_every_attempt_with_its_worker_timing_error_and_lines(tenant: Tenant) -> None:
    tenant.register(RETRIED)
    run = tenant.start("retried")
    assert tenant.wait(run["id"])["status"] == "compensated"

    found = attempts(tenant, run["id"], scope="read")
    assert [
        (a["step_id"], a["compensation"], a["attempt"], a["status"], a["queued_after"])
        for a in found
    ] == [
        ("talk", False, 1, "succeeded", None),
        ("boom", False, 1, "failed", None),
        ("boom", False, 2, "failed", "error"),
        ("talk", True, 1, "succeeded", None),
    ]
    for a in found:
        assert a["worker_id"]
        assert a["scheduled_at"] <= a["run_at"] <= a["started_at"] <= a["finished_at"]
        assert a["duration"] >= 0
        assert a["status_code"] is None
    talk, first, second, undo = found
    assert [line["message"] for line in talk["logs"]] == ["line 1", "line 2"]
    assert talk["logs"] == tenant.http.get(f"/v1/runs/{run['id']}/logs").json()["items"]
    assert first["logs"] == second["logs"] == undo["logs"] == []
    assert (second["error"]["code"], second["error"]["message"]) == ("broke", "it broke")
    assert talk["error"] is None


def test_without_logs_the_attempts_carry_no_lines(tenant: Tenant) -> None:
    tenant.register(CHATTY)
    run = tenant.start("chatty", {"lines": 2})
    tenant.wait(run["id"])
    (talk,) = attempts(tenant, run["id"], logs="false")
    assert (talk["status"], talk["logs"]) == ("succeeded", [])


def test_every_line_comes_however_many_pages_they_take(tenant: Tenant) -> None:
    tenant.register(CHATTY)
    run = tenant.start("chatty", {"lines": 1001})  # more than the store's largest page
    tenant.wait(run["id"])
    (talk,) = attempts(tenant, run["id"])
    assert [line["fields"]["n"] for line in talk["logs"]] == list(range(1, 1002))


def test_a_queued_run_has_queued_attempts(tenant: Tenant) -> None:
    tenant.register(CHATTY)
    run = tenant.start("chatty", {"lines": 1}, delay=3600)
    (talk,) = attempts(tenant, run["id"])
    assert (talk["status"], talk["started_at"], talk["worker_id"]) == ("queued", None, None)
    assert talk["run_at"] > talk["scheduled_at"]
    tenant.http.post(f"/v1/runs/{run['id']}/cancel")
    (talk,) = attempts(tenant, run["id"])
    assert (talk["status"], talk["error"]["code"]) == ("cancelled", "cancelled")


def test_another_tenants_run_or_an_unknown_one_is_404(tenant: Tenant) -> None:
    tenant.register(CHATTY)
    run = tenant.start("chatty", {"lines": 1})
    tenant.wait(run["id"])
    other = tenant.api.tenant()
    problem(other.http.get(f"/v1/runs/{run['id']}/attempts"), 404, "not_found")
    problem(tenant.http.get("/v1/runs/nope/attempts"), 404, "not_found")


def test_the_remote_client_reads_attempts_and_follows_lines(tenant: Tenant) -> None:
    tenant.register(CHATTY)
    run = tenant.start("chatty", {"lines": 2})
    tenant.wait(run["id"])

    async def read() -> tuple[Json, list[Json]]:
        async with RemoteClient(tenant.api.url, api_key=tenant.keys["read"]) as client:
            found = await client.attempts(run["id"])
            streamed = [item async for item in client.stream(run["id"], logs=True)]
            return found, streamed

    found, streamed = asyncio.run(read())
    (talk,) = found["items"]
    lines = [item for item in streamed if "seq" not in item]
    assert lines == talk["logs"]
    assert [e for e in streamed if "seq" in e] == tenant.events(run["id"])

"""``GET /v1/status`` through real HTTP on both stores: a tenant's queues, runs, dead letters and
failing circuits, the workers' liveness, and when it needs attention."""

from __future__ import annotations

import time

from tests.api.helpers import BROKEN, WAIT, Api, Json, Tenant, problem

DOWN = """\
name: down
steps:
  - id: call
    uses: fail
    with: {code: agent_down, retryable: true}
    circuit: {key: "agent:down", failure_threshold: 2, cooldown: 1h}
    retry: {max_attempts: 5, initial: 0.01, max: 0.01, jitter: false}
"""
BRIEFLY_DOWN = DOWN.replace("down", "briefly-down", 1).replace("agent:down", "agent:brief")
BRIEFLY_DOWN = BRIEFLY_DOWN.replace("cooldown: 1h", "cooldown: 1s")


def gated(path: str) -> str:
    return f"""\
name: gated
steps:
  - {{id: wait, uses: gate, with: {{path: "{path}"}}}}
"""


def status(tenant: Tenant, scope: str = "admin") -> Json:
    response = tenant.client(scope).get("/v1/status")
    assert response.status_code == 200, response.text
    found: Json = response.json()
    return found


def test_a_healthy_tenant_shows_its_runs_and_dead_letters(api: Api, tenant: Tenant) -> None:
    gate = api.gate()
    tenant.register(gated(str(gate.path)))
    tenant.register(BROKEN)
    tenant.wait(tenant.start("broken")["id"])
    run = tenant.start("gated")
    tenant.wait_step(run["id"], "wait", "running")

    found = status(tenant)
    assert found["tenant"] == tenant.name
    assert (found["healthy"], found["attention"]) == (True, [])
    assert found["dead_letters"] == 1
    assert found["runs"] == [{"workflow": "gated", "status": "running", "count": 1}]
    [queue] = found["queues"]
    assert (queue["queue"], queue["ready"], queue["delayed"], queue["running"]) == ("gate", 0, 0, 1)
    assert found["circuits"] == []
    assert found["workers"]["live"] >= 1
    [mine] = [w for w in found["workers"]["items"] if w["pid"] == api.server.pid]
    assert mine["live"] is True
    assert 0 <= mine["seen_seconds_ago"] < 30

    gate.open()
    tenant.wait(run["id"])
    assert status(tenant)["runs"] == []


def test_workers_are_counted_for_every_key_and_listed_for_admins(tenant: Tenant) -> None:
    reader = status(tenant, "read")
    assert reader["workers"]["live"] >= 1
    assert reader["workers"]["items"] is None
    problem(tenant.api.client().get("/v1/status"), 401, "unauthorized")


def test_an_open_circuit_needs_attention(tenant: Tenant) -> None:
    tenant.register(DOWN)
    run = tenant.start("down")

    def opened(_: Json) -> bool:
        return bool(status(tenant)["circuits"])

    tenant.wait(run["id"], opened)
    found = status(tenant)
    [circuit] = found["circuits"]
    assert (circuit["key"], circuit["status"]) == ("agent:down", "open")
    assert found["healthy"] is False
    assert found["attention"] == ["circuit 'agent:down' is open"]
    assert circuit["stale"] is False
    assert tenant.http.post("/v1/circuits/agent:down/reset").status_code == 200
    tenant.http.post(f"/v1/runs/{run['id']}/cancel")


def test_an_open_circuit_nobody_calls_after_its_cooldown_is_shown_but_healthy(
    tenant: Tenant,
) -> None:
    tenant.register(BRIEFLY_DOWN)
    run = tenant.start("briefly-down")
    tenant.wait(run["id"], lambda _: any(c["status"] == "open" for c in status(tenant)["circuits"]))
    tenant.http.post(f"/v1/runs/{run['id']}/cancel")  # nothing calls the downstream any more

    deadline = time.monotonic() + WAIT
    while not (found := status(tenant))["healthy"]:
        assert time.monotonic() < deadline, found
        time.sleep(0.1)

    [circuit] = found["circuits"]
    assert (circuit["key"], circuit["status"], circuit["stale"]) == ("agent:brief", "open", True)
    assert found["attention"] == []


def test_the_workers_list_says_which_are_live(api: Api, tenant: Tenant) -> None:
    items = tenant.client("admin").get("/v1/workers").json()["items"]
    [mine] = [w for w in items if w["pid"] == api.server.pid]
    assert mine["live"] is True and mine["running"] is True
    assert mine["seen_seconds_ago"] >= 0

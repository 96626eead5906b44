"""Operating through real HTTP on both stores: the dead-letter queue and its requeue, the
workers list, liveness and readiness."""

from __future__ import annotations

from tests.api.helpers import BROKEN, Api, Json, Tenant, problem


def dead_letters(tenant: Tenant, **params: str) -> list[Json]:
    response = tenant.http.get("/v1/dlq", params=params)
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


def test_a_step_that_failed_for_good_is_a_dead_letter(tenant: Tenant) -> None:
    tenant.register(BROKEN)
    run = tenant.wait(tenant.start("broken")["id"])
    [letter] = dead_letters(tenant)
    assert letter["run_id"] == run["id"]
    assert (letter["workflow"], letter["step_id"]) == ("broken", "explode")
    assert letter["error"]["code"] == "broke"
    assert letter["attempts"] == 1
    assert letter["requeued_at"] is None


def test_requeue_reopens_the_run_and_takes_the_letter_off_the_queue(tenant: Tenant) -> None:
    tenant.register(BROKEN)
    run = tenant.wait(tenant.start("broken")["id"])
    [letter] = dead_letters(tenant)

    response = tenant.http.post(f"/v1/dlq/{letter['id']}/requeue")
    assert response.status_code == 200, response.text
    [reopened] = response.json()["runs"]
    assert reopened["id"] == run["id"]
    assert reopened["status"] == "queued"
    assert tenant.wait(run["id"], lambda r: r["events"] > run["events"] + 1)
    tenant.wait(run["id"])

    assert letter["id"] not in [d["id"] for d in dead_letters(tenant)]
    everything = dead_letters(tenant, include_requeued="true")
    [requeued] = [d for d in everything if d["id"] == letter["id"]]
    assert requeued["requeued_at"] is not None
    problem(tenant.http.post("/v1/dlq/999999999/requeue"), 404, "not_found")


def test_workers_list_the_servers_own_worker_to_admins(api: Api, tenant: Tenant) -> None:
    response = tenant.client("admin").get("/v1/workers")
    assert response.status_code == 200, response.text
    mine = [w for w in response.json()["items"] if w["pid"] == api.server.pid]
    assert len(mine) == 1
    assert mine[0]["running"] is True
    assert {"gate", "chatty", "echo", "text.upper"} <= set(mine[0]["handlers"])
    problem(tenant.client("write").get("/v1/workers"), 403, "forbidden")


def test_health_and_readiness_need_no_key(api: Api) -> None:
    anonymous = api.client()
    health = anonymous.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = anonymous.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["database"] == ("sqlite" if api.store == "sqlite" else "postgresql")
    assert ready.json()["migrations"][0] == 1


def test_the_api_describes_itself_without_a_key(api: Api) -> None:
    anonymous = api.client()
    spec = anonymous.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/v1/runs/{run_id}/stream" in spec.json()["paths"]
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        response = anonymous.get(page)
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html")

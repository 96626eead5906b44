"""``/v1/schedules`` through a real server, whose scheduler fires the ticks."""

from __future__ import annotations

import time
from datetime import datetime

from tests.api.helpers import WAIT, Json, Tenant, problem

JOB = """\
name: tick
steps:
  - {id: note, uses: echo, with: {at: "${input.label}"}}
output: ${steps.note.output}
"""

DAILY = """\
name: daily
on:
  cron:
    - "0 7 * * *"
    - {cron: "0 18 * * SUN", timezone: America/New_York}
steps:
  - {id: run, uses: echo}
"""


def schedule(tenant: Tenant, schedule_id: str) -> Json:
    response = tenant.client("read").get(f"/v1/schedules/{schedule_id}")
    assert response.status_code == 200, response.text
    found: Json = response.json()
    return found


def wait_for_ticks(tenant: Tenant, schedule_id: str, count: int) -> list[Json]:
    deadline = time.monotonic() + WAIT
    while True:
        ticks: list[Json] = schedule(tenant, schedule_id)["ticks"]
        if len(ticks) >= count:
            return ticks
        assert time.monotonic() < deadline, f"only {len(ticks)} ticks fired"
        time.sleep(0.1)


def test_a_schedule_fires_runs_until_paused(tenant: Tenant) -> None:
    tenant.register(JOB)
    write = tenant.client("write")

    made = write.post(
        "/v1/schedules",
        json={
            "id": "every-second",
            "workflow": "tick",
            "cron": "* * * * * *",
            "input": {"label": "x"},
        },
    )

    assert made.status_code == 201, made.text
    assert made.json()["origin"] == "api"
    ticks = wait_for_ticks(tenant, "every-second", 2)
    assert all(t["run_id"] and t["error"] is None for t in ticks)
    seconds = [datetime.fromisoformat(t["tick"]) for t in ticks]
    assert seconds == sorted(seconds, reverse=True) and seconds[0].microsecond == 0
    assert tenant.wait(ticks[0]["run_id"])["output"] == {"at": "x"}

    paused = write.post("/v1/schedules/every-second/pause").json()
    assert (paused["paused"], paused["next_fire_at"]) == (True, None)
    newest = schedule(tenant, "every-second")["ticks"][0]["tick"]
    time.sleep(1.5)
    assert schedule(tenant, "every-second")["ticks"][0]["tick"] == newest
    resumed = write.post("/v1/schedules/every-second/resume").json()
    assert resumed["paused"] is False and resumed["next_fire_at"] is not None
    write.post("/v1/schedules/every-second/pause")


def test_a_workflow_s_cron_is_listed_with_its_next_ticks(tenant: Tenant) -> None:
    tenant.register(DAILY)

    items = tenant.client("read").get("/v1/schedules").json()["items"]

    assert [(s["id"], s["origin"], s["timezone"]) for s in items] == [
        ("daily:cron:0", "workflow", "UTC"),
        ("daily:cron:1", "workflow", "America/New_York"),
    ]
    seven_am = datetime.fromisoformat(items[0]["next_fire_at"])
    assert (seven_am.hour, seven_am.minute, seven_am.utcoffset().total_seconds()) == (7, 0, 0)
    problem(tenant.http.delete("/v1/schedules/daily:cron:0"), 409, "schedule_from_workflow")


def test_bad_schedules_are_refused(tenant: Tenant) -> None:
    tenant.register(JOB)
    write = tenant.client("write")
    body = {"id": "s", "workflow": "tick", "cron": "0 7 * * *"}
    assert write.post("/v1/schedules", json=body).status_code == 201

    problem(write.post("/v1/schedules", json=body), 409, "schedule_exists")
    bad_cron = problem(
        write.post("/v1/schedules", json={**body, "id": "b", "cron": "0 25 * * *"}), 422, "bad_cron"
    )
    assert bad_cron["errors"][0]["path"] == ["body", "cron"]
    assert "hour" in bad_cron["detail"]
    bad_zone = problem(
        write.post("/v1/schedules", json={**body, "id": "z", "timezone": "Mars/Base"}),
        422,
        "bad_cron",
    )
    assert "Mars/Base" in bad_zone["detail"]
    problem(
        write.post("/v1/schedules", json={**body, "id": "w", "workflow": "nope"}), 404, "not_found"
    )
    problem(write.post("/v1/schedules", json={**body, "id": "has:colon"}), 422, "invalid_request")
    problem(tenant.client("read").post("/v1/schedules", json={**body, "id": "r"}), 403, "forbidden")
    ids = [s["id"] for s in tenant.client("read").get("/v1/schedules").json()["items"]]
    assert ids == ["s"]


def test_a_deleted_schedule_is_gone(tenant: Tenant) -> None:
    tenant.register(JOB)
    write = tenant.client("write")
    write.post("/v1/schedules", json={"id": "s", "workflow": "tick", "cron": "@daily"})

    assert write.delete("/v1/schedules/s").status_code == 204

    problem(tenant.http.get("/v1/schedules/s"), 404, "not_found")
    problem(write.delete("/v1/schedules/s"), 404, "not_found")

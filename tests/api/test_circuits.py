"""``/v1/circuits`` through a real server: a failing step opens its circuit, the API shows it,
a reset closes it; another tenant sees none of it."""

from __future__ import annotations

import time
from urllib.parse import quote

from tests.api.helpers import WAIT, Api, Json, Tenant, problem

FAILING = """\
name: down
steps:
  - id: call
    uses: fail
    with: {code: agent_down, retryable: true}
    circuit: {key: "agent:clo/v1", failure_threshold: 2, window: 30s, cooldown: 1h}
    retry: {max_attempts: 5, initial: 0.05, max: 0.05, jitter: false}
"""

KEY = "agent:clo/v1"


def open_circuit(tenant: Tenant) -> Json:
    tenant.register(FAILING)
    tenant.start("down")
    tenant.start("down")
    deadline = time.monotonic() + WAIT
    while True:
        listed = tenant.client("read").get("/v1/circuits")
        assert listed.status_code == 200, listed.text
        items: list[Json] = listed.json()["items"]
        if items and items[0]["status"] == "open":
            return items[0]
        assert time.monotonic() < deadline, f"the circuit never opened: {items}"
        time.sleep(0.05)


def test_failures_open_a_circuit_that_the_api_shows_and_a_reset_closes(tenant: Tenant) -> None:
    found = open_circuit(tenant)
    assert found["key"] == KEY
    assert (found["threshold"], found["window"], found["cooldown"]) == (2, 30.0, 3600.0)
    assert found["open_until"] > found["opened_at"]

    one = tenant.client("read").get(f"/v1/circuits/{quote(KEY, safe='/:')}")
    assert one.status_code == 200 and one.json()["status"] == "open"

    assert tenant.client("read").post(f"/v1/circuits/{KEY}/reset").status_code == 403
    reset = tenant.client("write").post(f"/v1/circuits/{KEY}/reset")
    assert reset.status_code == 200, reset.text
    assert (reset.json()["status"], reset.json()["failures"]) == ("closed", 0)


def test_another_tenants_circuit_is_not_found(tenant: Tenant, api: Api) -> None:
    open_circuit(tenant)
    other = api.tenant()
    assert other.client("read").get("/v1/circuits").json() == {"items": []}
    problem(other.client("read").get(f"/v1/circuits/{KEY}"), 404, "not_found")
    problem(other.client("write").post(f"/v1/circuits/{KEY}/reset"), 404, "not_found")


def test_an_unknown_circuit_is_a_404_problem(tenant: Tenant) -> None:
    problem(tenant.client("write").post("/v1/circuits/nope/reset"), 404, "not_found")
    problem(tenant.client("read").get("/v1/circuits/nope"), 404, "not_found")

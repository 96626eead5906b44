"""Keys through real HTTP on both stores: no key, an unknown, revoked or wrongly scoped key.

Which operations need a key is read from the server's own OpenAPI document, so a new operation
is checked without anyone adding it here.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from tests.api.helpers import HELLO, Api, Tenant, create_key, problem

PUBLIC = {("GET", "/health"), ("GET", "/ready"), ("POST", "/v1/webhooks/{source}")}
"""Operations that need no key: probes of load balancers and orchestrators carry none, and
webhook deliveries are verified by their source's signature scheme instead."""


def operations(api: Api) -> list[tuple[str, str, dict[str, Any]]]:
    spec = api.client().get("/openapi.json").json()
    return [
        (method.upper(), path, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


def test_every_operation_but_the_probes_needs_a_key(api: Api) -> None:
    anonymous = api.client()
    found = operations(api)
    assert len(found) > 20
    for method, path, operation in found:
        if (method, path) in PUBLIC:
            assert not operation.get("security"), (method, path)
            continue
        assert operation.get("security") == [{"HTTPBearer": []}], (method, path)
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        response = anonymous.request(method, concrete)
        problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer ovt_nope_nope", "Bearer", "Basic dXNlcjpwYXNz", "ovt_raw_key_without_scheme"],
)
def test_a_key_that_is_not_a_key_is_401(api: Api, authorization: str) -> None:
    response = api.client(Authorization=authorization).get("/v1/runs")
    problem(response, 401, "unauthorized")


def test_a_revoked_key_is_401(api: Api, tenant: Tenant) -> None:
    key, key_id = create_key(api.db, tenant.name, ("read",))
    api.db.call(lambda store: store.revoke_api_key(key_id))
    problem(api.client(key).get("/v1/runs"), 401, "unauthorized")


def test_a_key_revoked_while_in_use_stops_working(api: Api, tenant: Tenant) -> None:
    key, key_id = create_key(api.db, tenant.name, ("read",))
    client = api.client(key)
    assert client.get("/v1/runs").status_code == 200
    api.db.call(lambda store: store.revoke_api_key(key_id))
    # The server trusts a key it found for a few seconds (store.keys.KEY_CACHE_SECONDS).
    deadline = time.monotonic() + 30
    while (response := client.get("/v1/runs")).status_code == 200:
        assert time.monotonic() < deadline, "the revoked key kept working"
        time.sleep(0.1)
    problem(response, 401, "unauthorized")


def test_each_scope_allows_what_it_names_and_no_more(tenant: Tenant) -> None:
    reader, writer, admin = (tenant.client(s) for s in ("read", "write", "admin"))
    body = {"workflow": "hello", "input": {"name": "Ada"}}

    problem(reader.post("/v1/workflows", content=HELLO), 403, "forbidden")
    problem(reader.post("/v1/runs", json=body), 403, "forbidden")
    problem(reader.post("/v1/tasks", json={"type": "echo"}), 403, "forbidden")
    detail = problem(writer.delete("/v1/workflows/hello"), 403, "forbidden")["detail"]
    assert "'admin'" in detail
    problem(writer.get("/v1/workers"), 403, "forbidden")

    registered = writer.post(
        "/v1/workflows", content=HELLO, headers={"Content-Type": "application/yaml"}
    )
    assert registered.status_code == 201
    started = writer.post("/v1/runs", json=body)
    assert started.status_code == 201
    assert reader.get(f"/v1/runs/{started.json()['id']}").status_code == 200
    assert reader.get("/v1/workflows/hello").status_code == 200
    assert admin.delete("/v1/workflows/hello").status_code == 204

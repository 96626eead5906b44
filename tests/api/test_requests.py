"""Malformed and oversized requests through real HTTP on both stores: every refusal is a
problem+json with a stable code, never a crash or an HTML page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.api.helpers import HELLO, Api, Tenant, problem

LIMIT = 1024 * 1024  # the default max_body_bytes
TOO_BIG = b'{"workflow": "hello", "input": {"pad": "' + b"x" * LIMIT + b'"}}'


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """The body as a stream: sent chunked, without a Content-Length to refuse it by."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/tasks", "/v1/workflows"])
def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(
    tenant: Tenant, path: str
) -> None:
    headers = {"Content-Type": "application/json"}
    declared = tenant.http.post(path, content=TOO_BIG, headers=headers)
    problem(declared, 413, "body_too_large")
    streamed = tenant.http.post(path, content=chunks(TOO_BIG), headers=headers)
    assert "content-length" not in streamed.request.headers
    problem(streamed, 413, "body_too_large")


def test_a_body_under_the_limit_is_accepted(tenant: Tenant) -> None:
    tenant.register(HELLO)
    name = "x" * (LIMIT // 2)
    run = tenant.start("hello", {"name": name})
    assert tenant.wait(run["id"])["output"] == {"greeting": f"hello {name}"}


NOT_STORABLE = {
    "a 65-bit integer": b"123456789012345678901234567890",
    "NaN": b"NaN",
    "Infinity": b"-Infinity",
    "a number too large for a float": b"1e400",
    "half a surrogate pair": b'"\\ud800"',
    "nesting 1000 deep": b"[" * 1000 + b"]" * 1000,
    "nesting 100 deep": b"[" * 100 + b"]" * 100,
}


@pytest.mark.parametrize("value", NOT_STORABLE.values(), ids=NOT_STORABLE.keys())
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/runs", b'{"workflow": "hello", "input": {"v": %s}}'),
        ("/v1/tasks", b'{"type": "echo", "payload": {"v": %s}}'),
        ("/v1/runs/{run}/signal", b'{"name": "go", "payload": {"v": %s}}'),
    ],
    ids=["run input", "task payload", "signal payload"],
)
def test_json_the_store_cannot_keep_is_422_not_a_crash(
    tenant: Tenant, path: str, body: bytes, value: bytes
) -> None:
    tenant.register(HELLO)
    run = tenant.start("hello", {"name": "Ada"})  # its state does not matter: 422 comes first
    response = tenant.http.post(
        path.format(run=run["id"]),
        content=body % value,
        headers={"Content-Type": "application/json"},
    )
    # 400 when the body cannot even be parsed (1000 levels exhaust the JSON parser).
    body_ = problem(response, 400 if b"[" * 1000 in value else 422, "invalid_request")
    assert len(body_["detail"]) < 500
    assert tenant.http.get("/v1/tasks/x").status_code == 404  # and the server is fine


NOT_STORABLE_YAML = {k: v for k, v in NOT_STORABLE.items() if k not in ("NaN", "Infinity")}
"""(A body is read as YAML first, where ``NaN`` is a plain string.)"""


@pytest.mark.parametrize("value", NOT_STORABLE_YAML.values(), ids=NOT_STORABLE_YAML.keys())
def test_a_workflow_the_store_cannot_keep_is_422(tenant: Tenant, value: bytes) -> None:
    definition = b'{"name": "w", "steps": [{"id": "a", "uses": "echo", "with": {"v": %s}}]}'
    response = tenant.http.post(
        "/v1/workflows", content=definition % value, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] in ("not_json", "document_invalid", "workflow_invalid")


def test_malformed_json_is_422_invalid_request(tenant: Tenant) -> None:
    response = tenant.http.post(
        "/v1/runs", content=b'{"workflow": ', headers={"Content-Type": "application/json"}
    )
    problem(response, 422, "invalid_request")


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/runs", {"limit": "0"}, 422, "invalid_request"),
        ("/v1/runs", {"limit": "1001"}, 422, "invalid_request"),
        ("/v1/runs", {"since": "yesterday"}, 422, "invalid_request"),
        ("/v1/runs", {"cursor": "eyJub3QiOiJhIGN1cnNvciJ9"}, 400, "bad_cursor"),
        ("/v1/runs/x/events", {"after": "-1"}, 422, "invalid_request"),
    ],
)
def test_bad_query_parameters_say_which(
    tenant: Tenant, path: str, params: dict[str, str], status: int, code: str
) -> None:
    problem(tenant.http.get(path, params=params), status, code)


def test_unknown_routes_and_methods_are_problems_too(api: Api, tenant: Tenant) -> None:
    problem(tenant.http.get("/v1/nothing-here"), 404, "no_route")
    problem(tenant.http.patch("/v1/runs"), 405, "method_not_allowed")

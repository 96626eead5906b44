"""``/v1/workflows`` through real HTTP on both stores: register (YAML or JSON), versions, read,
disable and enable; every invalid definition of the corpus answers 422 located to its line."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from tests.api.helpers import HELLO, Tenant, problem

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "bad"
YAML = {"Content-Type": "application/yaml"}


def expectation(path: Path) -> dict[str, str]:
    """The ``# expect: code=... line=... step=... message="..."`` header of a corpus file."""
    header = path.read_text(encoding="utf-8").splitlines()[0]
    return dict(part.split("=", 1) for part in shlex.split(header.removeprefix("# expect:")))


def test_registering_yaml_makes_version_one_and_the_same_again_changes_nothing(
    tenant: Tenant,
) -> None:
    response = tenant.http.post("/v1/workflows", content=HELLO, headers=YAML)
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == "/v1/workflows/hello"
    assert (created["name"], created["version"], created["versions"]) == ("hello", 1, [1])
    assert created["steps"] == 1
    assert created["disabled"] is False
    assert created["definition"]["steps"][0]["uses"] == "echo"

    again = tenant.http.post("/v1/workflows", content=HELLO, headers=YAML)
    assert again.status_code == 200
    assert again.json()["version"] == 1
    assert again.json()["digest"] == created["digest"]


def test_a_changed_definition_is_a_new_version_and_old_ones_stay_readable(
    tenant: Tenant,
) -> None:
    tenant.register(HELLO)
    changed = HELLO.replace("hello ${input.name}", "hi ${input.name}")
    response = tenant.http.post("/v1/workflows", content=changed, headers=YAML)
    assert response.status_code == 201
    assert (response.json()["version"], response.json()["versions"]) == (2, [2, 1])

    latest = tenant.http.get("/v1/workflows/hello").json()
    assert latest["version"] == 2
    old = tenant.http.get("/v1/workflows/hello/versions/1")
    assert old.status_code == 200
    assert old.json()["definition"]["steps"][0]["with"] == {"greeting": "hello ${input.name}"}
    problem(tenant.http.get("/v1/workflows/hello/versions/3"), 404, "not_found")
    problem(tenant.http.get("/v1/workflows/nope"), 404, "not_found")


def test_a_json_body_registers_too(tenant: Tenant) -> None:
    definition = yaml.safe_load(HELLO)
    response = tenant.http.post("/v1/workflows", json=definition)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "hello"


def test_put_registers_under_the_path_name(tenant: Tenant) -> None:
    definition = yaml.safe_load(HELLO)
    del definition["name"]
    response = tenant.http.put("/v1/workflows/greeter", json=definition)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "greeter"
    same = tenant.http.put("/v1/workflows/greeter", json={**definition, "name": "greeter"})
    assert same.status_code == 200
    mismatch = tenant.http.put("/v1/workflows/greeter", content=HELLO, headers=YAML)
    problem(mismatch, 422, "name_mismatch")


def test_the_list_shows_the_latest_version_of_each_and_no_tasks(tenant: Tenant) -> None:
    tenant.register(HELLO)
    tenant.register(HELLO.replace("hello ${input.name}", "hi ${input.name}"))
    tenant.register(HELLO.replace("name: hello", "name: other"))
    tenant.http.post("/v1/tasks", json={"type": "echo", "payload": {}})
    response = tenant.http.get("/v1/workflows")
    assert response.status_code == 200
    listed = sorted((w["name"], w["version"]) for w in response.json()["items"])
    assert listed == [("hello", 2), ("other", 1)]


def test_disable_stops_new_runs_and_enable_allows_them_again(tenant: Tenant) -> None:
    tenant.register(HELLO)
    response = tenant.http.delete("/v1/workflows/hello")
    assert response.status_code == 204
    assert response.content == b""
    assert tenant.http.get("/v1/workflows/hello").json()["disabled"] is True
    [listed] = tenant.http.get("/v1/workflows").json()["items"]
    assert listed["disabled"] is True
    refused = tenant.http.post("/v1/runs", json={"workflow": "hello", "input": {"name": "A"}})
    problem(refused, 409, "workflow_disabled")

    enabled = tenant.http.post("/v1/workflows/hello/enable")
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["disabled"] is False
    assert tenant.wait(tenant.start("hello", {"name": "A"})["id"])["status"] == "succeeded"
    problem(tenant.http.delete("/v1/workflows/nope"), 404, "not_found")
    problem(tenant.http.post("/v1/workflows/nope/enable"), 404, "not_found")


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.yml")), ids=lambda p: p.stem)
def test_an_invalid_definition_is_422_located_to_its_line(tenant: Tenant, path: Path) -> None:
    expected = expectation(path)
    response = tenant.http.post("/v1/workflows", content=path.read_bytes(), headers=YAML)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] in ("workflow_invalid", "document_invalid")
    assert body["errors"], body
    located = [
        e
        for e in body["errors"]
        if e["code"] == expected["code"] and e["line"] == int(expected["line"])
    ]
    assert located, body["errors"]
    problem_ = located[0]
    assert problem_["column"] is not None
    if "step" in expected:
        assert problem_["step"] == expected["step"]
    if "message" in expected:
        assert expected["message"] in problem_["message"]
    assert tenant.http.get("/v1/workflows").json()["items"] == []


def test_names_of_tasks_are_reserved(tenant: Tenant) -> None:
    reserved = HELLO.replace("name: hello", "name: task.echo")
    problem(tenant.http.post("/v1/workflows", content=reserved, headers=YAML), 422, "reserved_name")


def test_other_media_types_are_refused(tenant: Tenant) -> None:
    response = tenant.http.post(
        "/v1/workflows", content="<workflow/>", headers={"Content-Type": "application/xml"}
    )
    problem(response, 415, "unsupported_media_type")

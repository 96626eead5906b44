"""Tenant isolation, generated from the application's route list, on both stores.

Every route of ``create_app`` becomes a test. A route that names an object (a path parameter)
is called by tenant B on tenant A's object and must answer 404 ``not_found``, exactly as for an
object that does not exist, and change nothing of A's; the same call by A must find it. List
routes must show B its own items and none of A's; routes that create must not reach A's
objects through a name or an idempotency key. Routes without tenant data are exempt, each
with its reason. A route that is in neither table fails: a new route cannot ship unchecked.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from tests.api.helpers import BROKEN, CHATTY, HELLO, TERMINAL, Api, Json, Tenant, problem
from tests.support.prometheus import samples

from overture.api import Services, create_app
from overture.settings import Settings
from overture.store import Store
from overture.telemetry.gauges import TENANT_FREE
from overture.triggers.signatures import sign

Route = tuple[str, str]


def app_routes(app: FastAPI) -> list[Route]:
    """``(method, path)`` of every route in ``app.routes``, included routers expanded."""
    expand = getattr(fastapi.routing, "iter_route_contexts", None)  # FastAPI >= 0.13x
    routes: Iterator[Any] = iter(expand(app.routes) if expand else app.routes)
    found = {
        (method, route.path)
        for route in routes
        for method in (getattr(route, "methods", None) or ())
        if method != "HEAD"
    }
    return sorted(found, key=lambda r: (r[1], r[0]))


def build_app() -> FastAPI:
    """The application as ``overture serve`` builds it (routes only: nothing is called)."""
    return create_app(Services(store=cast(Store, None), settings=Settings(), auth_required=True))


ROUTES = app_routes(build_app())

EXEMPT: dict[Route, str] = {
    ("GET", "/health"): "liveness: no data at all",
    ("GET", "/ready"): "readiness: names the database kind and migrations, nothing of a tenant",
    ("GET", "/openapi.json"): "the API's description, the same for everyone",
    ("GET", "/docs"): "the API's description, the same for everyone",
    ("GET", "/docs/oauth2-redirect"): "part of the interactive docs",
    ("GET", "/redoc"): "the API's description, the same for everyone",
    ("GET", "/v1/workers"): "workers serve every tenant; only admin keys may list them",
}


# --- the two tenants -------------------------------------------------------------------------

A_CIRCUIT = "agent:a/v1"
GUARDED = f"""\
name: guarded
steps:
  - {{id: call, uses: echo, circuit: "{A_CIRCUIT}"}}
"""

A_HOOK_SECRET = "a-hook-secret"
LISTENER = """\
name: listener
on: {events: [github.ping]}
steps:
  - id: see
    uses: echo
    with: {n: 1}
"""


@dataclass
class World:
    """Tenant A's objects, and tenant B with objects of its own (so its lists are not empty)."""

    a: Tenant
    b: Tenant
    params: dict[str, str]
    """A's object for each path parameter name."""
    a_run: Json
    a_task: Json
    b_run: Json
    b_task: Json
    b_letter: Json
    b_event: Json

    def snapshot(self) -> Json:
        """What A sees of its own tenant: a call by B must not change any of it."""
        self.settle()
        http = self.a.http
        return {
            "runs": http.get("/v1/runs", params={"limit": 1000}).json()["items"],
            "workflows": [
                http.get(f"/v1/workflows/{w['name']}").json()
                for w in http.get("/v1/workflows").json()["items"]
            ],
            "dlq": http.get("/v1/dlq", params={"include_requeued": "true"}).json()["items"],
            "events": http.get("/v1/events", params={"limit": 1000}).json()["items"],
            "schedules": [
                {k: v for k, v in s.items() if k not in ("next_fire_at", "updated_at")}
                for s in http.get("/v1/schedules").json()["items"]
            ],
            "webhook_sources": http.get("/v1/webhook-sources").json()["items"],
            "circuits": http.get("/v1/circuits").json()["items"],
        }

    def settle(self) -> None:
        """Wait until none of A's runs is still moving (calls by A may start or reopen some)."""
        for run in self.a.http.get("/v1/runs", params={"limit": 1000}).json()["items"]:
            if run["status"] not in TERMINAL:
                self.a.wait(run["id"])


def build_world(api: Api) -> World:
    a, b = api.tenant(), api.tenant()
    for tenant in (a, b):
        tenant.register(HELLO)
        tenant.register(BROKEN)
        tenant.register(CHATTY)
        tenant.register(LISTENER)
    a.register(HELLO.replace("hello ${input.name}", "hi ${input.name}"))  # A has 2 versions
    for only_a in ("spare", "private-post", "private-put"):
        a.register(HELLO.replace("name: hello", f"name: {only_a}"))
    a.register(GUARDED)  # its one run makes A's circuit (a circuit exists once used)
    a.wait(a.start("guarded")["id"])
    a_run = a.start("hello", {"name": "Ada"}, idempotency_key="shared-key")
    a_chat = a.start("chatty", {"lines": 2})
    a_broken = a.start("broken")
    a_task = a.http.post(
        "/v1/tasks", json={"type": "echo", "payload": {}, "idempotency_key": "shared-task"}
    ).json()
    b_run = b.start("hello", {"name": "Bo"})
    b_broken = b.start("broken")
    b_task = b.http.post("/v1/tasks", json={"type": "echo", "payload": {}}).json()
    for tenant, run in [(a, a_run), (a, a_chat), (a, a_broken), (a, a_task)]:
        tenant.wait(run["id"])
    for tenant, run in [(b, b_run), (b, b_broken), (b, b_task)]:
        tenant.wait(run["id"])
    [a_letter] = a.http.get("/v1/dlq").json()["items"]
    [b_letter] = b.http.get("/v1/dlq").json()["items"]
    for event_id in ("a-event", "shared-event"):
        a.http.post("/v1/events", json={"type": "nothing.listens", "id": event_id})
    b_event = b.http.post("/v1/events", json={"type": "nothing.listens", "id": "b-event"}).json()
    for schedule_id in ("yearly", "doomed", "shared"):  # paused: A's calls must not start runs
        body = {
            "id": schedule_id,
            "workflow": "spare",
            "cron": "@yearly",
            "paused": True,
            "input": {"name": "x"},
        }
        assert a.http.post("/v1/schedules", json=body).status_code == 201
    for tenant, secret in ((a, A_HOOK_SECRET), (b, "b-hook-secret")):
        # Tenant names are unique, and so must be sources' names (they are the URL).
        body = {"name": f"{tenant.name}-hooks", "scheme": "github", "secrets": [secret]}
        assert tenant.http.post("/v1/webhook-sources", json=body).status_code == 201
    params = {
        "run_id": a_chat["id"],  # it has logs
        "task_id": a_task["id"],
        "name": "spare",  # disabling it (as A does to prove the route) harms nothing
        "version": "1",
        "letter_id": str(a_letter["id"]),
        "event_id": "a-event",
        "schedule_id": "yearly",
        "source": f"{a.name}-hooks",
        "key": A_CIRCUIT,
    }
    return World(
        a=a,
        b=b,
        params=params,
        a_run=a_run,
        a_task=a_task,
        b_run=b_run,
        b_task=b_task,
        b_letter=b_letter,
        b_event=b_event["event"],
    )


@pytest.fixture(scope="module")
def world(api: Api) -> World:
    return build_world(api)


# --- checks ----------------------------------------------------------------------------------

BODIES: dict[Route, Json] = {
    ("POST", "/v1/runs/{run_id}/signal"): {"name": "poke"},
    ("POST", "/v1/webhook-sources/{source}/rotate"): {"secret": "rotated"},
}
"""Bodies for object routes that need one (B must get 404, not a complaint about the body)."""


def object_route(world: World, method: str, path: str) -> None:
    """B gets 404 on A's object and changes nothing; A, making the same call, finds it."""
    concrete = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: world.params[m.group(1)], path)
    body = BODIES.get((method, path))
    before = world.snapshot()
    for scope in ("read", "write", "admin"):
        response = world.b.client(scope).request(method, concrete, json=body)
        if response.status_code != 403:  # a scope too weak for the route says nothing
            problem(response, 404, "not_found")
    assert world.snapshot() == before, f"tenant B changed tenant A's data with {method} {path}"
    mine = world.a.http.request(method, concrete, json=body)
    assert mine.status_code != 404, f"A's own {method} {concrete}: {mine.text}"
    assert mine.status_code < 500, mine.text
    world.settle()


CHECKS: dict[Route, Callable[[World], None]] = {}


def check(method: str, path: str) -> Callable[[Callable[[World], None]], Callable[[World], None]]:
    def register(fn: Callable[[World], None]) -> Callable[[World], None]:
        CHECKS[(method, path)] = fn
        return fn

    return register


def ids(items: list[Json], key: str = "id") -> set[Any]:
    return {item[key] for item in items}


def listed(client: httpx.Client, path: str, **params: str) -> list[Json]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


@check("GET", "/v1/runs")
def _list_runs(world: World) -> None:
    a_ids = ids(listed(world.a.http, "/v1/runs", limit="1000"))
    for params in ({}, {"workflow": "hello"}, {"status": "succeeded"}, {"limit": "1000"}):
        mine = ids(listed(world.b.http, "/v1/runs", **params))
        assert world.b_run["id"] in mine, params
        assert not mine & a_ids, params


@check("GET", "/v1/workflows")
def _list_workflows(world: World) -> None:
    mine = {w["name"]: w["version"] for w in listed(world.b.http, "/v1/workflows")}
    assert set(mine) <= {"hello", "broken", "chatty", "listener", "private-post", "private-put"}
    assert mine["hello"] == 1  # A's hello is at version 2
    assert "spare" not in mine


@check("GET", "/v1/dlq")
def _list_dead_letters(world: World) -> None:
    a_ids = ids(listed(world.a.http, "/v1/dlq", include_requeued="true"))
    for params in ({}, {"include_requeued": "true"}):
        mine = ids(listed(world.b.http, "/v1/dlq", **params))
        assert world.b_letter["id"] in mine
        assert not mine & a_ids


@check("POST", "/v1/runs")
def _start_run(world: World) -> None:
    before = world.snapshot()
    refused = world.b.http.post("/v1/runs", json={"workflow": "spare", "input": {"name": "x"}})
    problem(refused, 404, "not_found")
    own = world.b.http.post(
        "/v1/runs",
        json={"workflow": "hello", "input": {"name": "x"}, "idempotency_key": "shared-key"},
    )
    assert own.status_code == 201, own.text  # A's key is A's: B starts a run of its own
    assert own.json()["id"] != world.a_run["id"]
    assert world.snapshot() == before


def _start_task(path: str) -> Callable[[World], None]:
    def start(world: World) -> None:
        before = world.snapshot()
        own = world.b.http.post(
            path, json={"type": "echo", "payload": {}, "idempotency_key": "shared-task"}
        )
        assert own.status_code in (200, 201), own.text  # 200: B's from the other task path
        assert own.json()["id"] != world.a_task["id"]
        assert world.b.http.get(f"/v1/tasks/{own.json()['id']}").status_code == 200
        assert world.snapshot() == before

    return start


CHECKS[("POST", "/v1/tasks")] = _start_task("/v1/tasks")
CHECKS[("POST", "/tasks")] = _start_task("/tasks")


def _register(method: str, path: str, name: str) -> Callable[[World], None]:
    def register(world: World) -> None:
        before = world.snapshot()
        definition = HELLO.replace("name: hello", f"name: {name}").replace("hello $", "yo $")
        response = world.b.http.request(
            method, path, content=definition, headers={"Content-Type": "application/yaml"}
        )
        assert response.status_code == 201, response.text
        assert (response.json()["version"], response.json()["versions"]) == (1, [1])
        assert world.snapshot() == before  # A's workflow of that name is untouched

    return register


# A has these names, B does not: B registering one makes B's own version 1.
CHECKS[("POST", "/v1/workflows")] = _register("POST", "/v1/workflows", "private-post")
CHECKS[("PUT", "/v1/workflows/{name}")] = _register(
    "PUT", "/v1/workflows/private-put", "private-put"
)


@check("GET", "/v1/events")
def _list_events(world: World) -> None:
    mine = ids(listed(world.b.http, "/v1/events", limit="1000"))
    assert mine == {world.b_event["id"]}
    assert not ids(listed(world.b.http, "/v1/events", type="nothing.listens")) - mine


@check("POST", "/v1/events")
def _send_event(world: World) -> None:
    before = world.snapshot()
    own = world.b.http.post("/v1/events", json={"type": "nothing.listens", "id": "shared-event"})
    assert own.status_code == 201, "A's event id is A's: B's event is new"
    assert world.snapshot() == before


@check("GET", "/metrics")
def _metrics(world: World) -> None:
    """B's scrape has B's series and the workers' (which serve every tenant), none of A's."""
    for scope in ("read", "write", "admin"):  # B is not the operator tenant: admin sees B's too
        response = world.b.client(scope).get("/metrics")
        assert response.status_code == 200, response.text
        seen = samples(response.text)
        tenants = {dict(labels).get("tenant") for _, labels in seen}
        assert world.b.name in tenants  # its dead letter, its runs
        assert tenants <= {world.b.name, None}, scope
        for name, labels in seen:
            if "tenant" not in dict(labels):
                assert any(name.startswith(family) for family in TENANT_FREE), name


@check("GET", "/v1/circuits")
def _list_circuits(world: World) -> None:
    assert A_CIRCUIT in ids(listed(world.a.http, "/v1/circuits"), "key")
    assert listed(world.b.http, "/v1/circuits") == []


@check("GET", "/v1/status")
def _status(world: World) -> None:
    """B's counts are B's: every tenant of the session has dead letters, B has one; A has an
    unfinished run (delayed) of a workflow B does not have, B none."""
    for run in listed(world.b.http, "/v1/runs", limit="1000"):  # B's own counts stand still
        if run["status"] not in TERMINAL:
            world.b.wait(run["id"])
    world.a.register(HELLO.replace("name: hello", "name: a-later"))
    later = world.a.start("a-later", {"name": "later"}, delay=3600)
    try:
        theirs = world.a.http.get("/v1/status").json()
        assert {(r["workflow"], r["count"]) for r in theirs["runs"]} >= {("a-later", 1)}
        assert sum(q["delayed"] for q in theirs["queues"]) >= 1
        for scope in ("read", "write", "admin"):
            mine = world.b.client(scope).get("/v1/status").json()
            assert mine["tenant"] == world.b.name
            assert mine["dead_letters"] == len(listed(world.b.http, "/v1/dlq")) == 1
            assert A_CIRCUIT not in ids(mine["circuits"], "key")
            own = listed(world.b.http, "/v1/runs", limit="1000")
            unfinished = sorted(
                (r["workflow"], r["status"]) for r in own if r["status"] not in TERMINAL
            )
            counted = sorted(
                (r["workflow"], r["status"]) for r in mine["runs"] for _ in range(r["count"])
            )
            assert counted == unfinished
            assert sum(q["ready"] + q["delayed"] for q in mine["queues"]) == 0, mine["queues"]
            assert (mine["workers"]["items"] is None) == (scope != "admin")
    finally:
        world.a.http.post(f"/v1/runs/{later['id']}/cancel", json={})


@check("GET", "/v1/schedules")
def _list_schedules(world: World) -> None:
    assert listed(world.b.http, "/v1/schedules") == []


@check("POST", "/v1/schedules")
def _create_schedule(world: World) -> None:
    before = world.snapshot()
    body = {
        "id": "shared",
        "workflow": "spare",
        "cron": "@yearly",
        "paused": True,
        "input": {"name": "x"},
    }
    problem(world.b.http.post("/v1/schedules", json=body), 404, "not_found")  # A's workflow
    own = world.b.http.post("/v1/schedules", json={**body, "workflow": "hello"})
    assert own.status_code == 201, "A's schedule id is A's"
    assert world.snapshot() == before


@check("DELETE", "/v1/schedules/{schedule_id}")
def _delete_schedule(world: World) -> None:
    before = world.snapshot()
    for scope in ("write", "admin"):
        problem(world.b.client(scope).delete("/v1/schedules/doomed"), 404, "not_found")
    assert world.snapshot() == before
    assert world.a.http.delete("/v1/schedules/doomed").status_code == 204


@check("GET", "/v1/webhook-sources")
def _list_webhook_sources(world: World) -> None:
    a_names = {s["name"] for s in listed(world.a.http, "/v1/webhook-sources")}
    mine = {s["name"] for s in listed(world.b.http, "/v1/webhook-sources")}
    assert world.params["source"] in a_names
    assert mine == {f"{world.b.name}-hooks"}


@check("POST", "/v1/webhook-sources")
def _create_webhook_source(world: World) -> None:
    before = world.snapshot()
    body = {"name": world.params["source"], "scheme": "clickup", "secrets": ["b's"]}
    # Names are the URL, so unique across tenants: B learns only that the name is taken.
    problem(world.b.http.post("/v1/webhook-sources", json=body), 409, "webhook_source_exists")
    assert world.snapshot() == before


@check("DELETE", "/v1/webhook-sources/{source}")
def _delete_webhook_source(world: World) -> None:
    # Not the shared source: the routes after this one must still find it.
    name = f"{world.a.name}-doomed"
    body = {"name": name, "scheme": "github", "secrets": ["x"]}
    assert world.a.http.post("/v1/webhook-sources", json=body).status_code == 201
    before = world.snapshot()
    for scope in ("read", "write", "admin"):
        response = world.b.client(scope).delete(f"/v1/webhook-sources/{name}")
        if response.status_code != 403:
            problem(response, 404, "not_found")
    assert world.snapshot() == before
    assert world.a.http.delete(f"/v1/webhook-sources/{name}").status_code == 204


@check("POST", "/v1/webhooks/{source}")
def _deliver_webhook(world: World) -> None:
    """Public: whoever posts (with B's key or none), the source's tenant gets the event."""
    b_runs = ids(listed(world.b.http, "/v1/runs", limit="1000"))
    b_events = listed(world.b.http, "/v1/events", limit="1000")
    for sender, client in (("b", world.b.http), ("anyone", world.a.api.client())):
        body = b'{"zen": "one tenant", "sent_by": "%s"}' % sender.encode()
        headers = sign(
            "github",
            body=body,
            secret=A_HOOK_SECRET,
            now=time.time(),
            delivery_id=uuid.uuid4().hex,
            event_type="ping",
        )
        response = client.post(
            f"/v1/webhooks/{world.params['source']}", content=body, headers=headers
        )
        assert response.status_code == 202, response.text
        [route] = response.json()["event"]["routes"]
        assert route["workflow"] == "listener"  # A's: B's listens for the same type
        assert world.a.http.get(f"/v1/runs/{route['run_id']}").status_code == 200
        problem(world.b.http.get(f"/v1/runs/{route['run_id']}"), 404, "not_found")
    assert ids(listed(world.b.http, "/v1/runs", limit="1000")) == b_runs
    assert listed(world.b.http, "/v1/events", limit="1000") == b_events
    world.settle()


def uncovered(routes: list[Route]) -> list[Route]:
    """Routes that are neither checked nor exempt."""
    return [
        route
        for route in routes
        if route not in CHECKS and route not in EXEMPT and "{" not in route[1]
    ]


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_tenant_b_cannot_reach_tenant_a(world: World, method: str, path: str) -> None:
    route = (method, path)
    if route in EXEMPT:
        assert EXEMPT[route]
        return
    if route in CHECKS:
        CHECKS[route](world)
        return
    if "{" in path:
        object_route(world, method, path)
        return
    pytest.fail(
        f"{method} {path} has no tenant-isolation check: add one to CHECKS, or a reason to "
        "EXEMPT if it shows no tenant's data"
    )


def test_the_tables_name_only_routes_that_exist() -> None:
    stale = (set(CHECKS) | set(EXEMPT)) - set(ROUTES)
    assert not stale, f"checks or exemptions for routes that are gone: {sorted(stale)}"
    assert not uncovered(ROUTES)


def test_a_new_route_without_a_check_is_caught() -> None:
    app = build_app()

    @app.get("/v1/secrets")
    async def secrets() -> dict[str, str]:
        return {}

    assert uncovered(app_routes(app)) == [("GET", "/v1/secrets")]


def test_every_object_route_names_a_parameter_the_world_has() -> None:
    names = {
        "run_id",
        "task_id",
        "name",
        "version",
        "letter_id",
        "event_id",
        "schedule_id",
        "source",
    }
    for _, path in ROUTES:
        assert set(re.findall(r"\{(\w+)\}", path)) <= names, path

"""Webhooks through a real ``overture serve``, on both stores: signed deliveries start the runs
of the workflows listening for their event type, anything else is refused with nothing stored;
a delivery sent again is acknowledged once; sources are managed by admins, one tenant at a time,
and their secrets never come back out. Sources from the config file have their own server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.api.helpers import Api, Json, StoreThread, Tenant, create_key, problem
from tests.support.server import RunningServer, run_serve, start_server

from overture.settings import SettingsInvalid
from overture.store.records import WebhookSecret, WebhookSource
from overture.triggers.signatures import TYPE_FIELDS, sign
from overture.triggers.webhooks import check_shadowing, config_sources


def secret() -> str:
    """A new secret every scheme can use (Standard Webhooks wants whsec_<base64>)."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


SHOP = {
    "header": "X-Shop-Signature",
    "prefix": "sha256=",
    "timestamp_header": "X-Shop-Time",
    "id_header": "X-Shop-Delivery",
    "event_header": "X-Shop-Event",
}
# scheme: (options, the header carrying the signature or key, the sender's event type)
SCHEMES: dict[str, tuple[dict[str, Any], str, str]] = {
    "github": ({}, "X-Hub-Signature-256", "pull_request"),
    "standard": ({}, "webhook-signature", "invoice.paid"),
    "stripe": ({}, "Stripe-Signature", "invoice.paid"),
    "clickup": ({}, "X-Signature", "taskCreated"),
    "hmac": (SHOP, "X-Shop-Signature", "order.paid"),
    "make": ({}, "x-make-apikey", "scenario.done"),
}
BODY_SIGNING = [s for s in SCHEMES if s != "make"]  # Make's key authenticates, signs nothing
TIMESTAMPED = ["standard", "stripe"]
STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
LISTENER = """\
name: {name}
on: {{events: [{type}]}}
steps:
  - id: see
    uses: echo
    with: {{action: "${{input.payload.action}}", source: "${{input.webhook.source}}"}}
output: ${{steps.see.output}}
"""


@dataclass
class Source:
    """A webhook source, its tenant's admin client, and a sender that signs as it would."""

    url: str
    admin: httpx.Client
    scheme: str
    name: str
    secret: str
    responses: list[httpx.Response] = field(default_factory=list)

    @property
    def options(self) -> dict[str, Any]:
        return SCHEMES[self.scheme][0]

    @property
    def event_type(self) -> str:
        prefix = self.name if self.scheme in ("standard", "hmac") else self.scheme
        return f"{prefix}.{SCHEMES[self.scheme][2]}"

    def body(self) -> bytes:
        """A new delivery's body (never sent before: it holds a fresh id)."""
        data: Json = {"action": "opened", "nonce": uuid.uuid4().hex}
        if self.scheme in TYPE_FIELDS:
            data[TYPE_FIELDS[self.scheme]] = SCHEMES[self.scheme][2]
        if self.scheme == "stripe":
            data["id"] = f"evt_{uuid.uuid4().hex}"
        return json.dumps(data).encode()

    def headers(self, body: bytes, *, secret: str | None = None, skew: float = 0) -> dict[str, str]:
        return sign(
            self.scheme,
            body=body,
            secret=secret or self.secret,
            options=self.options,
            # Signed timestamps are whole seconds: rounded away from now, so that a time meant
            # to be off by more than the tolerance never rounds back within it.
            now=(math.ceil if skew > 0 else math.floor)(time.time()) + skew,
            delivery_id=uuid.uuid4().hex,
            event_type=SCHEMES[self.scheme][2],
        )

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """Deliver as the sender does: no API key."""
        response = httpx.post(
            f"{self.url}/v1/webhooks/{self.name}",
            content=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=30,
        )
        self.responses.append(response)
        return response

    def deliver(self, *, secret: str | None = None, skew: float = 0) -> httpx.Response:
        body = self.body()
        return self.post(body, self.headers(body, secret=secret, skew=skew))

    def listen(self, workflow: str | None = None) -> str:
        """Register a workflow listening for the source's event type; its name."""
        name = workflow or f"on-{self.name}"
        listener = LISTENER.format(name=name, type=self.event_type)
        response = self.admin.post(
            "/v1/workflows", content=listener, headers={"Content-Type": "application/yaml"}
        )
        assert response.status_code == 201, response.text
        return name

    def rotate(self, new: str, **body: Any) -> Json:
        response = self.admin.post(
            f"/v1/webhook-sources/{self.name}/rotate", json={"secret": new, **body}
        )
        self.responses.append(response)
        assert response.status_code == 200, response.text
        found: Json = response.json()
        return found


def add_source(tenant: Tenant, scheme: str, **extra: Any) -> Source:
    name = f"{scheme}-{uuid.uuid4().hex[:8]}"
    made = Source(url=tenant.api.url, admin=tenant.http, scheme=scheme, name=name, secret=secret())
    body = {"name": made.name, "scheme": scheme, "secrets": [made.secret], "options": made.options}
    response = tenant.http.post("/v1/webhook-sources", json={**body, **extra})
    made.responses.append(response)
    assert response.status_code == 201, response.text
    return made


def runs(tenant: Tenant) -> list[Json]:
    response = tenant.http.get("/v1/runs", params={"limit": 1000})
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


def stored_events(api: Api, tenant: Tenant) -> list[Any]:
    return api.db.call(lambda store: store.list_events(tenant=tenant.name, limit=1000)).items


def refused(api: Api, tenant: Tenant, response: httpx.Response, reason: str) -> None:
    """401 ``signature_invalid`` for ``reason``, and nothing stored or started."""
    body = problem(response, 401, "signature_invalid")
    assert body["detail"].startswith(f"{reason}: "), body
    assert [e["code"] for e in body["errors"]] == [reason]
    assert stored_events(api, tenant) == []
    assert runs(tenant) == []


# --- deliveries ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_signed_delivery_starts_a_run_of_the_listening_workflow(
    api: Api, tenant: Tenant, scheme: str
) -> None:
    source = add_source(tenant, scheme)
    workflow = source.listen()
    tenant.register(LISTENER.format(name="deaf", type="something.else"))

    response = source.deliver()

    assert response.status_code == 202, response.text
    event = response.json()["event"]
    assert response.json()["created"] is True
    assert event["type"] == source.event_type
    assert event["source"] == f"webhook:{source.name}"
    assert event["payload"]["action"] == "opened"
    [route] = event["routes"]
    assert (route["workflow"], route["reason"]) == (workflow, None)
    assert [r["id"] for r in runs(tenant)] == [route["run_id"]]
    run = tenant.wait(route["run_id"])
    assert run["status"] == "succeeded", run
    assert run["output"] == {"action": "opened", "source": source.name}


@pytest.mark.parametrize("scheme", BODY_SIGNING)
def test_a_body_changed_by_one_byte_is_refused(api: Api, tenant: Tenant, scheme: str) -> None:
    source = add_source(tenant, scheme)
    source.listen()
    body = source.body()
    headers = source.headers(body)

    response = source.post(body.replace(b"opened", b"openeD"), headers)

    refused(api, tenant, response, "bad_signature")


def test_make_authenticates_the_sender_but_does_not_sign_the_body(api: Api, tenant: Tenant) -> None:
    source = add_source(tenant, "make")
    body = source.body()
    headers = source.headers(body)

    response = source.post(body.replace(b"opened", b"openeD"), headers)

    assert response.status_code == 202, response.text  # what docs/webhooks.md warns about


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_wrong_secret_is_refused(api: Api, tenant: Tenant, scheme: str) -> None:
    source = add_source(tenant, scheme)
    source.listen()

    refused(api, tenant, source.deliver(secret=secret()), "bad_signature")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_missing_signature_is_refused(api: Api, tenant: Tenant, scheme: str) -> None:
    source = add_source(tenant, scheme)
    source.listen()
    body = source.body()
    header = SCHEMES[scheme][1].lower()
    headers = {k: v for k, v in source.headers(body).items() if k.lower() != header}

    refused(api, tenant, source.post(body, headers), "missing_header")


@pytest.mark.parametrize("scheme", TIMESTAMPED)
@pytest.mark.parametrize(("skew", "reason"), [(-301, "stale"), (301, "future")])
def test_a_timestamp_more_than_5_minutes_off_is_refused(
    api: Api, tenant: Tenant, scheme: str, skew: float, reason: str
) -> None:
    source = add_source(tenant, scheme)
    source.listen()

    refused(api, tenant, source.deliver(skew=skew), f"{reason}_timestamp")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_delivery_sent_again_is_acknowledged_and_starts_nothing(
    api: Api, tenant: Tenant, scheme: str
) -> None:
    source = add_source(tenant, scheme)
    source.listen()
    body = source.body()
    headers = source.headers(body)
    first = source.post(body, headers)

    again = source.post(body, headers)

    assert (first.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["created"] is False
    assert again.json()["event"] == first.json()["event"]
    assert len(runs(tenant)) == 1
    assert len(stored_events(api, tenant)) == 1


UNSIGNED_IDS = [
    pytest.param("github", {}, "X-GitHub-Delivery", id="github"),
    pytest.param(
        "hmac", {k: SHOP[k] for k in SHOP if k != "timestamp_header"}, "X-Shop-Delivery", id="hmac"
    ),
    pytest.param("hmac", SHOP, "X-Shop-Delivery", id="hmac-timestamp"),
]


@pytest.mark.parametrize(("scheme", "options", "id_header"), UNSIGNED_IDS)
def test_a_captured_delivery_sent_again_under_a_new_id_starts_nothing(
    api: Api, tenant: Tenant, scheme: str, options: dict[str, Any], id_header: str
) -> None:
    source = add_source(tenant, scheme, options=options)
    source.listen()
    body = source.body()
    headers = sign(
        scheme,
        body=body,
        secret=source.secret,
        options=options,
        now=time.time(),
        delivery_id="captured",
        event_type=SCHEMES[scheme][2],
    )
    first = source.post(body, headers)

    # The id header is not signed: whoever captured the delivery can change it.
    again = source.post(body, {**headers, id_header: "fresh"})

    assert (first.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["created"] is False
    assert again.json()["event"]["id"] == first.json()["event"]["id"]
    assert len(runs(tenant)) == 1
    assert len(stored_events(api, tenant)) == 1


def test_two_standard_deliveries_with_one_body_are_two_events(api: Api, tenant: Tenant) -> None:
    source = add_source(tenant, "standard")
    source.listen()
    body = source.body()

    # webhook-id is signed: a sender may well send one body twice as two messages.
    first, second = (source.post(body, source.headers(body)) for _ in range(2))

    assert (first.status_code, second.status_code) == (202, 202), second.text
    assert len(runs(tenant)) == 2


def test_100_concurrent_deliveries_of_one_delivery_start_each_workflow_once(
    api: Api, tenant: Tenant
) -> None:
    source = add_source(tenant, "github")
    source.listen("first-listener")
    source.listen("second-listener")
    body = source.body()
    headers = {**source.headers(body), "Content-Type": "application/json"}

    async def deliver_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=api.url, timeout=60, limits=limits) as client:
            send = [
                client.post(f"/v1/webhooks/{source.name}", content=body, headers=headers)
                for _ in range(100)
            ]
            return list(await asyncio.gather(*send))

    responses = asyncio.run(deliver_all())

    assert sorted(r.status_code for r in responses) == [200] * 99 + [202]
    assert [r.json()["created"] for r in responses].count(True) == 1
    assert len({r.json()["event"]["id"] for r in responses}) == 1
    started = {r["workflow"]: r["run_id"] for r in responses[0].json()["event"]["routes"]}
    assert set(started) == {"first-listener", "second-listener"}
    assert sorted(r["id"] for r in runs(tenant)) == sorted(started.values())
    assert len(stored_events(api, tenant)) == 1


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_rotated_out_secret_works_until_it_retires(api: Api, tenant: Tenant, scheme: str) -> None:
    source = add_source(tenant, scheme)
    old, new, newest = source.secret, secret(), secret()

    rotated = source.rotate(new)

    assert rotated["active_secrets"] == 2
    assert rotated["secrets"][0]["expires_at"] is None
    assert rotated["secrets"][1]["expires_at"] is not None
    assert source.deliver(secret=new).status_code == 202
    assert source.deliver(secret=old).status_code == 202  # within the default 24h

    at_once = source.rotate(newest, retire_after=0)

    assert at_once["active_secrets"] == 1
    assert source.deliver(secret=newest).status_code == 202
    for retired in (new, old):
        problem(source.deliver(secret=retired), 401, "signature_invalid")


def test_an_unknown_source_is_not_found_and_a_deleted_one_no_longer_accepts(
    tenant: Tenant,
) -> None:
    source = add_source(tenant, "github")
    assert tenant.http.delete(f"/v1/webhook-sources/{source.name}").status_code == 204

    problem(source.deliver(), 404, "not_found")
    problem(tenant.http.get(f"/v1/webhook-sources/{source.name}"), 404, "not_found")
    ghost = Source(tenant.api.url, tenant.http, scheme="github", name="nope", secret=secret())
    problem(ghost.deliver(), 404, "not_found")


def test_a_delivery_over_the_body_limit_is_refused(api: Api, tenant: Tenant) -> None:
    source = add_source(tenant, "github")
    body = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'

    problem(source.post(body, source.headers(body)), 413, "body_too_large")
    assert stored_events(api, tenant) == []


# --- sources ---------------------------------------------------------------------------------


def test_a_source_is_shown_with_its_url_and_when_its_secrets_retire_never_their_values(
    api: Api, tenant: Tenant
) -> None:
    source = add_source(tenant, "stripe", options={"tolerance": "10m", "event_prefix": "pay"})
    created = source.responses[0]
    source.rotate(secret(), retire_after="1h")
    http = tenant.http

    shown = [
        created,
        http.get(f"/v1/webhook-sources/{source.name}"),
        http.get("/v1/webhook-sources"),
        source.deliver(),
        source.deliver(secret="wrong"),
    ]

    assert created.headers["Location"] == f"/v1/webhook-sources/{source.name}"
    body = created.json()
    assert body["url"] == f"/v1/webhooks/{source.name}"
    assert (body["scheme"], body["origin"], body["active_secrets"]) == ("stripe", "api", 1)
    assert body["options"] == {
        "header": "Stripe-Signature",
        "tolerance": 600,
        "event_prefix": "pay",
    }
    assert [s["expires_at"] for s in body["secrets"]] == [None]
    [listed] = shown[2].json()["items"]
    assert listed["name"] == source.name and listed["active_secrets"] == 2
    assert shown[3].json()["event"]["type"] == "pay.invoice.paid"
    for response in [*shown, *source.responses]:
        assert response.status_code < 500
        assert source.secret not in response.text
        for part in source.secret.removeprefix("whsec_").split("/"):
            # (a JSON "/" may be escaped; a short piece could be in any text by chance)
            assert len(part) < 8 or part not in response.text


def test_only_admin_keys_manage_sources(tenant: Tenant) -> None:
    source = add_source(tenant, "github")
    calls = [
        ("GET", "/v1/webhook-sources", None),
        ("POST", "/v1/webhook-sources", {"name": "x-y", "scheme": "github", "secrets": ["s"]}),
        ("GET", f"/v1/webhook-sources/{source.name}", None),
        ("POST", f"/v1/webhook-sources/{source.name}/rotate", {"secret": "s2"}),
        ("DELETE", f"/v1/webhook-sources/{source.name}", None),
    ]
    for scope in ("read", "write"):
        for method, path, body in calls:
            response = tenant.client(scope).request(method, path, json=body)
            assert problem(response, 403, "forbidden")["detail"].startswith(
                "this key lacks the 'admin' scope"
            )
    assert tenant.http.get(f"/v1/webhook-sources/{source.name}").json()["active_secrets"] == 1


def test_another_tenants_source_looks_like_one_that_does_not_exist(api: Api) -> None:
    owner, other = api.tenant(), api.tenant()
    source = add_source(owner, "github")
    add_source(other, "clickup")
    path = f"/v1/webhook-sources/{source.name}"

    problem(other.http.get(path), 404, "not_found")
    problem(other.http.post(f"{path}/rotate", json={"secret": "theirs"}), 404, "not_found")
    problem(other.http.delete(path), 404, "not_found")
    listed = [s["name"] for s in other.http.get("/v1/webhook-sources").json()["items"]]

    assert source.name not in listed and len(listed) == 1
    assert owner.http.get(path).json()["active_secrets"] == 1  # untouched
    assert source.deliver().status_code == 202  # the owner's secret still verifies


def test_a_taken_name_is_a_conflict_whoever_took_it(api: Api) -> None:
    owner, other = api.tenant(), api.tenant()
    source = add_source(owner, "github")
    again = {"name": source.name, "scheme": "clickup", "secrets": [secret()]}

    for tenant in (owner, other):
        problem(tenant.http.post("/v1/webhook-sources", json=again), 409, "webhook_source_exists")
    assert owner.http.get(f"/v1/webhook-sources/{source.name}").json()["scheme"] == "github"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"scheme": "gitlab"}, "scheme"),
        ({"name": "has space"}, "name"),
        ({"name": "-starts-with-dash"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"secrets": []}, "secrets"),
        ({"secrets": [""]}, "secrets"),
        ({"scheme": "standard", "secrets": ["not a whsec key"]}, "secrets"),
        ({"options": {"colour": "blue"}}, "options"),
        ({"scheme": "hmac"}, "options"),  # hmac needs its header
        ({"options": {"event_prefix": "a b"}}, "options"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_source_that_cannot_work_is_refused(
    tenant: Tenant, change: dict[str, Any], where: str
) -> None:
    body = {"name": f"bad-{uuid.uuid4().hex[:8]}", "scheme": "github", "secrets": ["s"], **change}

    found = problem(tenant.http.post("/v1/webhook-sources", json=body), 422, "invalid_request")

    assert any(where in e["path"] for e in found["errors"]), found
    assert "not a whsec key" not in json.dumps(found)
    assert tenant.http.get("/v1/webhook-sources").json()["items"] == []


@pytest.mark.parametrize(
    "change",
    [{"retire_after": "soon"}, {"retire_after": -1}, {"retire_after": "400d"}, {"secret": ""}],
)
def test_a_rotation_that_cannot_work_is_refused(tenant: Tenant, change: dict[str, Any]) -> None:
    source = add_source(tenant, "standard")
    body = {"secret": secret(), **change}

    response = tenant.http.post(f"/v1/webhook-sources/{source.name}/rotate", json=body)

    problem(response, 422, "invalid_request")
    assert source.deliver().status_code == 202  # the old secret is still the only one


@pytest.mark.parametrize("given", ["true", '"nan"', '"-inf"', '" in f"', "NaN", "Infinity"])
def test_retire_after_is_a_finite_number_of_seconds_or_a_duration(
    tenant: Tenant, given: str
) -> None:
    source = add_source(tenant, "github")
    content = f'{{"secret": "new-secret", "retire_after": {given}}}'

    response = tenant.http.post(
        f"/v1/webhook-sources/{source.name}/rotate",
        content=content,
        headers={"Content-Type": "application/json"},
    )

    found = problem(response, 422, "invalid_request")
    assert any("retire_after" in e["path"] for e in found["errors"]), found
    assert "negative" not in found["detail"]
    assert tenant.http.get(f"/v1/webhook-sources/{source.name}").json()["active_secrets"] == 1


def test_a_rotation_keeps_the_other_secrets_for_24_hours_by_default(tenant: Tenant) -> None:
    source = add_source(tenant, "github")
    before = time.time()

    rotated = source.rotate(secret())

    retiring = datetime.fromisoformat(rotated["secrets"][1]["expires_at"]).timestamp()
    assert before + 24 * 3600 - 5 < retiring < time.time() + 24 * 3600 + 5


def test_a_standard_source_refuses_a_new_secret_it_cannot_use(tenant: Tenant) -> None:
    source = add_source(tenant, "standard")
    path = f"/v1/webhook-sources/{source.name}/rotate"

    found = problem(tenant.http.post(path, json={"secret": "plain"}), 422, "invalid_request")

    assert "whsec_<base64>" in found["detail"]
    assert source.deliver().status_code == 202


# --- sources from the config file ------------------------------------------------------------

CONFIG = """\
[webhooks.cfg-github]
scheme = "github"
secrets = ["env:CFG_GITHUB_SECRET"]

[webhooks.cfg-acme]
scheme = "standard"
secrets = ["env:CFG_ACME_SECRET"]
options = {event_prefix = "acme"}
tenant = "acme"
"""


@dataclass
class Configured:
    server: RunningServer
    secrets: dict[str, str]
    keys: dict[str, str]
    """Admin keys of tenants 'default', 'acme' and 'other'."""
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def client(self, tenant: str) -> httpx.Client:
        if tenant not in self.clients:
            auth = {"Authorization": f"Bearer {self.keys[tenant]}"}
            self.clients[tenant] = httpx.Client(base_url=self.server.url, headers=auth, timeout=30)
        return self.clients[tenant]

    def source(self, tenant: str, name: str, scheme: str) -> Source:
        admin = self.client(tenant)
        return Source(self.server.url, admin, scheme=scheme, name=name, secret=self.secrets[name])


@pytest.fixture(scope="module", params=STORES)
def configured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Configured]:
    """A server of its own, whose overture.toml declares two sources, on a fresh database."""
    workdir = tmp_path_factory.mktemp(f"webhooks-{request.param}")
    (workdir / "overture.toml").write_text(CONFIG)
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{workdir / 'overture.db'}"
        else:
            postgres = request.getfixturevalue("postgres_server")
            template = request.getfixturevalue("postgres_template")
            url = stack.enter_context(postgres.fresh_database(template=template))
        secrets = {"cfg-github": secret(), "cfg-acme": secret()}
        db = StoreThread(url, workdir / "artifacts")
        keys = {t: create_key(db, t, ("admin",))[0] for t in ("default", "acme", "other")}
        db.close()
        env = {"CFG_GITHUB_SECRET": secrets["cfg-github"], "CFG_ACME_SECRET": secrets["cfg-acme"]}
        server = start_server(url, cwd=workdir, env=env)
        configured = Configured(server=server, secrets=secrets, keys=keys)
        try:
            yield configured
        finally:
            for client in configured.clients.values():
                client.close()
            assert server.stop() == 0, server.log
        assert secrets["cfg-github"] not in server.log


def test_a_config_source_verifies_with_the_secret_its_variable_holds(
    configured: Configured,
) -> None:
    source = configured.source("default", "cfg-github", "github")
    source.listen()

    response = source.deliver()
    forged = source.deliver(secret=secret())

    assert response.status_code == 202, response.text
    [route] = response.json()["event"]["routes"]
    assert route["run_id"] is not None
    problem(forged, 401, "signature_invalid")


def test_a_config_source_delivers_to_its_tenant_under_its_prefix(configured: Configured) -> None:
    source = configured.source("acme", "cfg-acme", "standard")
    workflow = f"acme-{uuid.uuid4().hex[:8]}"
    listener = LISTENER.format(name=workflow, type="acme.invoice.paid")
    source.admin.post(
        "/v1/workflows", content=listener, headers={"Content-Type": "application/yaml"}
    ).raise_for_status()

    response = source.deliver()

    assert response.status_code == 202, response.text
    assert response.json()["event"]["type"] == "acme.invoice.paid"
    routes = response.json()["event"]["routes"]
    assert [r["workflow"] for r in routes] == [workflow]  # acme's workflow, nobody else's
    run = source.admin.get(f"/v1/runs/{routes[0]['run_id']}")
    assert run.status_code == 200, run.text


def test_config_sources_are_listed_for_their_tenant_and_not_changed_through_the_api(
    configured: Configured,
) -> None:
    default = configured.client("default")
    path = "/v1/webhook-sources/cfg-github"

    listed = default.get("/v1/webhook-sources").json()["items"]
    shown = default.get(path)
    rotation = default.post(f"{path}/rotate", json={"secret": secret()})
    deletion = default.delete(path)
    taken = default.post(
        "/v1/webhook-sources", json={"name": "cfg-acme", "scheme": "github", "secrets": ["s"]}
    )

    assert [(s["name"], s["origin"]) for s in listed] == [("cfg-github", "config")]
    assert (shown.json()["origin"], shown.json()["active_secrets"]) == ("config", 1)
    problem(rotation, 409, "webhook_source_from_config")
    assert "[webhooks.cfg-github]" in deletion.json()["detail"]
    problem(deletion, 409, "webhook_source_from_config")
    problem(taken, 409, "webhook_source_exists")
    for response in (shown, default.get("/v1/webhook-sources")):
        assert configured.secrets["cfg-github"] not in response.text
    assert configured.source("default", "cfg-github", "github").deliver().status_code == 202


def test_another_tenants_config_source_looks_like_one_that_does_not_exist(
    configured: Configured,
) -> None:
    other = configured.client("other")
    path = "/v1/webhook-sources/cfg-acme"

    assert other.get("/v1/webhook-sources").json()["items"] == []
    problem(other.get(path), 404, "not_found")
    problem(other.post(f"{path}/rotate", json={"secret": secret()}), 404, "not_found")
    problem(other.delete(path), 404, "not_found")


def test_a_config_table_cannot_take_the_name_of_a_source_made_through_the_api(
    api: Api,
) -> None:
    made = add_source(api.tenant(), "github")
    table = {"scheme": "github", "secrets": ["s"]}
    free = f"free-{uuid.uuid4().hex[:8]}"

    tables = config_sources({free: table, made.name: table}, {})

    with pytest.raises(SettingsInvalid) as refused:
        api.db.call(lambda store: check_shadowing(store, tables))

    assert str(refused.value).startswith(f"webhooks.{made.name}: a webhook source named ")
    assert free not in str(refused.value)
    api.db.call(lambda store: check_shadowing(store, config_sources({free: table}, {})))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[webhooks.gh]\nscheme = "github"\nsecrets = ["env:UNSET_WEBHOOK_SECRET"]\n',
            "webhooks.gh: secret #1 is read from $UNSET_WEBHOOK_SECRET, which is not set",
        ),
        (
            '[webhooks.gh]\nscheme = "gitlab"\nsecrets = ["x"]\n',
            "webhooks.gh: scheme must be one of github, standard, stripe, clickup, hmac, make",
        ),
        (
            '[webhooks.gh]\nscheme = "github"\nsecret = "x"\n',
            "webhooks.gh: unknown key(s) 'secret'",
        ),
    ],
)
def test_serve_refuses_a_webhooks_table_it_cannot_use(
    sqlite_url: str, tmp_path: Path, table: str, message: str
) -> None:
    (tmp_path / "overture.toml").write_text(table)

    result = run_serve("--port", "0", "--database-url", sqlite_url, cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_a_type_and_id_the_store_cannot_keep_as_sent_are_kept_readable(
    api: Api, tenant: Tenant
) -> None:
    source = add_source(tenant, "stripe")
    body = b'{"id": "evt_\\u0000x", "type": "order\\u0000paid\\ud800", "action": "opened"}'

    response = source.post(body, source.headers(body))

    assert response.status_code == 202, response.text
    event = response.json()["event"]
    assert event["type"] == "stripe.order\ufffdpaid\ufffd"
    hashed = hashlib.sha256("evt_\ufffdx".encode()).hexdigest()  # no plain id: hashed
    assert event["id"] == f"webhook:{source.name}:sha256:{hashed}"
    assert tenant.http.get(f"/v1/events/{event['id']}").status_code == 200
    assert source.post(body, source.headers(body)).json()["created"] is False


@pytest.mark.parametrize("name", ["%00x", "a%20b", "x" * 65, "%F0%9F%AA%9D"])
def test_a_name_no_source_can_have_is_not_found(tenant: Tenant, name: str) -> None:
    problem(tenant.api.client().post(f"/v1/webhooks/{name}", content=b"{}"), 404, "not_found")
    problem(tenant.http.get(f"/v1/webhook-sources/{name}"), 404, "not_found")
    problem(tenant.http.delete(f"/v1/webhook-sources/{name}"), 404, "not_found")


def test_serve_refuses_a_table_named_like_a_source_made_through_the_api(
    sqlite_url: str, tmp_path: Path
) -> None:
    db = StoreThread(sqlite_url, tmp_path / "artifacts")
    made = WebhookSource(
        name="gh",
        scheme="github",
        secrets=(WebhookSecret(value="s", added_at=datetime.now(UTC)),),
        options={},
        tenant="acme",
    )
    db.call(lambda store: store.create_webhook_source(made))
    db.close()
    (tmp_path / "overture.toml").write_text('[webhooks.gh]\nscheme = "github"\nsecrets = ["x"]\n')

    result = run_serve("--port", "0", "--database-url", sqlite_url, cwd=tmp_path)

    assert result.returncode == 1
    said = " ".join(result.stderr.split())
    assert (
        "webhooks.gh: a webhook source named 'gh' was made through the API (tenant 'acme')" in said
    )

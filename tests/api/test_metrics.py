"""``GET /metrics`` of a real ``overture serve``, on both stores: after a workload whose outcome is
known, the counts and gauges a Prometheus scrape parses are exactly that outcome; a key sees its
own tenant only, the operator tenant's admin key every tenant.

The module starts its own server (not the suites' shared one): its counts must be this
workload's alone. Its lease is short, so its worker heartbeats (every lease / 3) while the
tests look.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.api.helpers import HELLO, TERMINAL, WAIT, StoreThread, create_key, problem
from tests.support.prometheus import Sample, sample, samples, total
from tests.support.server import RunningServer, start_server

from overture.api.auth import Principal
from overture.api.routes.metrics import seen_tenant
from overture.api.services import Services
from overture.settings import Settings
from overture.triggers.signatures import sign

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
OPERATOR = "ops"
HOOK_SECRET = "metrics-hook-secret"


def doomed(name: str, attempts: int) -> str:
    """A workflow whose one step fails every attempt, each retryable but the last allowed."""
    return f"""\
name: {name}
steps:
  - id: explode
    uses: fail
    with: {{message: "it broke", code: broke, retryable: true}}
    retry: {{max_attempts: {attempts}, initial: 10ms, jitter: 0}}
"""


LEASE = 3.0
"""Seconds: the server's worker heartbeats every second (lease / 3)."""


@dataclass
class Served:
    server: RunningServer
    keys: dict[str, str]
    """A key per role: acme (read), globex (admin), ops (admin: the operator), ops-read."""

    def get(self, key: str | None) -> httpx.Response:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return httpx.get(f"{self.server.url}/metrics", headers=headers, timeout=WAIT)

    def scrape(self, role: str) -> dict[Sample, float]:
        response = self.get(self.keys[role])
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return samples(response.text)

    def client(self, role: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {self.keys[role]}"},
            timeout=WAIT,
        )


def finish(client: httpx.Client, run_ids: list[str]) -> None:
    deadline = time.monotonic() + WAIT
    for run_id in run_ids:
        while client.get(f"/v1/runs/{run_id}").json()["status"] not in TERMINAL:
            assert time.monotonic() < deadline, f"run {run_id} never finished"
            time.sleep(0.02)


def start(client: httpx.Client, workflow: str, **fields: object) -> str:
    response = client.post("/v1/runs", json={"workflow": workflow, "input": {}, **fields})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def register(client: httpx.Client, definition: str) -> None:
    response = client.post(
        "/v1/workflows", content=definition, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 201, response.text


def workload(served: Served) -> None:
    """acme: 7 runs succeed, 2 fail for good after 1 + 2 retries; a webhook is delivered and
    one is refused. globex: a run that succeeds and a run delayed for an hour."""
    with served.client("acme-admin") as acme, served.client("globex") as globex:
        register(acme, HELLO)
        register(acme, doomed("doomed-twice", 2))
        register(acme, doomed("doomed-thrice", 3))
        runs = [start(acme, "hello", input={"name": str(n)}) for n in range(7)]
        runs += [start(acme, "doomed-twice"), start(acme, "doomed-thrice")]
        finish(acme, runs)
        source = {"name": "acme-hooks", "scheme": "github", "secrets": [HOOK_SECRET]}
        assert acme.post("/v1/webhook-sources", json=source).status_code == 201
        body = b'{"zen": "metrics"}'
        signed = sign(
            "github",
            body=body,
            secret=HOOK_SECRET,
            now=time.time(),
            delivery_id=uuid.uuid4().hex,
            event_type="ping",
        )
        assert acme.post("/v1/webhooks/acme-hooks", content=body, headers=signed).is_success
        refused = acme.post("/v1/webhooks/acme-hooks", content=body)
        assert refused.status_code == 401
        register(globex, HELLO)
        finish(globex, [start(globex, "hello", input={"name": "g"})])
        start(globex, "hello", input={"name": "later"}, delay=3600)


@contextmanager
def fresh_database(request: pytest.FixtureRequest, workdir: Path) -> Iterator[str]:
    """A fresh database of the store ``request.param`` names."""
    if request.param == "sqlite":
        yield f"sqlite:///{workdir / 'overture.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("postgres_template")
    with server.fresh_database(template=template) as url:
        yield url


@pytest.fixture(scope="module", params=STORES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("metrics")
    with fresh_database(request, workdir) as url:
        db = StoreThread(url, workdir / "artifacts")
        keys = {
            "acme": create_key(db, "acme", ("read",))[0],
            "acme-admin": create_key(db, "acme", ("admin",))[0],
            "globex": create_key(db, "globex", ("admin",))[0],
            "ops": create_key(db, OPERATOR, ("admin",))[0],
            "ops-read": create_key(db, OPERATOR, ("read",))[0],
        }
        db.close()
        server = start_server(
            url,
            "--workers",
            "4",
            "--lease",
            str(LEASE),
            cwd=workdir,
            env={
                "OVERTURE_ARTIFACTS_DIR": str(workdir / "artifacts"),
                "OVERTURE_OPERATOR_TENANT": OPERATOR,
            },
        )
        try:
            found = Served(server=server, keys=keys)
            workload(found)
            yield found
        finally:
            assert server.stop() == 0, server.log


def test_the_scrape_counts_exactly_what_the_workload_did(served: Served) -> None:
    seen = served.scrape("acme")

    def runs(name: str, **labels: str) -> float:
        return total(seen, name, tenant="acme", **labels)

    assert runs("overture_runs_started_total") == 9
    assert runs("overture_runs_finished_total", workflow="hello", status="succeeded") == 7
    assert runs("overture_runs_finished_total", status="succeeded") == 7
    assert runs("overture_runs_finished_total", status="failed") == 2
    assert runs("overture_run_duration_seconds_count", status="failed") == 2
    assert runs("overture_step_retries_total", handler="fail") == 3
    assert runs("overture_step_retries_total", workflow="doomed-thrice") == 2
    assert runs("overture_lease_expiries_total") == 0
    assert seen[sample("overture_dead_letters", tenant="acme")] == 2
    assert runs("overture_active_runs") == 0
    assert runs("overture_queue_depth") == 0
    assert runs("overture_queue_delayed") == 0
    assert runs("overture_queue_running") == 0
    assert runs("overture_steps_scheduled_total", handler="echo") == 7
    assert runs("overture_steps_scheduled_total", handler="fail") == 5
    assert runs("overture_step_executions_total", handler="echo", status="succeeded") == 7
    assert runs("overture_step_executions_total", handler="fail", status="failed") == 5
    assert runs("overture_step_executions_total", status="cancelled") == 0
    hooks = {"source": "acme-hooks", "tenant": "acme"}
    assert total(seen, "overture_webhook_verifications_total", **hooks, result="verified") == 1
    assert total(seen, "overture_webhook_verifications_total", **hooks) == 2
    assert runs("overture_step_duration_seconds_count", handler="echo") == 7  # not globex's
    assert runs("overture_step_duration_seconds_count", handler="fail") == 5
    assert runs("overture_steps_dead_lettered_total", workflow="doomed-twice", handler="fail") == 1
    assert runs("overture_steps_dead_lettered_total") == 2
    assert seen[sample("overture_workers_live")] == 1


def test_the_worker_heartbeats_are_counted(served: Served) -> None:
    deadline = time.monotonic() + WAIT
    while total(served.scrape("acme"), "overture_worker_heartbeats_total") < 2:
        assert time.monotonic() < deadline, "no heartbeat counted"
        time.sleep(LEASE / 3)


def test_every_process_series_names_one_worker(served: Served) -> None:
    seen = served.scrape("ops")
    workers = {dict(labels)["worker"] for (name, labels) in seen if "worker" in dict(labels)}
    shared = {name for name, labels in seen if name.startswith("overture_worker_last_seen")}
    assert len(workers) == 1, workers  # the counters' and the gauge's worker are the one
    assert shared == {"overture_worker_last_seen_seconds"}


def test_a_key_sees_only_its_own_tenant(served: Served) -> None:
    for role, tenant in (("acme", "acme"), ("globex", "globex"), ("ops-read", OPERATOR)):
        seen = served.scrape(role)
        tenants = {dict(labels).get("tenant") for _, labels in seen} - {None}
        assert tenants <= {tenant}, (role, tenants)
    globex = served.scrape("globex")
    assert total(globex, "overture_queue_delayed", queue="echo", tenant="globex") == 1
    assert total(globex, "overture_active_runs", workflow="hello", status="queued") == 1
    assert total(globex, "overture_runs_finished_total", status="succeeded") == 1


def test_the_operator_tenant_admin_sees_every_tenant(served: Served) -> None:
    seen = served.scrape("ops")
    tenants = {dict(labels).get("tenant") for _, labels in seen}
    assert {"acme", "globex"} <= tenants
    assert seen[sample("overture_dead_letters", tenant="acme")] == 2
    assert total(seen, "overture_runs_started_total") == 11


def test_a_scrape_without_a_key_or_with_a_bad_one_is_refused(served: Served) -> None:
    problem(served.get(None), 401, "unauthorized")
    problem(served.get("ovt_nope_nope"), 401, "unauthorized")


def test_development_mode_and_the_operator_see_all() -> None:
    def services(operator: str | None) -> Services:
        settings = Settings(operator_tenant=operator)
        return Services(store=None, settings=settings, auth_required=False)  # type: ignore[arg-type]

    admin = Principal(tenant=OPERATOR, scopes=("admin",), key_id="k")
    assert seen_tenant(Principal(tenant="default", scopes=("admin",)), services(None)) is None
    assert seen_tenant(admin, services(OPERATOR)) is None
    assert seen_tenant(admin, services(None)) == OPERATOR
    assert seen_tenant(admin, services("elsewhere")) == OPERATOR
    reader = Principal(tenant=OPERATOR, scopes=("read",), key_id="k")
    assert seen_tenant(reader, services(OPERATOR)) == OPERATOR

"""What the API suites share: a running server with its database, tenants with keys, SSE.

The session gets one ``overture serve`` process per store (``conftest.api``); each test makes
its own tenants, so tests cannot see each other's objects and need no fresh server.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from tests.api.apps import OPEN_ALL
from tests.support.server import RunningServer

from overture.apikeys import new_key
from overture.store import Store, create_store

T = TypeVar("T")
Json = dict[str, Any]

APP = "tests.api.apps:registry"
SCOPES = ("read", "write", "admin")
TERMINAL = {"succeeded", "failed", "cancelled", "compensated"}
WAIT = 30.0
"""Seconds a test waits for a run to reach a state before it fails (never reached when fine)."""

HELLO = """\
name: hello
input:
  type: object
  required: [name]
  properties: {name: {type: string}}
  additionalProperties: false
steps:
  - id: greet
    uses: echo
    with: {greeting: "hello ${input.name}"}
output: ${steps.greet.output}
"""

GATED = """\
name: gated
steps:
  - id: first
    uses: echo
    with: {n: 1}
  - id: wait
    uses: gate
    depends_on: [first]
    with: {path: "${input.gate}"}
  - id: last
    uses: echo
    depends_on: [wait]
    with: {n: 3}
"""

BROKEN = """\
name: broken
steps:
  - id: explode
    uses: fail
    with: {message: "it broke", code: broke}
"""

CHATTY = """\
name: chatty
steps:
  - id: talk
    uses: chatty
    with: {lines: "${input.lines}"}
"""


class StoreThread:
    """A store opened on an event loop of its own thread, for sync tests to call into."""

    def __init__(self, url: str, artifacts: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.store: Store = create_store(url, artifacts_dir=str(artifacts))
        self.call(lambda store: store.open())

    def call(self, work: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run_coroutine_threadsafe(work(self.store), self._loop).result(60)

    def close(self) -> None:
        self.call(lambda store: store.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def create_key(db: StoreThread, tenant: str, scopes: tuple[str, ...]) -> tuple[str, str]:
    """A new key of ``tenant``: ``(plaintext, key id)``."""
    plaintext, key_id, secret_hash = new_key()
    db.call(
        lambda store: store.create_api_key(
            key_id=key_id, tenant=tenant, name="test", secret_hash=secret_hash, scopes=scopes
        )
    )
    return plaintext, key_id


@dataclass
class Gate:
    """A file a ``gate`` step waits for: the step finishes once ``open()`` is called."""

    path: Path

    def open(self) -> None:
        self.path.touch()


@dataclass
class Api:
    """One running server, its database and what tests made on it."""

    store: str
    url: str
    server: RunningServer
    db: StoreThread
    workdir: Path
    _clients: list[httpx.Client] = field(default_factory=list)
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        """A client of the server, sending ``key`` as its bearer key (None: no key)."""
        sent = dict(headers)
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        client = httpx.Client(base_url=self.url, headers=sent, timeout=WAIT)
        self._clients.append(client)
        return client

    def tenant(self, scopes: tuple[str, ...] = SCOPES) -> Tenant:
        """A tenant of its own, with one key per scope in ``scopes``."""
        name = f"t{next(self._names)}-{uuid.uuid4().hex[:8]}"
        keys = {scope: create_key(self.db, name, (scope,)) for scope in scopes}
        return Tenant(api=self, name=name, keys={s: k for s, (k, _) in keys.items()})

    def gate(self) -> Gate:
        folder = self.workdir / "gates"
        folder.mkdir(exist_ok=True)
        return Gate(folder / uuid.uuid4().hex)

    def open_all_gates(self) -> None:
        folder = self.workdir / "gates"
        folder.mkdir(exist_ok=True)
        (folder / OPEN_ALL).touch()

    def close(self) -> None:
        for client in self._clients:
            client.close()


@dataclass
class Tenant:
    api: Api
    name: str
    keys: dict[str, str]
    _clients: dict[str, httpx.Client] = field(default_factory=dict)

    def client(self, scope: str = "admin") -> httpx.Client:
        """A client sending this tenant's key of ``scope``."""
        if scope not in self._clients:
            self._clients[scope] = self.api.client(self.keys[scope])
        return self._clients[scope]

    @property
    def http(self) -> httpx.Client:
        """The admin client: may do everything."""
        return self.client("admin")

    def register(self, definition: str) -> Json:
        """Register a workflow (YAML) and return it."""
        response = self.http.post(
            "/v1/workflows", content=definition, headers={"Content-Type": "application/yaml"}
        )
        assert response.status_code in (200, 201), response.text
        found: Json = response.json()
        return found

    def start(self, workflow: str, input: Json | None = None, **fields: Any) -> Json:
        """Start a run and return it (fails the test unless the server created it)."""
        body = {"workflow": workflow, "input": input or {}, **fields}
        response = self.http.post("/v1/runs", json=body)
        assert response.status_code == 201, response.text
        found: Json = response.json()
        return found

    def run(self, run_id: str) -> Json:
        response = self.http.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        found: Json = response.json()
        return found

    def wait(self, run_id: str, until: Callable[[Json], bool] | None = None) -> Json:
        """Poll the run until ``until`` holds (default: it finished); fail after ``WAIT``."""
        done = until or (lambda run: run["status"] in TERMINAL)
        deadline = time.monotonic() + WAIT
        while True:
            run = self.run(run_id)
            if done(run):
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} never got there; last seen: {run}")
            time.sleep(0.02)

    def wait_step(self, run_id: str, step: str, status: str) -> Json:
        """Poll until step ``step`` of the run has ``status``."""

        def reached(run: Json) -> bool:
            return any(s["id"] == step and s["status"] == status for s in run["steps"])

        return self.wait(run_id, reached)

    def events(self, run_id: str) -> list[Json]:
        response = self.http.get(f"/v1/runs/{run_id}/events")
        assert response.status_code == 200, response.text
        items: list[Json] = response.json()["items"]
        return items


def problem(response: httpx.Response, status: int, code: str) -> Json:
    """Assert ``response`` is a problem+json of ``status`` and ``code``; return its body."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json")
    body: Json = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body


# --- Server-Sent Events ----------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    id: str | None
    data: str

    @property
    def seq(self) -> int:
        assert self.id is not None
        return int(self.id)


def sse_messages(response: httpx.Response) -> Iterator[Message]:
    """The messages of an event stream (comments and ``retry`` fields skipped)."""
    event_id: str | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield Message(id=event_id, data="\n".join(data))
            event_id, data = None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                event_id = value
            elif name == "data":
                data.append(value)

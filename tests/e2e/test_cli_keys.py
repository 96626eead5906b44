"""``overture keys`` as a user runs it: real processes on a SQLite file. A created key is shown
once and works; listings never show a key or its hash; a revoked key stops working."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.support.cli import run_overture

from overture.apikeys import hash_key
from overture.store import create_store
from overture.store.records import ApiKeyRecord


class Keys:
    """``overture keys ... --database-url URL`` on the test's own database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = f"sqlite:///{directory / 'o.db'}"

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_overture("keys", *args, "--database-url", self.url, cwd=self.directory)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def lookup(self, plaintext: str) -> ApiKeyRecord | None:
        """What the API would find for this key (a fresh store, as another process)."""

        async def find() -> ApiKeyRecord | None:
            store = create_store(self.url)
            await store.open()
            try:
                return await store.api_key(hash_key(plaintext))
            finally:
                await store.close()

        return asyncio.run(find())


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


def test_create_prints_the_key_once_and_the_key_works(keys: Keys) -> None:
    done = keys("create", "--tenant", "acme", "--scopes", "write,read", "--name", "ci")

    assert done.returncode == 0, done.stdout + done.stderr
    (plaintext,) = done.stdout.split()  # stdout is the key alone: KEY=$(overture keys create)
    assert plaintext.startswith("ovt_")
    assert "will not be shown again" in done.stderr
    found = keys.lookup(plaintext)
    assert found is not None
    assert (found.tenant, found.scopes, found.name) == ("acme", ("read", "write"), "ci")
    assert found.id in done.stderr


def test_create_json_gives_id_tenant_scopes_and_key(keys: Keys) -> None:
    created = keys.json("create", "--scopes", "admin")

    assert set(created) == {"id", "tenant", "scopes", "key"}
    assert (created["tenant"], created["scopes"]) == ("default", ["admin"])
    assert created["key"].startswith(f"ovt_{created['id']}_")
    found = keys.lookup(created["key"])
    assert found is not None and found.id == created["id"]


def test_listings_show_keys_but_never_a_key_or_its_hash(keys: Keys) -> None:
    acme = keys.json("create", "--tenant", "acme", "--scopes", "read", "--name", "dashboard")
    globex = keys.json("create", "--tenant", "globex", "--scopes", "write")

    table = keys.ok("ls")
    listed = keys.json("ls")
    only_acme = keys.json("ls", "--tenant", "acme")

    assert acme["id"] in table and globex["id"] in table and "dashboard" in table
    assert [(k["id"], k["tenant"], k["scopes"]) for k in listed] == [
        (acme["id"], "acme", ["read"]),
        (globex["id"], "globex", ["write"]),
    ]
    assert [k["id"] for k in only_acme] == [acme["id"]]
    for output in (table, json.dumps(listed)):
        for key in (acme["key"], globex["key"]):
            assert key.split("_", 2)[2] not in output
            assert hash_key(key) not in output


def test_a_revoked_key_stops_working_and_is_listed_only_with_all(keys: Keys) -> None:
    kept = keys.json("create", "--scopes", "read")
    gone = keys.json("create", "--scopes", "read")

    revoked = keys.ok("revoke", gone["id"])

    assert f"key {gone['id']} of tenant default revoked" in revoked
    assert keys.lookup(gone["key"]) is None
    assert keys.lookup(kept["key"]) is not None
    assert [k["id"] for k in keys.json("ls")] == [kept["id"]]
    everything = {k["id"]: k for k in keys.json("ls", "--all")}
    assert (everything[gone["id"]]["active"], everything[kept["id"]]["active"]) == (False, True)
    assert everything[gone["id"]]["revoked_at"] is not None
    assert "revoked" in keys.ok("ls", "--all")


def test_revoking_an_unknown_or_another_tenants_key_fails_plainly(keys: Keys) -> None:
    created = keys.json("create", "--tenant", "acme", "--scopes", "read")

    unknown = keys("revoke", "nope1234")
    elsewhere = keys("revoke", created["id"], "--tenant", "globex")

    for done in (unknown, elsewhere):
        assert done.returncode == 1
        assert "not found" in done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    assert keys.lookup(created["key"]) is not None


def test_an_unknown_scope_is_refused_and_creates_nothing(keys: Keys) -> None:
    done = keys("create", "--scopes", "read,root")

    assert done.returncode == 2
    assert "unknown scope 'root'" in done.stderr
    assert "ovt_" not in done.stdout
    assert keys.json("ls", "--all") == []

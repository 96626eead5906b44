"""API keys: stored as hashes, found by hash while active, revoked for good, and cheap to look
up on every request (cached briefly, their use written at most once a minute)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from overture.apikeys import hash_key, new_key
from overture.errors import Conflict, NotFound
from overture.store import Store
from overture.store import keys as key_cache
from overture.store.records import ApiKeyRecord

from .conftest import OpenStore, execute_sql, table_rows_as_text

pytestmark = pytest.mark.asyncio


async def create(
    store: Store, *, tenant: str = "acme", scopes: tuple[str, ...] = ("read",), name: str = ""
) -> tuple[str, ApiKeyRecord]:
    """A new key of ``tenant``: its plaintext and its record."""
    plaintext, key_id, secret_hash = new_key()
    record = await store.create_api_key(
        key_id=key_id, tenant=tenant, name=name, secret_hash=secret_hash, scopes=scopes
    )
    return plaintext, record


async def last_used(store: Store, key_id: str) -> object:
    (key,) = [k for k in await store.list_api_keys(include_revoked=True) if k.id == key_id]
    return key.last_used_at


# --- creating and finding ------------------------------------------------------------------


async def test_a_created_key_is_found_by_the_hash_of_its_plaintext(store: Store) -> None:
    plaintext, created = await create(store, scopes=("write", "read"), name="ci")

    found = await store.api_key(hash_key(plaintext))

    assert found is not None
    assert (found.id, found.tenant, found.name) == (created.id, "acme", "ci")
    assert found.scopes == created.scopes == ("read", "write")
    assert found.active
    assert found.created_at == created.created_at
    assert await store.api_key(hash_key(plaintext + "x")) is None


async def test_only_the_hash_of_a_key_is_stored(store: Store, store_url: str) -> None:
    plaintext, _ = await create(store)
    secret = plaintext.split("_", 2)[2]

    (row,) = await table_rows_as_text(store_url, "api_keys")

    assert secret not in row
    assert hash_key(plaintext) in row


async def test_a_key_needs_known_scopes(store: Store) -> None:
    plaintext, key_id, secret_hash = new_key()

    with pytest.raises(ValueError, match="unknown scope 'root'"):
        await store.create_api_key(
            key_id=key_id, tenant="acme", name="", secret_hash=secret_hash, scopes=["root"]
        )

    assert await store.list_api_keys(include_revoked=True) == []
    assert await store.api_key(hash_key(plaintext)) is None


async def test_a_taken_id_or_hash_is_a_conflict(store: Store) -> None:
    first_plaintext, first = await create(store)
    plaintext, key_id, secret_hash = new_key()

    with pytest.raises(Conflict) as same_id:
        await store.create_api_key(
            key_id=first.id, tenant="acme", name="", secret_hash=secret_hash, scopes=["read"]
        )
    with pytest.raises(Conflict) as same_hash:
        await store.create_api_key(
            key_id=key_id,
            tenant="globex",
            name="",
            secret_hash=hash_key(first_plaintext),
            scopes=["admin"],
        )

    assert same_id.value.code == same_hash.value.code == "api_key_exists"
    assert [k.id for k in await store.list_api_keys()] == [first.id]
    assert await store.api_key(hash_key(plaintext)) is None
    found = await store.api_key(hash_key(first_plaintext))
    assert found is not None and (found.tenant, found.scopes) == ("acme", ("read",))


async def test_a_key_created_by_another_process_works_at_once(
    store: Store, open_store: OpenStore
) -> None:
    plaintext, key_id, secret_hash = new_key()
    assert await store.api_key(secret_hash) is None  # refusals are not remembered

    other = await open_store()
    await other.create_api_key(
        key_id=key_id, tenant="acme", name="", secret_hash=secret_hash, scopes=["read"]
    )

    found = await store.api_key(hash_key(plaintext))
    assert found is not None and found.id == key_id


# --- listing -------------------------------------------------------------------------------


async def test_keys_are_listed_oldest_first_per_tenant_or_all(store: Store) -> None:
    _, a1 = await create(store, tenant="acme", name="first")
    _, g1 = await create(store, tenant="globex")
    _, a2 = await create(store, tenant="acme", name="second")

    assert [k.id for k in await store.list_api_keys()] == [a1.id, g1.id, a2.id]
    assert [k.id for k in await store.list_api_keys(tenant="acme")] == [a1.id, a2.id]
    assert await store.list_api_keys(tenant="initech") == []
    assert await store.list_api_keys(tenant="acme") == [a1, a2]


async def test_revoked_keys_are_listed_only_when_asked(store: Store) -> None:
    _, kept = await create(store)
    _, gone = await create(store)
    revoked = await store.revoke_api_key(gone.id)

    assert [k.id for k in await store.list_api_keys()] == [kept.id]
    everything = await store.list_api_keys(include_revoked=True)
    assert [(k.id, k.active) for k in everything] == [(kept.id, True), (gone.id, False)]
    assert everything[1] == revoked


# --- revoking ------------------------------------------------------------------------------


async def test_a_revoked_key_is_refused_at_once_even_if_just_used(store: Store) -> None:
    plaintext, key = await create(store)
    assert await store.api_key(hash_key(plaintext)) is not None  # now cached

    revoked = await store.revoke_api_key(key.id, tenant="acme")

    assert revoked.id == key.id
    assert not revoked.active
    assert revoked.revoked_at is not None and revoked.revoked_at >= key.created_at
    assert await store.api_key(hash_key(plaintext)) is None


async def test_revoking_twice_keeps_the_first_revocation(store: Store) -> None:
    _, key = await create(store)
    first = await store.revoke_api_key(key.id)
    await asyncio.sleep(0.01)

    again = await store.revoke_api_key(key.id)

    assert again == first


async def test_only_the_keys_tenant_can_revoke_it(store: Store) -> None:
    plaintext, key = await create(store, tenant="acme")

    with pytest.raises(NotFound):
        await store.revoke_api_key(key.id, tenant="globex")
    with pytest.raises(NotFound):
        await store.revoke_api_key("nope1234")

    assert await store.api_key(hash_key(plaintext)) is not None
    assert (await store.revoke_api_key(key.id, tenant="acme")).revoked_at is not None


async def test_a_key_revoked_by_another_process_is_refused_within_the_cache_time(
    store: Store, open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(key_cache, "KEY_CACHE_SECONDS", 0.2)
    plaintext, key = await create(store)
    assert await store.api_key(hash_key(plaintext)) is not None

    other = await open_store()
    await other.revoke_api_key(key.id)
    await asyncio.sleep(0.3)

    assert await store.api_key(hash_key(plaintext)) is None
    assert await other.api_key(hash_key(plaintext)) is None


# --- recording use -------------------------------------------------------------------------


async def test_the_first_use_of_a_key_is_recorded(store: Store) -> None:
    plaintext, key = await create(store)
    assert key.last_used_at is None

    found = await store.api_key(hash_key(plaintext))

    assert found is not None and found.last_used_at is not None
    assert found.last_used_at >= key.created_at
    assert await last_used(store, key.id) == found.last_used_at


async def test_use_is_written_at_most_once_a_minute_whatever_the_processes(
    store: Store, open_store: OpenStore
) -> None:
    plaintext, key = await create(store)
    await store.api_key(hash_key(plaintext))
    recorded = await last_used(store, key.id)

    for _ in range(3):
        await store.api_key(hash_key(plaintext))
    other = await open_store()  # another process, which has never recorded this key's use
    assert await other.api_key(hash_key(plaintext)) is not None

    assert await last_used(store, key.id) == recorded


async def test_use_is_recorded_again_once_the_last_record_is_a_minute_old(
    store: Store, open_store: OpenStore, store_url: str
) -> None:
    plaintext, key = await create(store)
    await store.api_key(hash_key(plaintext))
    await execute_sql(
        store_url,
        "UPDATE api_keys SET last_used_at = last_used_at - 61000000",
        "UPDATE api_keys SET last_used_at = last_used_at - interval '61 seconds'",
    )
    a_minute_ago = await last_used(store, key.id)

    other = await open_store()
    found = await other.api_key(hash_key(plaintext))

    assert found is not None and found.last_used_at is not None
    assert a_minute_ago is not None and found.last_used_at > a_minute_ago
    assert await last_used(store, key.id) == found.last_used_at


# --- the cache itself, without a database --------------------------------------------------


async def test_a_key_whose_use_cannot_be_recorded_still_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, key_id, secret_hash = new_key()
    key = ApiKeyRecord(
        id=key_id, tenant="acme", name="", scopes=("read",), created_at=datetime.now(UTC)
    )
    lookups: list[str] = []

    async def lookup(found_hash: str) -> ApiKeyRecord | None:
        lookups.append(found_hash)
        return key if found_hash == secret_hash else None

    async def record_use(_: str) -> datetime | None:
        raise OSError("disk full")

    cache = key_cache.KeyCache()
    first = await cache.find(secret_hash, lookup, record_use)
    second = await cache.find(secret_hash, lookup, record_use)

    assert first == second == key
    assert lookups == [secret_hash]  # the second request was answered from memory
    assert "could not record the use of API key" in caplog.text

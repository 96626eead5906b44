"""Webhook sources: named once across tenants (the name is the URL), secrets kept to verify
signatures, rotated with an overlap so senders switch over without a refused delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from overture.errors import Conflict, NotFound
from overture.store import Store
from overture.store.records import WebhookSecret, WebhookSource

pytestmark = pytest.mark.asyncio

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def source(name: str = "gh", tenant: str = "acme", *secrets: str) -> WebhookSource:
    return WebhookSource(
        name=name,
        scheme="github",
        secrets=tuple(WebhookSecret(value=s, added_at=EPOCH) for s in secrets or ("s1",)),
        options={"event_prefix": "gh"},
        tenant=tenant,
    )


async def test_a_source_is_stored_with_its_secrets(store: Store) -> None:
    made = await store.create_webhook_source(source())

    assert (made.name, made.tenant, made.scheme, made.options) == (
        "gh",
        "acme",
        "github",
        {"event_prefix": "gh"},
    )
    assert made.created_at is not None and made.created_at > EPOCH
    assert [s.value for s in made.secrets] == ["s1"]
    assert made.secrets[0].added_at == made.created_at, "stamped when stored"
    assert made.active_secrets(datetime.now(UTC)) == ["s1"]
    assert await store.webhook_source("gh") == made
    assert await store.webhook_source("gh", tenant="acme") == made
    assert await store.list_webhook_sources(tenant="acme") == [made]


async def test_a_name_is_unique_across_tenants_and_hidden_from_others(store: Store) -> None:
    await store.create_webhook_source(source())

    with pytest.raises(Conflict) as taken:
        await store.create_webhook_source(source(tenant="globex"))
    assert taken.value.code == "webhook_source_exists"
    with pytest.raises(NotFound):
        await store.webhook_source("gh", tenant="globex")
    assert await store.list_webhook_sources(tenant="globex") == []
    with pytest.raises(NotFound):
        await store.rotate_webhook_secret("gh", "x", retire_after=0, tenant="globex")
    with pytest.raises(NotFound):
        await store.delete_webhook_source("gh", tenant="globex")
    assert (await store.webhook_source("gh")).active_secrets(datetime.now(UTC)) == ["s1"]


async def test_rotation_keeps_the_old_secret_for_a_while(store: Store) -> None:
    await store.create_webhook_source(source("gh", "acme", "s1", "s0"))

    rotated = await store.rotate_webhook_secret("gh", "s2", retire_after=3600, tenant="acme")

    now = datetime.now(UTC)
    assert rotated.active_secrets(now) == ["s2", "s1", "s0"]
    assert rotated.active_secrets(now + timedelta(hours=2)) == ["s2"]
    again = await store.rotate_webhook_secret("gh", "s3", retire_after=7200, tenant="acme")
    # s1 and s0 keep their earlier end; s2 retires two hours from now.
    assert again.active_secrets(now + timedelta(minutes=90)) == ["s3", "s2"]
    assert again.active_secrets(now + timedelta(hours=3)) == ["s3"]


async def test_rotation_with_no_overlap_retires_the_others_at_once(store: Store) -> None:
    await store.create_webhook_source(source("gh", "acme", "s1"))

    rotated = await store.rotate_webhook_secret("gh", "s2", retire_after=0, tenant="acme")

    assert [s.value for s in rotated.secrets] == ["s2"]


async def test_a_deleted_source_is_gone(store: Store) -> None:
    await store.create_webhook_source(source())

    await store.delete_webhook_source("gh", tenant="acme")

    with pytest.raises(NotFound):
        await store.webhook_source("gh")
    await store.create_webhook_source(source(tenant="globex"))  # the name is free again


async def test_rotation_keeps_five_active_secrets_at_most_the_newest(store: Store) -> None:
    await store.create_webhook_source(source("gh", "acme", "s1", "s0"))

    for number in range(2, 8):
        rotated = await store.rotate_webhook_secret(
            "gh", f"s{number}", retire_after=3600, tenant="acme"
        )

    assert rotated.active_secrets(datetime.now(UTC)) == ["s7", "s6", "s5", "s4", "s3"]
    assert [s.value for s in rotated.secrets] == ["s7", "s6", "s5", "s4", "s3"]

"""Events: stored once per id (or idempotency key) per tenant, each starting, in the same
transaction, one run of every workflow whose latest version listens for its type."""

from __future__ import annotations

import asyncio

import pytest

from overture.errors import InvalidCursor, NotFound
from overture.store import Store
from overture.store.records import NewEvent

from .conftest import OpenStore, register

pytestmark = pytest.mark.asyncio

ON_SIGNUP = """
name: welcome
on: {events: [user.signed_up]}
steps:
  - {id: greet, uses: echo, with: {who: "${input.payload.name}"}}
"""

ALSO_ON_SIGNUP = """
name: crm
on:
  events:
    - {type: "user.*", when: "input.payload.plan == 'pro'"}
steps:
  - {id: sync, uses: echo}
"""

NEEDS_EMAIL = """
name: strict
on: {events: [user.signed_up]}
input:
  type: object
  properties: {payload: {type: object, required: [email]}}
steps:
  - {id: mail, uses: echo}
"""


def signup(event_id: str | None = "e-1", plan: str = "pro", **fields: object) -> NewEvent:
    return NewEvent(
        type="user.signed_up",
        payload={"name": "ana", "plan": plan},
        id=event_id,
        **fields,  # type: ignore[arg-type]
    )


async def test_an_event_starts_one_run_per_listening_workflow(store: Store) -> None:
    await register(store, ON_SIGNUP)
    await register(store, ALSO_ON_SIGNUP)

    event, created = await store.record_event(signup(correlation_id="c-9", user_id="u-1"))

    assert created
    assert sorted(r.workflow for r in event.routes) == ["crm", "welcome"]
    assert all(r.run_id and r.reason is None for r in event.routes)
    for route in event.routes:
        run = await store.get_run(route.run_id)  # type: ignore[arg-type]
        assert run.workflow == route.workflow
        assert run.correlation_id == "c-9"
        assert run.input == {
            "id": "e-1",
            "type": "user.signed_up",
            "payload": {"name": "ana", "plan": "pro"},
            "user_id": "u-1",
            "correlation_id": "c-9",
        }
    assert (await store.get_event("e-1")) == event


async def test_the_same_event_id_again_starts_nothing(store: Store) -> None:
    await register(store, ON_SIGNUP)
    first, _ = await store.record_event(signup())

    again, created = await store.record_event(signup(plan="other"))

    assert not created
    assert again == first
    assert len((await store.list_runs()).items) == 1


async def test_an_idempotency_key_seen_before_starts_nothing(store: Store) -> None:
    await register(store, ON_SIGNUP)
    first, _ = await store.record_event(signup("e-1", idempotency_key="k"))

    again, created = await store.record_event(signup("e-2", idempotency_key="k"))

    assert (created, again.id) == (False, first.id)
    assert len((await store.list_runs()).items) == 1


async def test_an_event_without_id_gets_one_and_is_never_deduplicated(store: Store) -> None:
    await register(store, ON_SIGNUP)
    one, _ = await store.record_event(signup(None))
    two, _ = await store.record_event(signup(None))

    assert one.id != two.id
    assert one.id.startswith("evt_")
    assert len((await store.list_runs()).items) == 2


async def test_routes_say_why_a_listening_workflow_started_no_run(store: Store) -> None:
    await register(store, ON_SIGNUP)
    await register(store, ALSO_ON_SIGNUP)
    await register(store, NEEDS_EMAIL)
    await store.set_workflow_disabled("welcome", True)

    event, _ = await store.record_event(signup(plan="free"))

    reasons = {r.workflow: r.reason for r in event.routes}
    assert reasons["welcome"] == "workflow_disabled"
    assert reasons["crm"] == "condition_false"
    assert reasons["strict"] is not None and reasons["strict"].startswith("input_invalid: ")
    assert "email" in reasons["strict"]
    assert (await store.list_runs()).items == []


async def test_only_the_latest_version_decides_who_listens(store: Store) -> None:
    await register(store, ON_SIGNUP)
    await register(
        store,
        ON_SIGNUP.replace("name: welcome", "name: welcome\nversion: 2").replace(
            "on: {events: [user.signed_up]}", "on: {events: [user.deleted]}"
        ),
    )

    event, created = await store.record_event(signup())

    assert created and event.routes == ()


async def test_a_workflow_that_fails_to_start_does_not_stop_the_others(store: Store) -> None:
    await register(store, ON_SIGNUP)
    await register(store, NEEDS_EMAIL)

    event, _ = await store.record_event(signup())

    started = [r.workflow for r in event.routes if r.run_id]
    assert started == ["welcome"]


async def test_events_are_a_tenant_s_own(store: Store) -> None:
    await register(store, ON_SIGNUP, tenant="acme")
    await register(store, ON_SIGNUP, tenant="globex")

    event, _ = await store.record_event(signup(tenant="acme"))
    same_id, created = await store.record_event(signup(tenant="globex"))

    assert created, "an id is unique per tenant, not across tenants"
    acme_run = await store.get_run(event.routes[0].run_id, tenant="acme")  # type: ignore[arg-type]
    assert acme_run.tenant == "acme"
    assert same_id.routes[0].run_id != event.routes[0].run_id
    with pytest.raises(NotFound):
        await store.get_event("e-1", tenant="initech")
    assert [e.tenant for e in (await store.list_events(tenant="acme")).items] == ["acme"]


async def test_listing_is_newest_first_in_pages_and_filters_by_type(store: Store) -> None:
    for n in range(5):
        await store.record_event(NewEvent(type="a" if n % 2 else "b", id=f"e{n}"))

    first = await store.list_events(limit=2)
    second = await store.list_events(limit=2, cursor=first.next_cursor)
    last = await store.list_events(limit=2, cursor=second.next_cursor)

    assert [e.id for e in first.items + second.items + last.items] == ["e4", "e3", "e2", "e1", "e0"]
    assert last.next_cursor is None
    assert [e.id for e in (await store.list_events(type="a")).items] == ["e3", "e1"]
    with pytest.raises(InvalidCursor):
        await store.list_events(cursor="nope")


async def test_concurrent_deliveries_of_one_event_start_its_runs_once(
    store: Store, open_store: OpenStore
) -> None:
    await register(store, ON_SIGNUP)
    await register(store, ALSO_ON_SIGNUP)
    other = await open_store()  # another process's store on the same database

    results = await asyncio.gather(*(s.record_event(signup("dup")) for s in [store, other] * 20))

    assert sum(created for _, created in results) == 1
    assert len({event.seq for event, _ in results}) == 1
    assert len((await store.list_runs()).items) == 2


async def test_a_workflow_on_a_webhook_source_starts_for_each_of_its_deliveries(
    store: Store,
) -> None:
    await register(
        store,
        """
name: on_github
on: {webhook: [gh-main]}
steps:
  - {id: triage, uses: echo}
""",
    )

    from_source, _ = await store.record_event(
        NewEvent(type="github.issues", id="d1", source="webhook:gh-main")
    )
    elsewhere, _ = await store.record_event(
        NewEvent(type="github.issues", id="d2", source="webhook:gh-other")
    )

    assert [r.workflow for r in from_source.routes if r.run_id] == ["on_github"]
    assert elsewhere.routes == ()


async def test_what_else_the_sender_said_cannot_pass_for_a_webhook(store: Store) -> None:
    await register(
        store,
        """
name: on_github
on: {webhook: [github]}
steps:
  - {id: triage, uses: echo}
""",
    )

    event, _ = await store.record_event(
        NewEvent(type="x", id="m1", meta={"source": "webhook:github", "trace": {"t": 1}})
    )

    assert event.routes == ()
    assert event.source is None

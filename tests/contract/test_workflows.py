"""Workflow versions: registered once per definition, immutable, per tenant, can be disabled."""

from __future__ import annotations

import asyncio

import pytest

from overture.core.loader import parse_workflow
from overture.errors import Conflict, NotFound
from overture.store import Store

from .conftest import CHAIN, ONE_STEP, register, start

pytestmark = pytest.mark.asyncio

V2 = """
name: one
version: 2
steps:
  - id: only
    uses: echo
    with: {n: "${input.n}", v: 2}
"""

ONE_STEP_CHANGED = """
name: one
version: 1
steps:
  - id: only
    uses: something_else
"""


async def test_register_returns_the_stored_version(store: Store) -> None:
    record = await register(store, ONE_STEP)

    assert (record.tenant, record.name, record.version, record.disabled) == (
        "default",
        "one",
        1,
        False,
    )
    assert len(record.digest) == 64
    assert record.workflow == parse_workflow(ONE_STEP)


async def test_registering_the_same_definition_again_returns_the_same_record(
    store: Store,
) -> None:
    first = await register(store, ONE_STEP)
    # The same workflow written differently (flow style, other key order) is the same definition.
    again = await register(
        store, "steps: [{uses: echo, id: only, with: {n: '${input.n}'}}]\nname: one\n"
    )

    assert again == first
    assert await store.list_workflows() == [first]


async def test_racing_registrations_of_one_definition_store_it_once(store: Store) -> None:
    workflow = parse_workflow(ONE_STEP)

    records = await asyncio.gather(*(store.register_workflow(workflow) for _ in range(10)))

    assert all(record == records[0] for record in records)
    assert await store.list_workflows() == [records[0]]


async def test_a_changed_definition_under_an_existing_version_is_a_conflict(store: Store) -> None:
    original = await register(store, ONE_STEP)

    with pytest.raises(Conflict) as caught:
        await register(store, ONE_STEP_CHANGED)

    assert caught.value.code == "workflow_version_conflict"
    assert await store.get_workflow("one") == original


async def test_a_changed_definition_without_a_version_becomes_the_next_version(
    store: Store,
) -> None:
    await register(store, ONE_STEP)

    changed = await register(store, ONE_STEP_CHANGED.replace("version: 1\n", ""))

    assert changed.version == 2
    assert changed.workflow.step("only").uses == "something_else"
    assert await store.get_workflow("one") == changed


async def test_get_workflow_returns_the_latest_version_unless_one_is_named(store: Store) -> None:
    v1 = await register(store, ONE_STEP)
    v2 = await register(store, V2)

    assert await store.get_workflow("one") == v2
    assert await store.get_workflow("one", 1) == v1
    assert [w.version for w in await store.list_workflows()] == [1, 2]


async def test_runs_start_on_the_latest_version(store: Store) -> None:
    await register(store, ONE_STEP)
    await register(store, V2)

    latest = await start(store, "one", {"n": 1})
    pinned = await start(store, "one", {"n": 1}, version=1)

    assert (latest.version, pinned.version) == (2, 1)


async def test_an_unknown_workflow_or_version_is_not_found(store: Store) -> None:
    await register(store, ONE_STEP)

    with pytest.raises(NotFound):
        await store.get_workflow("nope")
    with pytest.raises(NotFound):
        await store.get_workflow("one", 7)
    with pytest.raises(NotFound):
        await start(store, "nope")


async def test_a_disabled_workflow_starts_no_runs_until_enabled(store: Store) -> None:
    await register(store, ONE_STEP)

    await store.set_workflow_disabled("one", True)
    with pytest.raises(Conflict) as caught:
        await start(store, "one", {"n": 1})

    assert caught.value.code == "workflow_disabled"
    assert (await store.list_runs()).items == []
    await store.set_workflow_disabled("one", False)
    assert (await start(store, "one", {"n": 1})).status == "queued"


async def test_disabling_an_unknown_workflow_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.set_workflow_disabled("nope", True)


async def test_tenants_have_separate_workflows(store: Store) -> None:
    acme = await register(store, ONE_STEP, tenant="acme")
    # Another tenant may use the same name and version for another definition.
    other = await register(store, ONE_STEP_CHANGED, tenant="globex")

    assert acme.tenant == "acme"
    assert await store.get_workflow("one", tenant="acme") == acme
    assert await store.get_workflow("one", tenant="globex") == other
    assert await store.list_workflows() == []
    with pytest.raises(NotFound):
        await store.get_workflow("one")
    with pytest.raises(NotFound):
        await start(store, "one", {"n": 1})
    await store.set_workflow_disabled("one", True, tenant="acme")
    assert (await start(store, "one", tenant="globex")).tenant == "globex"


async def test_list_workflows_holds_every_version_of_every_workflow(store: Store) -> None:
    await register(store, ONE_STEP)
    await register(store, CHAIN)
    await register(store, V2)
    await store.set_workflow_disabled("chain", True)

    listed = await store.list_workflows()

    assert [(w.name, w.version, w.disabled) for w in listed] == [
        ("chain", 1, True),
        ("one", 1, False),
        ("one", 2, False),
    ]


async def test_workflow_versions_are_newest_first_disabled_or_not(store: Store) -> None:
    v1 = await register(store, ONE_STEP)
    v2 = await register(store, V2)
    await register(store, CHAIN)
    await store.set_workflow_disabled("one", True)

    versions = await store.workflow_versions("one")

    assert [(w.version, w.digest, w.disabled) for w in versions] == [
        (2, v2.digest, True),
        (1, v1.digest, True),
    ]
    assert versions[1].workflow == v1.workflow


async def test_versions_of_an_unknown_workflow_are_not_found(store: Store) -> None:
    await register(store, ONE_STEP, tenant="acme")

    with pytest.raises(NotFound):
        await store.workflow_versions("one")
    with pytest.raises(NotFound):
        await store.workflow_versions("nope", tenant="acme")
    assert [(w.tenant, w.version) for w in await store.workflow_versions("one", tenant="acme")] == [
        ("acme", 1)
    ]

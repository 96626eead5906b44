"""``Store.observe``: the queues, unfinished runs and dead letters every process reports the same
(``/metrics`` gauges), per tenant, from one snapshot on the database's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from overture.store import Store
from overture.store.records import Observation, QueueGauge, RunGauge

from .conftest import BOOKING, CHAIN, ONE_STEP, boom, complete, drive, fail_with, register, start

pytestmark = pytest.mark.asyncio


def queues(seen: Observation) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(ready, delayed, running) by queue and tenant."""
    return {(q.queue, q.tenant): (q.ready, q.delayed, q.running) for q in seen.queues}


def runs(seen: Observation) -> dict[tuple[str, str, str], int]:
    return {(r.workflow, r.tenant, r.status): r.count for r in seen.runs}


async def test_an_empty_database_observes_nothing(store: Store) -> None:
    before = datetime.now(UTC)
    seen = await store.observe()
    assert (seen.queues, seen.runs, seen.dead_letters) == ((), (), ())
    assert before - timedelta(seconds=5) < seen.at < datetime.now(UTC) + timedelta(seconds=5)


async def test_queued_attempts_are_ready_or_delayed_per_queue_and_tenant(store: Store) -> None:
    for tenant in ("acme", "globex"):
        await register(store, ONE_STEP, tenant=tenant)
        await register(store, CHAIN, tenant=tenant)
    first = datetime.now(UTC)
    for n in range(3):
        await start(store, "one", {"n": n}, tenant="acme")
    await start(store, "one", {"n": 9}, tenant="acme", run_at=first + timedelta(hours=1))
    await start(store, "chain", {"x": 1}, tenant="globex")
    await start(store, "chain", {"x": 2}, tenant="globex", run_at=first + timedelta(hours=2))

    seen = await store.observe()

    # echo is the first step of both workflows: one queue, two tenants.
    assert queues(seen) == {("echo", "acme"): (3, 1, 0), ("echo", "globex"): (1, 1, 0)}
    acme = next(q for q in seen.queues if q.tenant == "acme")
    assert acme.oldest_ready_at is not None
    assert first - timedelta(seconds=5) < acme.oldest_ready_at <= seen.at
    assert runs(seen) == {("one", "acme", "queued"): 4, ("chain", "globex", "queued"): 2}


async def test_a_queue_with_nothing_due_has_no_oldest(store: Store) -> None:
    await register(store, ONE_STEP)
    await start(store, "one", {"n": 1}, run_at=datetime.now(UTC) + timedelta(hours=1))

    (gauge,) = (await store.observe()).queues

    assert gauge == QueueGauge(
        queue="echo", tenant="default", ready=0, delayed=1, oldest_ready_at=None
    )


async def test_claimed_attempts_are_running_and_finished_ones_are_gone(store: Store) -> None:
    await register(store, CHAIN)
    await start(store, "chain", {"x": 1})
    await start(store, "chain", {"x": 2})
    (job, other) = await store.claim("w", limit=2)

    seen = await store.observe()
    (gauge,) = seen.queues
    assert (gauge.queue, gauge.ready, gauge.running, gauge.oldest_ready_at) == ("echo", 0, 2, None)
    assert runs(seen) == {("chain", "default", "running"): 2}

    await complete(store, job, {"x": 1})  # queues step b (double) of that run
    seen = await store.observe()
    assert queues(seen) == {("double", "default"): (1, 0, 0), ("echo", "default"): (0, 0, 1)}
    assert runs(seen) == {("chain", "default", "running"): 2}
    await complete(store, other, {"x": 2})
    await drive(store)
    assert (await store.observe()).queues == ()


async def test_finished_runs_are_not_counted_and_dead_letters_are_per_tenant(
    store: Store,
) -> None:
    for tenant in ("acme", "globex"):
        await register(store, CHAIN, tenant=tenant)
    for x in range(2):
        await start(store, "chain", {"x": x}, tenant="acme")
    await start(store, "chain", {"x": 7}, tenant="globex")
    await drive(store, {"double": fail_with(boom("bad_request"))})
    await start(store, "chain", {"x": 8}, tenant="globex")  # still queued

    seen = await store.observe()

    assert seen.runs == (RunGauge(workflow="chain", tenant="globex", status="queued", count=1),)
    assert seen.dead_letters == (("acme", 2), ("globex", 1))

    (letter, _) = await store.dead_letters(tenant="acme")
    await store.requeue([letter.id], tenant="acme")
    seen = await store.observe()
    assert seen.dead_letters == (("acme", 1), ("globex", 1))
    assert runs(seen)[("chain", "acme", "running")] == 1  # reopened: its step b is queued


async def test_waiting_runs_are_counted_as_waiting(store: Store) -> None:
    await register(
        store,
        """
        name: nap
        steps:
          - {id: rest, uses: sleep, with: {seconds: 3600}}
        """,
    )
    await start(store, "nap")
    await drive(store)

    seen = await store.observe()

    assert runs(seen) == {("nap", "default", "waiting"): 1}


async def test_an_attempt_held_by_a_flow_control_stays_ready_and_keeps_its_age(
    store: Store,
) -> None:
    """A full slot defers the job (its run_at moves on at every claim that looks at it), but it
    has been waiting since it became due, and that is what the queue's age says."""
    await register(store, BOOKING)
    queued_at = datetime.now(UTC)
    for _ in range(2):
        await start(store, "book", {"flight": 1})
    assert len(await store.claim("w", limit=2)) == 1  # the other is deferred behind the slot
    assert not await store.claim("w", limit=2)  # and stays held

    (gauge,) = (await store.observe()).queues

    assert (gauge.ready, gauge.delayed, gauge.running) == (1, 0, 1)
    assert gauge.oldest_ready_at is not None
    assert (
        queued_at - timedelta(seconds=5) < gauge.oldest_ready_at < queued_at + timedelta(seconds=5)
    )


async def test_a_tenants_observation_holds_its_own_rows_only(store: Store) -> None:
    for tenant in ("acme", "globex"):
        await register(store, CHAIN, tenant=tenant)
    await start(store, "chain", {"x": 1}, tenant="acme")
    for x in range(2):
        await start(store, "chain", {"x": x}, tenant="globex")
    await drive(store, {"double": fail_with(boom("bad_request"))})
    await start(store, "chain", {"x": 3}, tenant="acme")
    await start(store, "chain", {"x": 4}, tenant="globex")

    acme = await store.observe("acme")
    everyone = await store.observe()

    assert queues(acme) == {("echo", "acme"): (1, 0, 0)}
    assert runs(acme) == {("chain", "acme", "queued"): 1}
    assert acme.dead_letters == (("acme", 1),)
    assert queues(everyone) == {("echo", "acme"): (1, 0, 0), ("echo", "globex"): (1, 0, 0)}
    assert everyone.dead_letters == (("acme", 1), ("globex", 2))
    assert (await store.observe("nobody")).queues == ()

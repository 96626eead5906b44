"""Flow control as both stores enforce it when jobs are claimed: concurrency slots (per step and
per run), token buckets, circuit breakers, tenant limits, priority and fairness between tenants.
Refused jobs wait; none is failed, none spends an attempt."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from overture.core.admission import TenantLimits
from overture.errors import NotFound
from overture.store import Store

from .conftest import BOOKING, OpenStore, boom, claim_when_due, complete, register, start

pytestmark = pytest.mark.asyncio


PLAIN = """
name: book
steps:
  - {id: pay, uses: echo}
"""

TRIP = """
name: trip
concurrency: {key: "trip-${input.trip}", limit: 1}
steps:
  - {id: first, uses: echo}
  - {id: second, uses: echo, depends_on: first}
"""

RATED = """
name: rated
steps:
  - id: ask
    uses: echo
    rate_limit: {key: "agent:clo", rate: 2/s, burst: 1}
"""

GUARDED = """
name: guarded
steps:
  - id: call
    uses: echo
    circuit: {key: agent, failure_threshold: 3, window: 30s, cooldown: 30s}
    retry: {max_attempts: 5, initial: 0.01, max: 0.01, jitter: false}
"""


async def test_a_slot_of_one_is_held_by_one_job_however_many_stores_claim(
    store: Store, open_store: OpenStore
) -> None:
    await register(store, BOOKING)
    for _ in range(6):
        await start(store, "book", {"flight": 1})
    await start(store, "book", {"flight": 2})
    others = [await open_store() for _ in range(2)]
    claimers = [store, *others]
    batches = await asyncio.gather(*(claimers[i % 3].claim(f"w{i}", limit=5) for i in range(9)))
    running = [job for batch in batches for job in batch]
    assert sorted(j.input["flight"] for j in running) == [1, 2], "one booking per flight"
    first = next(j for j in running if j.input["flight"] == 1)
    assert await complete(store, first)
    (woken,) = await store.claim("w", limit=5)
    assert (woken.input["flight"], woken.attempt) == (1, 1), "woken, its attempt unspent"
    for other in others:
        await other.close()


async def test_a_released_slot_wakes_a_waiting_job_at_once(store: Store) -> None:
    await register(store, BOOKING)
    runs = [await start(store, "book", {"flight": 7}) for _ in range(3)]
    (holder,) = await store.claim("w", limit=10)
    assert await store.claim("w", limit=10) == [], "the others wait for the slot"
    await complete(store, holder)
    (second,) = await store.claim("w", limit=10)
    assert second.run_id == runs[1].id, "the first in line is woken"


async def test_a_workflow_slot_is_held_by_a_run_until_it_ends(store: Store) -> None:
    await register(store, TRIP)
    one = await start(store, "trip", {"trip": "rome"})
    two = await start(store, "trip", {"trip": "rome"})
    (first,) = await store.claim("w", limit=10)
    assert first.run_id == one.id
    await complete(store, first)
    (second,) = await store.claim("w", limit=10)
    assert (second.run_id, second.step_id) == (one.id, "second"), "the run keeps its slot"
    await complete(store, second)
    assert (await store.get_run(one.id)).status == "succeeded"
    (third,) = await store.claim("w", limit=10)
    assert third.run_id == two.id, "the slot passed on when the run ended"


async def test_a_job_without_a_token_waits_for_one_and_keeps_its_attempt(store: Store) -> None:
    await register(store, RATED)
    for n in range(3):
        await start(store, "rated", {"n": n})
    claimed = await store.claim("w", limit=10)
    assert len(claimed) == 1, "a burst of one"
    assert await store.claim("w", limit=10) == [], "no token left: the others wait"
    (later,) = await claim_when_due(store)  # a token every half second
    assert later.attempt == 1
    state = await store.run_state(later.run_id)
    assert state.steps["ask"].attempt == 1, "waiting for a token spent no attempt"


async def test_a_circuit_opens_parks_its_jobs_and_a_reset_lets_them_go(store: Store) -> None:
    await register(store, GUARDED)
    runs = [await start(store, "guarded", {"n": n}) for n in range(4)]
    jobs = await store.claim("w", limit=3)
    for job in jobs:
        await complete(store, job, boom("agent_down", retryable=True))
    (circuit,) = await store.list_circuits(tenant="default")
    assert (circuit.key, circuit.status) == ("agent", "open")
    assert circuit.open_until is not None
    assert circuit.open_until - datetime.now(UTC) > timedelta(seconds=20)
    await asyncio.sleep(0.05)  # the retries are due now: they are parked instead
    assert await store.claim("w", limit=10) == []
    for run in runs:
        assert (await store.run_state(run.id)).steps["call"].attempt <= 2

    reset = await store.reset_circuit("agent", tenant="default")
    assert (reset.status, reset.failures) == ("closed", 0)
    resumed = await store.claim("w", limit=10)
    assert len(resumed) == 4, "the reset let every parked job go"
    with pytest.raises(NotFound):
        await store.reset_circuit("agent", tenant="someone-else")


async def test_a_half_open_circuit_lets_one_probe_through(store: Store) -> None:
    fast = GUARDED.replace("cooldown: 30s", "cooldown: 0.2s")
    await register(store, fast)
    for n in range(5):
        await start(store, "guarded", {"n": n})
    for job in await store.claim("w", limit=3):
        await complete(store, job, boom("agent_down", retryable=True))
    await asyncio.sleep(0.3)
    (probe,) = await store.claim("w", limit=10)
    assert [c.status for c in await store.list_circuits(tenant="default")] == ["half_open"]
    assert await store.claim("w", limit=10) == [], "one probe at a time"
    await complete(store, probe, {"ok": True})
    assert [c.status for c in await store.list_circuits(tenant="default")] == ["closed"]


async def test_a_non_retryable_error_does_not_count_against_the_circuit(store: Store) -> None:
    await register(store, GUARDED)
    for n in range(4):
        await start(store, "guarded", {"n": n})
    for job in await store.claim("w", limit=4):
        await complete(store, job, boom("bad_request"))
    found = await store.list_circuits(tenant="default")
    assert all(c.status == "closed" and c.failures == 0 for c in found)


async def test_one_tenants_backlog_does_not_starve_another(store: Store) -> None:
    for tenant in ("big", "small"):
        await register(store, PLAIN, tenant=tenant)
    for n in range(30):
        await start(store, "book", {"flight": n}, tenant="big")
    await start(store, "book", {"flight": 0}, tenant="small")
    claimed = await store.claim("w", limit=2)
    assert sorted(j.tenant for j in claimed) == ["big", "small"]


async def test_priority_holds_across_tenants(store: Store) -> None:
    for tenant in ("a", "b"):
        await register(store, PLAIN, tenant=tenant)
    for n in range(3):
        await start(store, "book", {"flight": n}, tenant="a", priority=50)
    await start(store, "book", {"flight": 9}, tenant="b", priority=10)
    claimed = await store.claim("w", limit=1)
    assert [j.tenant for j in claimed] == ["b"]


async def test_tenant_limits_hold_for_jobs_without_controls_of_their_own(store: Store) -> None:
    await register(store, PLAIN)
    for n in range(5):
        await start(store, "book", {"flight": n})
    limits = TenantLimits(max_in_flight=2)
    first = await store.claim("w", limit=10, limits=limits)
    assert len(first) == 2
    assert await store.claim("w", limit=10, limits=limits) == []
    await complete(store, first[0])
    assert len(await store.claim("w", limit=10, limits=limits)) == 1


SAME_KEY = """
name: trip
concurrency: {key: "trip-${input.trip}", limit: 1}
steps:
  - {id: first, uses: echo, concurrency: {key: "trip-${input.trip}", limit: 1}}
  - {id: second, uses: echo, depends_on: first, concurrency: {key: "trip-${input.trip}"}}
"""


async def test_a_run_and_its_steps_naming_one_key_do_not_wait_on_each_other(
    store: Store,
) -> None:
    await register(store, SAME_KEY)
    run = await start(store, "trip", {"trip": "oslo"})
    for step in ("first", "second"):
        (job,) = await store.claim("w", limit=10)
        assert job.step_id == step
        await complete(store, job)
    assert (await store.get_run(run.id)).status == "succeeded"


async def test_a_reset_wakes_only_the_jobs_its_circuit_parked(store: Store) -> None:
    await register(store, GUARDED)
    for n in range(3):
        await start(store, "guarded", {"n": n})
    later = await start(store, "guarded", {"n": 9}, run_at=datetime.now(UTC) + timedelta(hours=1))
    for job in await store.claim("w", limit=3):
        await complete(store, job, boom("agent_down", retryable=True))
    await asyncio.sleep(0.05)
    assert await store.claim("w", limit=10) == []  # the retries are parked
    await store.reset_circuit("agent", tenant="default")
    resumed = await store.claim("w", limit=10)
    assert len(resumed) == 3
    assert later.id not in {j.run_id for j in resumed}, "a delayed run keeps its time"

"""Signals: a named payload appended to a running run's history (the engine then decides, as
after any event); a finished run takes none."""

from __future__ import annotations

import asyncio

import pytest

from overture.core import events as ev
from overture.core.state import fold
from overture.errors import Conflict, NotFound
from overture.store import Store

from .conftest import ONE_STEP, complete, drive, event_types, register, start

pytestmark = pytest.mark.asyncio


async def test_a_signal_is_appended_to_the_history_and_returned_with_its_seq(
    store: Store,
) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})

    stored = await store.signal_run(run.id, "approve", {"by": "ana"})

    assert stored.run_id == run.id
    assert stored.seq == run.events + 1
    assert isinstance(stored.event, ev.SignalReceived)
    assert (stored.event.name, stored.event.payload) == ("approve", {"by": "ana"})
    history = await store.events(run.id)
    assert history[-1] == stored
    state = await store.run_state(run.id)
    assert [(s.name, s.payload) for s in state.signals] == [("approve", {"by": "ana"})]
    after = await store.get_run(run.id)
    assert (after.status, after.events) == ("queued", stored.seq)


async def test_a_running_run_takes_signals_and_still_finishes(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    (job,) = await store.claim("worker-1", limit=1)

    first = await store.signal_run(run.id, "poke")
    second = await store.signal_run(run.id, "poke", [1, 2])

    assert second.seq == first.seq + 1
    assert [first.event, second.event] == [
        ev.SignalReceived(at=first.event.at, name="poke"),
        ev.SignalReceived(at=second.event.at, name="poke", payload=[1, 2]),
    ]
    assert await complete(store, job, {"n": 1})
    done = await store.get_run(run.id)
    assert done.status == "succeeded"
    history = await store.events(run.id)
    assert fold(e.event for e in history).events == done.events == len(history)


async def test_signals_sent_at_once_all_land_in_a_gapless_history(store: Store) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})

    sent = await asyncio.gather(*(store.signal_run(run.id, f"s{i}", i) for i in range(10)))

    assert sorted(s.seq for s in sent) == list(range(run.events + 1, run.events + 11))
    history = await store.events(run.id)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    by_seq = {e.seq: e.event for e in history}
    assert all(by_seq[s.seq] == s.event for s in sent)


@pytest.mark.parametrize("ending", ["succeeded", "cancelled"])
async def test_a_finished_run_takes_no_signal(store: Store, ending: str) -> None:
    await register(store, ONE_STEP)
    run = await start(store, "one", {"n": 1})
    if ending == "succeeded":
        await drive(store)
    else:
        await store.cancel_run(run.id)
    before = await event_types(store, run.id)

    with pytest.raises(Conflict) as refused:
        await store.signal_run(run.id, "late")

    assert refused.value.code == "run_finished"
    assert (await store.get_run(run.id)).status == ending
    assert await event_types(store, run.id) == before


async def test_only_the_runs_tenant_can_signal_it(store: Store) -> None:
    await register(store, ONE_STEP, tenant="acme")
    run = await start(store, "one", {"n": 1}, tenant="acme")

    with pytest.raises(NotFound):
        await store.signal_run(run.id, "hi")
    with pytest.raises(NotFound):
        await store.signal_run(run.id, "hi", tenant="globex")
    with pytest.raises(NotFound):
        await store.signal_run("no-such-run", "hi", tenant=None)

    assert (await store.get_run(run.id, tenant="acme")).events == run.events
    assert (await store.signal_run(run.id, "hi", tenant="acme")).event.type == "SignalReceived"
    assert (await store.signal_run(run.id, "hi", tenant=None)).event.type == "SignalReceived"

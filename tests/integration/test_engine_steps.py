"""``sleep``, ``wait`` and ``workflow`` steps with real processes, on both stores: a sleep
outlives the worker that saw it start, a wait resumes on a signal sent to ``overture serve``
or takes its timeout outcome, and cancelling a parent through the API stops its child run."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.processes import until
from tests.support.server import RunningServer, running_server
from tests.support.workers import WorkerProcess, start_worker

from overture.client import Client
from overture.core import events as ev
from overture.core.loader import parse_workflow

HANDLERS = "tests.apps.handlers:registry"

SLEEPY = """
name: sleepy
steps:
  - {id: nap, uses: sleep, with: {seconds: 2}}
  - {id: after, uses: echo, depends_on: [nap], with: {ok: true}}
"""

GATED = """
name: gated
steps:
  - id: hold
    uses: wait
    with:
      signal: go
      timeout: "${input.timeout}"
      on_timeout: "${input.on_timeout}"
      default: too late
  - {id: after, uses: echo, with: {got: "${steps.hold.output}"}}
"""

PARENT = """
name: parent
steps:
  - id: call
    uses: workflow
    with: {workflow: child, input: {marker: "${input.marker}"}}
"""

CHILD = """
name: child
steps:
  - {id: work, uses: slow, with: {seconds: 60, marker: "${input.marker}"}}
  - {id: nap, uses: sleep, with: {duration: 1h}}
  - {id: last, uses: echo, depends_on: [work, nap]}
"""


def started_per_step(history: list[ev.Event]) -> Counter[str]:
    return Counter(e.step_id for e in history if isinstance(e, ev.StepStarted))


async def worker_registered(client: Client, timeout: float = 30) -> None:
    for _ in range(int(timeout / 0.05)):
        if await client.store.list_workers():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no worker registered")


@pytest.mark.asyncio
async def test_a_two_second_sleep_survives_killing_the_only_worker(
    database_url: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    async with Client(database_url) as client:
        await client.register_workflow(parse_workflow(SLEEPY))
        doomed = start_worker(spawn, database_url, tmp_path)
        await worker_registered(client)
        began = time.monotonic()
        run = await client.start_run("sleepy")
        await asyncio.sleep(0.3)  # the worker polls the queue; the sleep is a row in it
        doomed.signal(signal.SIGKILL)
        await asyncio.to_thread(doomed.wait)
        assert (await client.get_run(run.id)).status == "waiting"
        start_worker(spawn, database_url, tmp_path)
        done = await client.wait(run.id, timeout=30)
        took = time.monotonic() - began
        history = [s.event for s in await client.events(run.id)]

    assert done.status == "succeeded", done
    assert took >= 2.0
    assert started_per_step(history) == {"nap": 1, "after": 1}


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    """``overture serve --workers 0`` with the workflows above, and two worker processes."""
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    for name, text in (("sleepy", SLEEPY), ("gated", GATED), ("parent", PARENT), ("child", CHILD)):
        (workflows / f"{name}.yml").write_text(text)
    workers: list[WorkerProcess] = []
    with running_server(
        database_url, "--workers", "0", "--app", HANDLERS, workflows=workflows, cwd=tmp_path
    ) as running:
        try:
            for _ in range(2):
                start_worker(workers, database_url, tmp_path)
            yield running
        finally:
            for worker in workers:
                worker.stop()


def start_run(server: RunningServer, workflow: str, input: Any) -> str:
    response = httpx.post(f"{server.url}/v1/runs", json={"workflow": workflow, "input": input})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def get_run(server: RunningServer, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = httpx.get(f"{server.url}/v1/runs/{run_id}").json()
    return run


def finished(server: RunningServer, run_id: str) -> dict[str, Any]:
    return until(
        lambda: (run := get_run(server, run_id))["finished_at"] and run,
        f"run {run_id} to finish",
    )


def test_waits_resume_on_a_signal_sent_to_the_api_or_take_their_timeout(
    server: RunningServer,
) -> None:
    signalled = start_run(server, "gated", {"timeout": "1h", "on_timeout": "fail"})
    failing = start_run(server, "gated", {"timeout": "1s", "on_timeout": "fail"})
    lenient = start_run(server, "gated", {"timeout": "1s", "on_timeout": "succeed"})
    assert until(lambda: get_run(server, signalled)["status"] == "waiting", "the wait")

    sent = httpx.post(
        f"{server.url}/v1/runs/{signalled}/signal", json={"name": "go", "payload": {"by": "ana"}}
    )

    assert sent.status_code == 202, sent.text
    resumed = finished(server, signalled)
    assert resumed["status"] == "succeeded", resumed
    hold = resumed["steps"][0]
    assert hold["output"]["payload"] == {"by": "ana"}
    assert resumed["output"] == {"after": {"got": hold["output"]}}
    timed_out = finished(server, failing)
    assert timed_out["status"] == "failed", timed_out
    assert timed_out["error"]["code"] == "wait_timeout"
    assert timed_out["steps"][0]["attempt"] == 1
    let_through = finished(server, lenient)
    assert let_through["status"] == "succeeded", let_through
    assert let_through["steps"][0]["output"] == {"timed_out": True, "value": "too late"}
    late = httpx.post(f"{server.url}/v1/runs/{failing}/signal", json={"name": "go"})
    assert late.status_code == 409


def test_cancelling_a_parent_through_the_api_cancels_its_running_child(
    server: RunningServer, tmp_path: Path
) -> None:
    marker = tmp_path / "marks"
    parent = start_run(server, "parent", {"marker": str(marker)})
    until(lambda: list(marker.glob("*.work.*.started")), "the child's step to start")
    child = get_run(server, parent)["steps"][0]["child_run_id"]
    assert child is not None
    before = get_run(server, child)
    assert before["parent_run_id"] == parent and before["parent_step"] == "call"
    assert [s["status"] for s in before["steps"]] == ["running", "scheduled", "pending"]

    cancelled = httpx.post(f"{server.url}/v1/runs/{parent}/cancel", json={"reason": "stop"})

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    after = get_run(server, child)
    assert after["status"] == "cancelled"
    assert [s["status"] for s in after["steps"]] == ["cancelled", "cancelled", "pending"]
    # The handler of the running step hears of it at its next heartbeat.
    until(lambda: list(marker.glob("*.work.*.cancelled")), "the child's handler to stop")
    assert get_run(server, parent)["steps"][0]["status"] == "cancelled"

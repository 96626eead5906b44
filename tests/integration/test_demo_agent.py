"""The examples run durably against the demo agent: ``overture.Client`` stores the runs, an
in-process ``overture.Worker`` runs their ``http`` steps against the agent on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from overture.client import Client
from overture.demo.agent import create_app
from overture.demo.server import serving
from overture.handlers.builtin import builtin_registry
from overture.handlers.http import HttpSettings
from overture.runtime.worker import Worker

pytestmark = pytest.mark.asyncio

WAIT = 20.0
"""Seconds a run may take before a test gives up on it (never reached when all is well)."""
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AGENT_PROXY = "/functions/v1/agent-proxy"


@pytest.fixture
def agent() -> Iterator[str]:
    """The demo agent's base URL."""
    with serving(create_app()) as url:
        yield url


@pytest_asyncio.fixture
async def client(sqlite_url: str) -> AsyncIterator[Client]:
    async with Client(sqlite_url) as opened:
        yield opened


@asynccontextmanager
async def working(client: Client, settings: HttpSettings) -> AsyncIterator[None]:
    """An in-process worker with the built-in handlers for the duration of the block."""
    async with builtin_registry(settings) as registry:
        worker = Worker(client.store, registry, poll=0.05)
        task = asyncio.create_task(worker.run())
        try:
            yield
        finally:
            worker.stop(grace=0)
            await task


def calls(agent: str) -> list[dict[str, Any]]:
    """What the demo agent received: method, path and idempotency key of each call."""
    received: list[dict[str, Any]] = httpx.get(f"{agent}/calls").json()["calls"]
    return received


async def run_to_the_end(
    client: Client, settings: HttpSettings, source: Path, inputs: dict[str, Any] | None = None
) -> Any:
    record = await client.register_workflow(source)
    run = await client.start_run(record.name, inputs or {})
    async with working(client, settings):
        return await client.wait(run.id, timeout=WAIT)


async def test_the_daily_instructor_seed_runs_against_the_agent(client: Client, agent: str) -> None:
    source = EXAMPLES / "wisely" / "daily_instructor_v1.yml"
    done = await run_to_the_end(client, HttpSettings(base_url=agent), source)

    assert done.status == "succeeded", done.error
    state = await client.run_state(done.id)
    snapshot = state.step("gather_signals").output
    assert snapshot["status"] == 200 and snapshot["body"]["streak_days"] == 12
    assert state.step("notify").output["body"]["delivered"] is True
    assert [(c["method"], c["path"], c["idempotency_key"]) for c in calls(agent)] == [
        ("GET", f"{AGENT_PROXY}/snapshot", f"default:{done.id}:gather_signals"),
        ("POST", f"{AGENT_PROXY}/instructor/daily", f"default:{done.id}:create_plan"),
        ("POST", f"{AGENT_PROXY}/notify", f"default:{done.id}:notify"),
    ]


async def test_the_weekly_seed_fans_out_and_joins_against_the_agent(
    client: Client, agent: str
) -> None:
    source = EXAMPLES / "wisely" / "weekly_seed_v1.yml"
    done = await run_to_the_end(client, HttpSettings(base_url=agent), source)

    assert done.status == "succeeded", done.error
    paths = [c["path"].removeprefix(AGENT_PROXY) for c in calls(agent)]
    assert paths[0] == "/clo/begin-week" and paths[-1] == "/brand/update-briefing"
    assert sorted(paths[1:3]) == ["/socratic/seed", "/ta/generate-week"]
    state = await client.run_state(done.id)
    assert state.step("brand_ingest").output["body"]["updated"] is True


async def test_a_flaky_agent_is_retried_with_one_idempotency_key_until_it_answers(
    client: Client, agent: str
) -> None:
    source = EXAMPLES / "agent_pipeline.yml"
    done = await run_to_the_end(client, HttpSettings(base_url=agent), source, {"topic": "sagas"})

    assert done.status == "succeeded", done.error
    assert done.output == {
        "attempts_needed": 3,
        "title": "Notes on sagas",
        "sections": ["what is sagas?", "why does sagas matter?"],
    }
    flaky = [c for c in calls(agent) if c["path"] == "/flaky"]
    assert [c["idempotency_key"] for c in flaky] == [f"default:{done.id}:gather"] * 3
    gather = (await client.run_state(done.id)).step("gather")
    assert gather.attempt == 3


def saga_against(agent: str, directory: Path) -> Path:
    """examples/agent_saga.yml with its full URLs pointing at ``agent``."""
    text = (EXAMPLES / "agent_saga.yml").read_text()
    assert "http://127.0.0.1:8765" in text
    path = directory / "agent_saga.yml"
    path.write_text(text.replace("http://127.0.0.1:8765", agent))
    return path


async def test_a_saga_whose_charge_is_declined_cancels_its_reservation(
    client: Client, agent: str, tmp_path: Path
) -> None:
    settings = HttpSettings(allow=("127.0.0.1",))  # full URLs: no base URL to trust
    source = saga_against(agent, tmp_path)
    done = await run_to_the_end(client, settings, source, {"card_status": 402})

    assert done.status == "compensated"
    assert done.error is not None and done.error.code == "http_402"
    received = [(c["method"], c["path"], c["idempotency_key"]) for c in calls(agent)]
    assert received == [
        ("POST", "/echo", f"default:{done.id}:reserve"),
        ("POST", "/status/402", f"default:{done.id}:charge"),  # a 4xx is not retried
        ("DELETE", "/echo", f"default:{done.id}:reserve:compensate"),
    ]


async def test_the_saga_succeeds_when_the_charge_does(
    client: Client, agent: str, tmp_path: Path
) -> None:
    settings = HttpSettings(allow=("127.0.0.1",))
    done = await run_to_the_end(client, settings, saga_against(agent, tmp_path))
    assert (done.status, done.output) == ("succeeded", {"seat": "12A", "charged": 200})


async def test_without_the_allow_list_the_saga_is_refused_before_any_call(
    client: Client, agent: str, tmp_path: Path
) -> None:
    done = await run_to_the_end(client, HttpSettings(), saga_against(agent, tmp_path))
    assert done.status == "failed"
    assert done.error is not None and done.error.code == "ssrf_blocked"
    assert calls(agent) == []

"""``overture runs signal`` and ``overture runs approve``, as a user types them, on the database
(``--database-url``) and on a server (``--url``); ``runs show`` names a step's child run."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from tests.support.cli import run_overture
from tests.support.processes import no_traceback
from tests.support.server import running_server

from overture.cli.backends import DatabaseBackend
from overture.client import Client
from overture.core.loader import parse_workflow
from overture.errors import RequestInvalid
from overture.remote import ApiProblem, RemoteClient
from overture.store import create_store

REVIEW = """
name: review
steps:
  - {id: approve, uses: wait, with: {approval: true}}
  - {id: go, uses: wait, depends_on: [approve], with: {signal: go}}
"""

CALLER = """
name: caller
steps:
  - {id: call, uses: workflow, with: {workflow: review}}
"""


async def started(url: str, workflow: str) -> str:
    async with Client(url) as client:
        for text in (REVIEW, CALLER):
            await client.register_workflow(parse_workflow(text))
        return (await client.start_run(workflow)).id


async def state_of(url: str, run_id: str) -> dict[str, object]:
    async with Client(url) as client:
        state = await client.run_state(run_id)
    return {"status": state.status, **{s.id: s for s in state.steps.values()}}


def test_approve_and_signal_on_the_database(sqlite_url: str, tmp_path: Path) -> None:
    run_id = asyncio.run(started(sqlite_url, "review"))
    where = ("--database-url", sqlite_url)

    approved = run_overture("runs", "approve", run_id, "--comment", "fine", *where, cwd=tmp_path)
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"n": 1}))
    signalled = run_overture(
        "runs", "signal", run_id, "go", "--payload", f"@{payload}", "--json", *where, cwd=tmp_path
    )

    assert approved.returncode == 0, approved.stderr
    assert f"signal 'approval' sent to run {run_id}" in approved.stdout
    assert signalled.returncode == 0, signalled.stderr
    assert json.loads(signalled.stdout)["name"] == "go"
    state = asyncio.run(state_of(sqlite_url, run_id))
    assert state["status"] == "succeeded"
    assert state["approve"].output["payload"] == {"approved": True, "comment": "fine"}  # type: ignore[attr-defined]
    assert state["go"].output["payload"] == {"n": 1}  # type: ignore[attr-defined]


def test_a_rejection_fails_the_run_and_a_finished_run_refuses_signals(
    sqlite_url: str, tmp_path: Path
) -> None:
    run_id = asyncio.run(started(sqlite_url, "review"))
    where = ("--database-url", sqlite_url)

    rejected = run_overture("runs", "approve", run_id, "--reject", *where, cwd=tmp_path)
    late = run_overture("runs", "signal", run_id, "go", *where, cwd=tmp_path)
    bad = run_overture("runs", "signal", run_id, "go", "--payload", "{nope", *where, cwd=tmp_path)

    assert rejected.returncode == 0, rejected.stderr
    assert asyncio.run(state_of(sqlite_url, run_id))["status"] == "failed"
    assert late.returncode != 0 and no_traceback(late)
    assert "finished" in late.stderr
    assert bad.returncode == 2 and "not JSON" in bad.stderr


def test_signal_through_a_server_and_show_the_child_run(sqlite_url: str, tmp_path: Path) -> None:
    url = sqlite_url
    parent = asyncio.run(started(url, "caller"))
    with running_server(url, "--workers", "1", cwd=tmp_path) as server:
        where = ("--url", server.url)
        shown = run_overture("runs", "show", parent, *where, cwd=tmp_path)
        child = json.loads(
            run_overture("runs", "show", parent, "--json", *where, cwd=tmp_path).stdout
        )["steps"][0]["child_run_id"]
        approved = run_overture("runs", "approve", child, *where, cwd=tmp_path)
        signalled = run_overture(
            "runs", "signal", child, "go", "--payload", '{"n": 2}', *where, cwd=tmp_path
        )
        child_shown = run_overture("runs", "show", child, *where, cwd=tmp_path)

    assert shown.returncode == 0, shown.stderr
    assert f"child run {child}" in shown.stdout
    assert approved.returncode == 0 and signalled.returncode == 0, (
        approved.stderr + signalled.stderr
    )
    assert f"parent run {parent} (step call)" in child_shown.stdout
    state = asyncio.run(state_of(url, parent))
    assert state["status"] == "succeeded"


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    """The error line a refused command printed."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert no_traceback(done)
    return done.stderr.strip()


DEEP: object = []
for _ in range(99):
    DEEP = [DEEP]
REFUSED = [
    ("", None, "body.name: String should have at least 1 character"),
    ("x" * 500, None, "body.name: String should have at most 200 characters"),
    ("go", DEEP, "body.payload: Value error, nesting is deeper than 64 levels"),
    ("go", "x" * 5000, "request bodies are limited to 4096 bytes"),
]
"""A signal's name and payload, and why a server with ``--max-body-bytes 4096`` refuses it."""


async def refusals(backend: DatabaseBackend | RemoteClient, run_id: str) -> list[str]:
    """What ``backend`` says to each signal of ``REFUSED``."""
    found = []
    for name, payload, _ in REFUSED:
        with pytest.raises((RequestInvalid, ApiProblem)) as refused:
            await backend.signal(run_id, name, payload)
        found.append(str(refused.value))
    return found


async def database_refusals(url: str, run_id: str) -> list[str]:
    store = create_store(url)
    await store.open()
    try:
        return await refusals(DatabaseBackend(store, "default"), run_id)
    finally:
        await store.close()


async def server_refusals(url: str, run_id: str) -> list[str]:
    async with RemoteClient(url) as client:
        return await refusals(client, run_id)


def test_a_signal_the_server_refuses_is_refused_on_the_database_too(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERTURE_MAX_BODY_BYTES", "4096")
    run_id = asyncio.run(started(sqlite_url, "review"))
    signal_nameless = ("runs", "signal", run_id, "")
    on_database = asyncio.run(database_refusals(sqlite_url, run_id))
    typed_on_database = run_overture(*signal_nameless, "--database-url", sqlite_url, cwd=tmp_path)
    with running_server(
        sqlite_url, "--workers", "0", "--max-body-bytes", "4096", cwd=tmp_path
    ) as s:
        on_server = asyncio.run(server_refusals(s.url, run_id))
        typed_on_server = run_overture(*signal_nameless, "--url", s.url, cwd=tmp_path)

    assert on_database == on_server == [message for _, _, message in REFUSED]
    expected = f"error: {REFUSED[0][2]} [invalid_request]"
    assert refusal(typed_on_database) == refusal(typed_on_server) == expected
    events = run_overture("runs", "events", run_id, "--database-url", sqlite_url, cwd=tmp_path)
    assert "SignalReceived" not in events.stdout  # none was stored


def test_names_and_payloads_with_brackets_are_printed_as_they_are(
    sqlite_url: str, tmp_path: Path
) -> None:
    run_id = asyncio.run(started(sqlite_url, "review"))
    where = ("--database-url", sqlite_url)

    odd = run_overture("runs", "signal", run_id, "[/x]", *where, cwd=tmp_path)
    run_overture("runs", "approve", run_id, *where, cwd=tmp_path)
    go = run_overture(
        "runs", "signal", run_id, "go", "--payload", '"[bold]hi[/x]"', *where, cwd=tmp_path
    )
    shown = run_overture("runs", "show", run_id, *where, cwd=tmp_path)

    assert odd.returncode == 0 and no_traceback(odd), odd.stderr
    assert f"signal '[/x]' sent to run {run_id}" in odd.stdout
    assert go.returncode == 0, go.stderr
    assert shown.returncode == 0 and no_traceback(shown), shown.stderr
    assert "[bold]hi[/x]" in shown.stdout

"""``overture.RemoteClient`` over real HTTP: problem responses, unreachable servers, request
bodies, and SSE streams that drop and resume.

A scripted ASGI app under a real uvicorn server plays the parts an Overture server cannot be made
to play on demand (a proxy's HTML error, a connection cut mid-stream); the last tests talk to a
real ``overture serve``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from tests.support.server import running_server

from overture import OvertureError, RemoteClient
from overture.remote import ApiProblem, ServerUnreachable

pytestmark = pytest.mark.asyncio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PROBLEM = {
    "type": "urn:overture:problem:workflow_invalid",
    "title": "Unprocessable request",
    "status": 422,
    "code": "workflow_invalid",
    "detail": "the workflow has 1 problem",
    "errors": [
        {
            "message": "depends on unknown step 'c'",
            "code": "unknown_dependency",
            "path": ["steps", 0, "depends_on", 0],
            "line": 7,
            "column": 18,
            "step": "b",
        }
    ],
}
STREAM_SCRIPT: dict[str | None, tuple[list[int], str]] = {
    None: ([1], "end"),  # the server (or a proxy) ends the stream before the run has finished
    "1": ([2], "cut"),  # the connection breaks mid-stream
    "2": ([3], "end"),  # the run has finished: the stream ends for good
}
"""Per ``Last-Event-ID``: the events the stream sends, then how it stops."""


@dataclass
class Scripted:
    """An ASGI app answering as the tests need; it records what it received."""

    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    sent: set[int] = field(default_factory=set)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        self.requests.append((scope["method"], path, headers, body))
        if path.endswith("/stream"):
            await self.stream(headers.get("last-event-id"), send)
            return
        status, kind, content = self.answer(path)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", kind.encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})

    def answer(self, path: str) -> tuple[int, str, bytes]:
        match path:
            case "/v1/runs/problem":
                return 422, "application/problem+json", json.dumps(PROBLEM).encode()
            case "/v1/runs/proxy":
                return 502, "text/html", b"<html>Bad Gateway</html>"
            case "/v1/runs/text":
                return 200, "text/plain", b"hello"
            case "/v1/runs/live":
                status = "succeeded" if 3 in self.sent else "running"
                return 200, "application/json", json.dumps({"status": status, "events": 3}).encode()
        return 201, "application/json", b'{"name": "registered"}'

    async def stream(self, last_event_id: str | None, send: Send) -> None:
        seqs, ending = STREAM_SCRIPT[last_event_id]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        chunk = "retry: 10\n\n" + "".join(
            f"id: {seq}\ndata: {json.dumps({'seq': seq, 'type': 'StepStarted'})}\n\n"
            for seq in seqs
        )
        self.sent.update(seqs)
        await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
        if ending == "end":
            await send({"type": "http.response.body", "body": b""})
        # "cut": return with the body unfinished, so the server drops the connection


@asynccontextmanager
async def serving(app: Scripted) -> AsyncIterator[str]:
    """``app`` under uvicorn on a free port; its URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_config=None, ws="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def app() -> Scripted:
    return Scripted()


async def test_a_problem_response_raises_api_problem_with_its_located_errors(app: Scripted) -> None:
    async with serving(app) as url, RemoteClient(url) as client:
        with pytest.raises(ApiProblem) as raised:
            await client.get_run("problem")
    problem = raised.value
    assert isinstance(problem, OvertureError)
    assert (problem.status, problem.code, problem.detail) == (
        422,
        "workflow_invalid",
        "the workflow has 1 problem",
    )
    assert problem.title == "Unprocessable request"
    assert problem.type == "urn:overture:problem:workflow_invalid"
    assert problem.errors == PROBLEM["errors"]
    assert str(problem) == "the workflow has 1 problem"


async def test_an_error_that_is_not_a_problem_still_raises_api_problem(app: Scripted) -> None:
    async with serving(app) as url, RemoteClient(url) as client:
        with pytest.raises(ApiProblem) as raised:
            await client.get_run("proxy")
    assert (raised.value.status, raised.value.code) == (502, "http_502")
    assert "/v1/runs/proxy answered 502 Bad Gateway" in raised.value.detail


async def test_a_success_that_is_not_a_json_object_is_a_bad_response(app: Scripted) -> None:
    async with serving(app) as url, RemoteClient(url) as client:
        with pytest.raises(ApiProblem) as raised:
            await client.get_run("text")
    assert raised.value.code == "bad_response"


async def test_nothing_listening_raises_server_unreachable_naming_the_url() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with RemoteClient(f"http://127.0.0.1:{port}/") as client:
        with pytest.raises(ServerUnreachable) as raised:
            await client.health()
    assert str(raised.value) == (
        f"no Overture server at http://127.0.0.1:{port}: start one with `overture serve`, "
        "or use --local"
    )


async def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="expected http://HOST:PORT"):
        RemoteClient("localhost:8000")


async def test_the_api_key_is_sent_as_a_bearer_token(app: Scripted) -> None:
    async with serving(app) as url, RemoteClient(url, api_key="ov_secret") as client:
        await client.list_workflows()
    (_, _, headers, _) = app.requests[-1]
    assert headers["authorization"] == "Bearer ov_secret"


async def test_register_workflow_sends_files_text_and_data_with_their_content_type(
    app: Scripted, tmp_path: Path
) -> None:
    as_yaml, as_json = tmp_path / "flow.yml", tmp_path / "flow.json"
    as_yaml.write_text("name: flow\n")
    as_json.write_text('{"name": "flow"}')
    async with serving(app) as url, RemoteClient(url) as client:
        for definition in (as_yaml, as_json, "name: flow\n", {"name": "flow"}):
            assert await client.register_workflow(definition) == {"name": "registered"}
    sent = [(h["content-type"], body) for _, path, h, body in app.requests]
    assert sent == [
        ("application/yaml", b"name: flow\n"),
        ("application/json", b'{"name": "flow"}'),
        ("application/yaml", b"name: flow\n"),
        ("application/json", b'{"name":"flow"}'),
    ]


async def test_stream_resumes_after_the_last_event_until_the_run_has_finished(
    app: Scripted,
) -> None:
    async with serving(app) as url, RemoteClient(url) as client:
        seqs = [event["seq"] async for event in client.stream("live")]
    assert seqs == [1, 2, 3]
    resumed = [h.get("last-event-id") for _, path, h, _ in app.requests if "stream" in path]
    assert resumed == [None, "1", "2"]


# --- a real server -------------------------------------------------------------------------------


async def test_a_real_server_locates_problems_and_streams_a_run_to_its_end(tmp_path: Path) -> None:
    with running_server(f"sqlite:///{tmp_path / 'o.db'}", cwd=tmp_path) as server:
        async with RemoteClient(server.url) as client:
            assert await client.health() == {"status": "ok"}
            with pytest.raises(ApiProblem) as raised:
                await client.register_workflow("name: bad\nsteps:\n  - {id: a, uses: nosuch}\n")
            assert raised.value.code == "workflow_invalid"
            (error,) = raised.value.errors
            assert (error["code"], error["line"], error["step"]) == ("unknown_handler", 3, "a")

            await client.register_workflow("name: hi\nsteps:\n  - {id: a, uses: echo}\n")
            run = await client.start_run("hi", {"x": 1}, idempotency_key="once")
            again = await client.start_run("hi", {"x": 1}, idempotency_key="once")
            assert again["id"] == run["id"]
            events = [event async for event in client.stream(run["id"])]
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert (events[0]["type"], events[-1]["type"]) == ("RunStarted", "RunSucceeded")

            with pytest.raises(ApiProblem) as missing:
                await client.get_run("no-such-run")
            assert (missing.value.status, missing.value.code) == (404, "not_found")

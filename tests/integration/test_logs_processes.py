"""A real ``overture serve``'s log, as a collector reads it: JSON lines that say which run, step,
attempt, trace and worker each is about, and no secret anywhere.

The server's stderr is a pipe, not a terminal, so the default format (``auto``) is JSON. A
workflow sends a random canary secret to a local HTTP server (so it was really used), has a
handler log it every way it can, and fails a step once with it in the error; then nothing a
user can read, the log, the events or any API response, holds it.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.http_target import Target, serve_target
from tests.support.server import (
    LISTENING,
    STARTUP_TIMEOUT,
    environment,
    run_serve,
    serve_command,
)

from overture.telemetry.log_format import CONTEXT_FIELDS

WORKFLOW = """
name: logged
steps:
  - id: call
    uses: http
    with:
      url: "${input.url}"
      method: POST
      headers: {X-Canary: "${secrets.CANARY}"}
      json: {hello: world}
  - id: chat
    uses: chatty
    depends_on: [call]
    with: {token: "${secrets.CANARY}", lines: 3}
  - id: shaky
    uses: shaky
    depends_on: [chat]
    retry: {max_attempts: 3, initial: 100ms}
    with: {flag: "${input.flag}", token: "${secrets.CANARY}"}
"""
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
CORE_FIELDS = ("timestamp", "level", "logger", "message")


@dataclass
class Server:
    """``overture serve`` with its stdout and stderr read apart."""

    process: subprocess.Popen[str]
    stderr: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    url: str = ""

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def _read(pipe: Any, into: list[str]) -> None:
    for line in pipe:
        into.append(line)


@pytest.fixture
def target() -> Iterator[Target]:
    yield from serve_target("127.0.0.1")


@pytest.fixture
def canary() -> str:
    return f"canary-{secrets.token_hex(12)}"


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path, canary: str) -> Iterator[Server]:
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "logged.yml").write_text(WORKFLOW)
    command = serve_command(
        "--port", "0",
        "--database-url", sqlite_url,
        "--workflows", str(workflows),
        "--app", "tests.apps.logging_handlers:registry",
        "--grace", "5",
    )  # fmt: skip
    env = environment(OVERTURE_SECRET_CANARY=canary, OVERTURE_HTTP_ALLOWED_NETWORKS="127.0.0.1/32")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    started = Server(process)
    readers = [
        threading.Thread(target=_read, args=(process.stderr, started.stderr), daemon=True),
        threading.Thread(target=_read, args=(process.stdout, started.stdout), daemon=True),
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not (found := LISTENING.search("".join(started.stderr))):
        if process.poll() is not None or time.monotonic() > deadline:
            started.stop()
            pytest.fail("overture serve did not start:\n" + "".join(started.stderr))
        time.sleep(0.05)
    started.url = found.group(1)
    try:
        yield started
    finally:
        started.stop()
        for reader in readers:
            reader.join(5)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def wait_for_end(client: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end: {run}")


def test_every_line_of_a_run_is_json_about_it_and_no_secret_leaves(
    server: Server, target: Target, canary: str, tmp_path: Path
) -> None:
    responses: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        started = client.post(
            "/v1/runs",
            json={
                "workflow": "logged",
                "input": {"url": f"{target.url}/echo", "flag": str(tmp_path / "flag")},
            },
            headers={"traceparent": TRACEPARENT},
        )
        assert started.status_code in (200, 201, 202), started.text
        run_id = started.json()["id"]
        run = wait_for_end(client, run_id)
        assert run["status"] == "succeeded", run
        for path in (
            f"/v1/runs/{run_id}",
            f"/v1/runs/{run_id}/events",
            f"/v1/runs/{run_id}/logs",
            f"/v1/runs/{run_id}/attempts",
            "/v1/runs",
            "/v1/workers",
            "/metrics",
        ):
            answer = client.get(path)
            assert answer.status_code in (200, 404), (path, answer.text)
            responses.append(answer.text)
        events = client.get(f"/v1/runs/{run_id}/events").json()
        attempts = client.get(f"/v1/runs/{run_id}/attempts").json()["items"]
        workers = client.get("/v1/workers").json()
    (worker,) = workers["items"] if isinstance(workers, dict) else workers
    assert server.stop() == 0, "".join(server.stderr)

    # The shaky step failed once, so it was retried: a second attempt, maybe elsewhere.
    ran_by = {(a["step_id"], a["attempt"]): a["worker_id"] for a in attempts}
    assert set(ran_by) == {("call", 1), ("chat", 1), ("shaky", 1), ("shaky", 2)}

    # The secret was really used: the local server received it.
    assert [r.headers.get("x-canary") for r in target.received] == [canary]

    # Every line of stderr is a JSON object with the core fields.
    lines = [json.loads(line) for line in server.stderr if line.strip()]
    assert len(lines) == len(server.stderr)
    for line in lines:
        assert isinstance(line, dict)
        assert all(line.get(name) for name in CORE_FIELDS), line

    # Every line about the run says all of what it is about, rightly.
    about_run = [line for line in lines if "run_id" in line]
    assert about_run, "".join(server.stderr)
    for line in about_run:
        missing = [name for name in CONTEXT_FIELDS if line.get(name) in (None, "")]
        assert not missing, (missing, line)
        assert line["run_id"] == run_id
        assert line["workflow"] == "logged"
        assert line["tenant"] == "default"
        assert line["step_id"] in ("call", "chat", "shaky")
        assert isinstance(line["attempt"], int) and line["attempt"] >= 1
        assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"])
        assert line["trace_id"] == TRACE_ID  # the caller's trace, from its traceparent
        assert line["worker_id"] == worker["id"]
        assert line["worker_id"] == ran_by[line["step_id"], line["attempt"]]
    said = {(line["logger"], line["step_id"], line["attempt"], line["level"]) for line in about_run}
    assert ("overture.step", "chat", 1, "INFO") in said
    assert ("tests.library", "chat", 1, "INFO") in said
    assert ("tests.library", "chat", 1, "ERROR") in said
    assert ("overture.step", "shaky", 1, "WARNING") in said
    (error,) = [line for line in about_run if line["message"] == "a library error"]
    assert "ValueError: refused ***" in error["exception"]

    # The canary is nowhere a user can read.
    assert canary not in "".join(server.stderr)
    assert canary not in "".join(server.stdout)
    assert canary not in json.dumps(events)
    for text in responses:
        assert canary not in text


def test_a_server_that_refuses_to_start_says_why_in_a_json_line(
    sqlite_url: str, tmp_path: Path
) -> None:
    # Listening beyond loopback without any API key: refused after the log is set up.
    done = run_serve("--host", "0.0.0.0", "--port", "0", "--database-url", sqlite_url, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    (error,) = [line for line in lines if line["level"] == "ERROR"]
    assert error["logger"] == "overture.cli"
    assert error["message"].startswith("no API key exists, so the API would be open")
    assert error["code"] == "serve_refused"
    assert "Traceback" not in done.stderr

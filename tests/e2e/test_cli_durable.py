"""Durable runs from the command line, as a user runs them: real ``overture`` processes, each
test on its own SQLite file.

``run --local`` stores a run and works it in-process; ``runs``, ``dlq`` and ``workers`` look at
what was stored; ``worker`` works runs in a process of its own; ``db`` manages the schema.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.support.processes import no_traceback, until
from tests.support.server import environment

from overture.client import Client
from overture.core.loader import parse_workflow
from overture.core.state import TERMINAL_RUN

ROOT = Path(__file__).resolve().parents[2]
FLAKY_APP = "tests.apps.flaky:registry"
T = TypeVar("T")
COMMAND_TIMEOUT = 30.0
"""Seconds a command may take (within pytest's 60 s per test)."""

TWO_ECHO_STEPS = """
name: greeting
input: {type: object, required: [who]}
steps:
  - id: greet
    uses: echo
    with: {who: "${input.who}"}
  - id: shout
    uses: echo
    depends_on: [greet]
    with: {said: "${steps.greet.output.who}"}
output: "${steps.shout.output}"
"""

NEEDS_HTTP = """
name: fetch
steps:
  - id: get
    uses: http
    with: {url: "http://127.0.0.1:9/"}
"""

ALWAYS_FAILS = """
name: doomed
steps:
  - id: boom
    uses: fail
    with: {message: "it broke", code: "broken", retryable: false}
"""

FAILS_ONCE = """
name: second_time_lucky
steps:
  - id: try
    uses: once
    with: {flag: "${input.flag}"}
"""


# --- running overture ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cli:
    """``overture`` on one SQLite database, run from the test's directory."""

    directory: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.directory / 'o.db'}"

    def __call__(
        self, *args: str | Path, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """``overture ARGS --database-url URL``."""
        return self.raw(*args, "--database-url", self.url, timeout=timeout)

    def raw(
        self,
        *args: str | Path,
        timeout: float = COMMAND_TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``overture ARGS`` exactly as given, ``env`` added to the environment (killed after
        ``timeout`` seconds)."""
        return subprocess.run(
            [sys.executable, "-m", "overture", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.directory,
            env=environment(**(env or {})),
            check=False,
        )

    def ok(self, *args: str | Path) -> str:
        """The standard output of a command that must succeed."""
        done = self(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def json(self, *args: str | Path) -> Any:
        """The JSON a ``--json`` command prints."""
        return json.loads(self.ok(*args, "--json"))

    def json_lines(self, *args: str | Path) -> list[Any]:
        """One JSON value per line, as ``runs events --json`` prints them."""
        return [json.loads(line) for line in self.ok(*args, "--json").splitlines()]

    def workflow(self, name: str, text: str) -> Path:
        path = self.directory / f"{name}.yml"
        path.write_text(text)
        return path

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return self.json_lines("runs", "events", run_id)

    def only_run_id(self) -> str:
        (run,) = self.json("runs", "ls")["items"]
        run_id: str = run["id"]
        return run_id

    def wait_until_finished(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        """``runs show --json`` once the run has finished (polling)."""

        def finished() -> dict[str, Any] | None:
            run: dict[str, Any] = self.json("runs", "show", run_id)
            return run if run["status"] in TERMINAL_RUN else None

        return until(finished, f"run {run_id} to finish", timeout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


class WorkerProcess:
    """``overture worker`` in a subprocess; its log goes to a file (a pipe could fill up)."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.log = cli.directory / f"worker-{time.monotonic_ns()}.log"
        self._log = self.log.open("wb")
        command = ["worker", "--database-url", cli.url, "--poll", "0.05", *args]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "overture", *command],
            cwd=cli.directory,
            env=environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.process.pid

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._log.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(cli: Cli) -> Iterator[Callable[[], WorkerProcess]]:
    """Starts worker processes with the flaky test app (besides noop, echo and fail); each is
    killed after the test if still running."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        started.append(WorkerProcess(cli, "--app", FLAKY_APP))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def types_and_steps(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["type"], e.get("step_id")) for e in events]


# --- db ----------------------------------------------------------------------------------------


def test_db_status_shows_the_initial_migration_pending_on_a_new_file(cli: Cli) -> None:
    done = cli("db", "status")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pending: 001" in done.stdout


def test_db_status_is_current_after_db_migrate(cli: Cli) -> None:
    migrated = cli.ok("db", "migrate")
    assert "applied: 001" in migrated
    status = cli.ok("db", "status")
    assert "applied: 001" in status
    assert "pending: none" in status


# --- a successful local run, then everything a user can look at --------------------------------


LocalRun = tuple[subprocess.CompletedProcess[str], str]
"""The ``overture run --local`` process and the id of the run it stored."""


@pytest.fixture
def succeeded(cli: Cli) -> LocalRun:
    """``run --local`` of two echo steps; its process and the stored run's id."""
    done = cli("run", cli.workflow("greeting", TWO_ECHO_STEPS), "--local", "-i", "who=ana")
    return done, cli.only_run_id()


def test_local_run_prints_each_step_and_the_output_and_exits_0(
    succeeded: LocalRun,
) -> None:
    done, run_id = succeeded
    assert done.returncode == 0, done.stdout + done.stderr
    for line in ("greet started", "greet succeeded", "shout started", "shout succeeded"):
        assert line in done.stdout
    assert f"run {run_id} succeeded" in done.stdout
    assert 'output: {"said":"ana"}' in done.stdout


def test_runs_ls_lists_the_local_run_as_succeeded(cli: Cli, succeeded: LocalRun) -> None:
    _, run_id = succeeded
    page = cli.json("runs", "ls")
    assert [(r["id"], r["workflow"], r["status"]) for r in page["items"]] == [
        (run_id, "greeting", "succeeded")
    ]
    assert page["next_cursor"] is None
    assert cli.json("runs", "ls", "--status", "failed")["items"] == []


def test_runs_show_has_the_run_and_each_step(cli: Cli, succeeded: LocalRun) -> None:
    _, run_id = succeeded
    run = cli.json("runs", "show", run_id)
    assert (run["status"], run["input"], run["output"]) == (
        "succeeded",
        {"who": "ana"},
        {"said": "ana"},
    )
    steps = {s["id"]: s for s in run["steps"]}  # the API's shape: a list, in definition order
    assert {sid: (s["status"], s["attempt"]) for sid, s in steps.items()} == {
        "greet": ("succeeded", 1),
        "shout": ("succeeded", 1),
    }
    assert steps["shout"]["input"] == {"said": "ana"}


def test_runs_events_are_gapless_from_1_and_in_order(cli: Cli, succeeded: LocalRun) -> None:
    _, run_id = succeeded
    events = cli.events(run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert types_and_steps(events) == [
        ("RunStarted", None),
        ("StepScheduled", "greet"),
        ("StepStarted", "greet"),
        ("StepSucceeded", "greet"),
        ("StepScheduled", "shout"),
        ("StepStarted", "shout"),
        ("StepSucceeded", "shout"),
        ("RunSucceeded", None),
    ]


def test_replay_check_says_the_history_folds_to_the_stored_run(
    cli: Cli, succeeded: LocalRun
) -> None:
    _, run_id = succeeded
    out = cli.ok("runs", "replay-check", run_id)
    assert "8 events fold to the stored run (succeeded)" in out


def test_without_database_url_runs_are_stored_in_overture_db_in_the_working_directory(
    cli: Cli,
) -> None:
    done = cli.raw("run", cli.workflow("greeting", TWO_ECHO_STEPS), "--local", "-i", "who=ana")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (cli.directory / "overture.db").is_file()
    for env in ({}, {"OVERTURE_DATABASE_URL": "sqlite:///overture.db"}):
        listed = cli.raw("runs", "ls", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert [r["status"] for r in json.loads(listed.stdout)["items"]] == ["succeeded"]


def test_runs_follow_of_a_finished_run_replays_its_progress(cli: Cli, succeeded: LocalRun) -> None:
    _, run_id = succeeded
    followed = cli.ok("runs", "follow", run_id)
    assert "greet started" in followed and "shout succeeded" in followed
    assert f"run {run_id} succeeded" in followed


def test_runs_replay_starts_a_new_run_with_the_same_workflow_version_and_input(
    cli: Cli, succeeded: LocalRun
) -> None:
    _, run_id = succeeded
    replay = cli.json("runs", "replay", run_id)
    assert replay["id"] != run_id
    assert (replay["workflow"], replay["version"], replay["input"], replay["status"]) == (
        "greeting",
        1,
        {"who": "ana"},
        "queued",
    )
    assert {r["id"] for r in cli.json("runs", "ls")["items"]} == {run_id, replay["id"]}


def test_workflows_ls_and_show_find_what_a_local_run_registered(
    cli: Cli, succeeded: LocalRun
) -> None:
    (listed,) = cli.json("workflows", "ls")["items"]
    assert (listed["name"], listed["version"], listed["steps"]) == ("greeting", 1, 2)
    shown = cli.ok("workflows", "show", "greeting")
    assert "greeting v1 · 2 steps" in shown and "shout" in shown


def test_workflows_push_to_the_database_registers_a_new_version_when_changed(cli: Cli) -> None:
    path = cli.workflow("greeting", TWO_ECHO_STEPS)
    assert "greeting v1 · 2 steps" in cli.ok("workflows", "push", path)
    path.write_text(TWO_ECHO_STEPS.replace("uses: echo", "uses: noop", 1))
    assert "greeting v2 · 2 steps" in cli.ok("workflows", "push", path)
    assert cli.json("workflows", "show", "greeting")["versions"] == [2, 1]
    bad = cli.workflow("bad", TWO_ECHO_STEPS.replace("[greet]", "[greeet]"))
    done = cli("workflows", "push", bad)
    assert done.returncode == 1
    assert f"{bad}:10:18: step 'shout': depends on unknown step 'greeet'" in done.stdout


# --- failures, the dead-letter queue, retry and requeue ------------------------------------------


def run_failing(cli: Cli, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``run --local`` of a workflow whose step fails non-retryably: it must exit 1."""
    done = cli("run", cli.workflow("failing", text), "--local", *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert no_traceback(done)
    return done


def test_failed_local_run_exits_1_prints_the_error_and_leaves_a_dead_letter(cli: Cli) -> None:
    done = run_failing(cli, ALWAYS_FAILS)
    run_id = cli.only_run_id()
    assert "boom failed: it broke" in done.stdout
    assert f"run {run_id} failed" in done.stdout
    assert "error: step 'boom' failed: it broke" in done.stdout
    (letter,) = cli.json("dlq", "ls")["items"]
    assert (letter["run_id"], letter["step_id"], letter["attempts"]) == (run_id, "boom", 1)
    assert letter["error"]["code"] == "broken"


def test_runs_retry_runs_the_failed_step_again_on_a_worker(
    cli: Cli, start_worker: Callable[[], WorkerProcess]
) -> None:
    run_failing(cli, ALWAYS_FAILS)
    run_id = cli.only_run_id()
    assert cli.ok("runs", "retry", run_id).strip() == f"run {run_id} queued"
    worker = start_worker()
    again = cli.wait_until_finished(run_id)
    assert again["status"] == "failed", worker.output()  # same handler: fails the same way
    history = types_and_steps(cli.events(run_id))
    retried = history.index(("RunRetried", None))
    assert history[:retried].count(("StepStarted", "boom")) == 1
    assert history[retried:].count(("StepStarted", "boom")) == 1
    assert history[-1] == ("RunFailed", None)
    (letter,) = cli.json("dlq", "ls")["items"]  # the retry's; the first one is marked requeued
    assert (letter["run_id"], letter["step_id"]) == (run_id, "boom")
    assert len(cli.json("dlq", "ls", "--all")["items"]) == 2


def test_requeued_dead_letter_succeeds_on_a_worker(
    cli: Cli, start_worker: Callable[[], WorkerProcess]
) -> None:
    flag = cli.directory / "failed-once"
    done = run_failing(cli, FAILS_ONCE, "--handlers", FLAKY_APP, "-i", f"flag={flag}")
    assert "first attempt fails on purpose" in done.stdout
    run_id = cli.only_run_id()
    (letter,) = cli.json("dlq", "ls")["items"]
    assert (letter["step_id"], letter["error"]["code"]) == ("try", "first_attempt")

    assert cli.ok("dlq", "requeue", str(letter["id"])).strip() == f"run {run_id} queued"
    worker = start_worker()
    run = cli.wait_until_finished(run_id)

    assert run["status"] == "succeeded", worker.output()
    assert run["output"] == {"try": {"ran": "try"}}
    assert cli.json("dlq", "ls")["items"] == []
    (requeued,) = cli.json("dlq", "ls", "--all")["items"]
    assert requeued["id"] == letter["id"] and requeued["requeued_at"] is not None


# --- cancel ------------------------------------------------------------------------------------


def start_queued_run(url: str, text: str, data: dict[str, Any]) -> str:
    """Register and start a run through the Python client; no worker runs it."""

    async def start() -> str:
        async with Client(url) as client:
            run = await client.start_run(parse_workflow(text), data)
            return run.id

    return asyncio.run(start())


def test_runs_cancel_cancels_a_queued_run(cli: Cli) -> None:
    run_id = start_queued_run(cli.url, TWO_ECHO_STEPS, {"who": "bo"})
    assert cli.json("runs", "show", run_id)["status"] == "queued"

    assert cli.ok("runs", "cancel", run_id).strip() == f"run {run_id} cancelled"

    assert "status cancelled" in cli.ok("runs", "show", run_id)
    run = cli.json("runs", "show", run_id)
    assert run["status"] == "cancelled"
    assert [(s["id"], s["status"]) for s in run["steps"]] == [
        ("greet", "cancelled"),
        ("shout", "pending"),
    ]
    assert types_and_steps(cli.events(run_id))[-2:] == [
        ("RunCancelled", None),
        ("StepCancelled", "greet"),
    ]


# --- bad input: one clear line, the right exit code, never a traceback -------------------------


def test_unknown_run_id_is_not_found(cli: Cli) -> None:
    cli.ok("db", "migrate")
    for command in (
        "show",
        "events",
        "logs",
        "follow",
        "cancel",
        "retry",
        "replay",
        "replay-check",
    ):
        done = cli("runs", command, "no-such-run")
        assert done.returncode == 1, command
        assert "error: run 'no-such-run' not found [not_found]" in done.stderr, command
        assert no_traceback(done)


def test_unsupported_database_url_names_the_supported_ones(cli: Cli) -> None:
    done = cli.raw("runs", "ls", "--database-url", "mysql://x")
    assert done.returncode == 1
    assert "[bad_database_url]" in done.stderr
    assert "sqlite:///" in done.stderr and "postgresql://" in done.stderr
    assert no_traceback(done)


def test_local_run_without_required_input_shows_the_schema_message(cli: Cli) -> None:
    done = cli("run", cli.workflow("greeting", TWO_ECHO_STEPS), "--local")
    assert done.returncode == 1
    assert "'who' is a required property" in done.stdout + done.stderr
    assert no_traceback(done)


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("nosuchmodule:registry", "No module named 'nosuchmodule'"),
        ("tests.apps.flaky:nothing", "is not a HandlerRegistry"),
        ("tests.apps.flaky", "expected MODULE:ATTRIBUTE"),
    ],
)
def test_worker_with_an_app_it_cannot_load_says_why(cli: Cli, app: str, message: str) -> None:
    done = cli("worker", "--app", app)
    assert done.returncode != 0
    assert "--app" in done.stderr and message in done.stderr
    assert no_traceback(done)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "WzFlMzAwLCJ4Il0",  # base64 of [1e300,"x"]: well-formed, its time out of range
    ],
)
def test_runs_ls_with_a_cursor_no_listing_returned_is_bad_cursor(cli: Cli, cursor: str) -> None:
    done = cli("runs", "ls", "--cursor", cursor)
    assert done.returncode == 1
    assert "[bad_cursor]" in done.stderr
    assert no_traceback(done)


def test_runs_retry_of_a_succeeded_run_is_not_retryable(cli: Cli, succeeded: LocalRun) -> None:
    _, run_id = succeeded
    done = cli("runs", "retry", run_id)
    assert done.returncode == 1
    assert "only failed or cancelled runs can be retried [not_retryable]" in done.stderr
    assert cli.json("runs", "show", run_id)["status"] == "succeeded"


def test_unknown_dead_letter_id_is_not_found(cli: Cli) -> None:
    cli.ok("db", "migrate")
    done = cli("dlq", "requeue", "42")
    assert done.returncode == 1
    assert "[not_found]" in done.stderr
    assert no_traceback(done)


def test_local_run_of_a_handler_the_local_worker_lacks_exits_1(cli: Cli) -> None:
    done = cli("run", cli.workflow("fetch", NEEDS_HTTP), "--local", timeout=10)
    assert done.returncode == 1
    assert "http" in done.stdout + done.stderr
    assert no_traceback(done)


# --- worker processes ----------------------------------------------------------------------------


def test_worker_shows_running_then_stopped_after_sigterm(
    cli: Cli, start_worker: Callable[[], WorkerProcess]
) -> None:
    worker = start_worker()

    def listed() -> dict[str, Any] | None:
        found = [w for w in cli.json("workers", "ls")["items"] if w["pid"] == worker.pid]
        return found[0] if found else None

    running = until(listed, "the worker to register")
    assert running["stopped_at"] is None
    assert "once" in running["handlers"] and "echo" in running["handlers"]

    assert worker.terminate() == 0, worker.output()

    stopped = listed()
    assert stopped is not None and stopped["id"] == running["id"]
    assert stopped["stopped_at"] is not None
    assert "stopped" in cli.ok("workers", "ls")

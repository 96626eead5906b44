"""The command line against a server, as a user drives it: a real ``overture serve`` on a SQLite
file, and the real ``overture`` executable talking to it with ``--url``.

One server serves the module; each test runs workflows of its own, so tests cannot see each
other's runs. A second server, which requires API keys, checks what a missing or wrong key says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.support.agent import free_port
from tests.support.processes import no_traceback, until
from tests.support.server import RunningServer, environment, start_server

ROOT = Path(__file__).resolve().parents[2]
OVERTURE = [sys.executable, "-m", "overture"]
"""The ``overture`` command, run so that coverage follows it into the process."""
COMMAND_TIMEOUT = 30.0
T = TypeVar("T")

APP = '''
import asyncio
from pathlib import Path

from overture import HandlerRegistry, StepContext
from tests.apps.flaky import registry as flaky

registry = HandlerRegistry()


@registry.handler()
async def gate(ctx: StepContext, *, path: str) -> dict[str, str]:
    """Wait until the file ``path`` (or OPEN_ALL beside it) exists."""
    file = Path(path)
    while not (file.exists() or (file.parent / "OPEN_ALL").exists()):
        await asyncio.sleep(0.02)
    return {"opened": file.name}


@registry.handler()
async def chatty(ctx: StepContext, *, lines: int) -> dict[str, int]:
    for n in range(1, lines + 1):
        ctx.log(f"line {n}", n=n)
    return {"lines": lines}


registry.include(flaky)
'''

GREETING = """
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

ALWAYS_FAILS = """
name: {name}
steps:
  - id: boom
    uses: fail
    with: {{message: "it broke", code: "broken", retryable: false}}
"""

GATED = """
name: {name}
steps:
  - id: wait
    uses: gate
    with: {{path: "{path}"}}
"""

INVALID = """name: broken
steps:
  - id: a
    uses: nosuch
  - id: b
    uses: echo
    depends_on: [c]
"""


@dataclass(frozen=True)
class Cli:
    """``overture`` run from ``directory``, talking to the server at ``url``."""

    directory: Path
    url: str

    def raw(
        self, *args: str | Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``overture ARGS`` exactly as given, ``env`` added to the environment."""
        return subprocess.run(
            [*OVERTURE, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            cwd=self.directory,
            env=environment(**(env or {})),
            check=False,
        )

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """``overture ARGS --url URL``."""
        return self.raw(*args, "--url", self.url)

    def ok(self, *args: str | Path) -> str:
        done = self(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def json(self, *args: str | Path) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def file(self, name: str, text: str) -> Path:
        path = self.directory / name
        path.write_text(text)
        return path

    def run_status(self, run_id: str) -> str:
        status: str = self.json("runs", "show", run_id)["status"]
        return status

    def detached(self, *args: str | Path) -> str:
        """The id ``run --detach`` prints."""
        return self.ok("run", *args, "--detach").strip()


@dataclass(frozen=True)
class Served:
    server: RunningServer
    directory: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``overture serve`` with the module's handlers and one workflow in its directory."""
    directory = tmp_path_factory.mktemp("remote")
    (directory / "cli_remote_app.py").write_text(APP)
    workflows = directory / "workflows"
    workflows.mkdir()
    (workflows / "greeting.yml").write_text(GREETING)
    (directory / "gates").mkdir()
    server = start_server(
        f"sqlite:///{directory / 'served.db'}",
        "--app",
        "cli_remote_app:registry",
        workflows=workflows,
        cwd=directory,
        env={"PYTHONPATH": f"{directory}{os.pathsep}{ROOT}"},
    )
    try:
        yield Served(server, directory)
    finally:
        (directory / "gates" / "OPEN_ALL").touch()
        assert server.stop() == 0, server.log


@pytest.fixture
def cli(served: Served, tmp_path: Path) -> Cli:
    return Cli(tmp_path, served.server.url)


@pytest.fixture
def gate(served: Served, request: pytest.FixtureRequest) -> Path:
    """A gate file of this test's, not there yet: its step waits until the test creates it."""
    return served.directory / "gates" / request.node.name


# --- overture run ------------------------------------------------------------------------------


def test_run_file_pushes_it_starts_a_run_and_prints_its_progress(cli: Cli) -> None:
    path = cli.file("hello.yml", GREETING.replace("name: greeting", "name: hello"))
    done = cli("run", path, "-i", "who=ana")
    assert done.returncode == 0, done.stdout + done.stderr
    for line in ("greet started", "greet succeeded", "shout started", "shout succeeded"):
        assert line in done.stdout
    assert 'output: {"said":"ana"}' in done.stdout
    assert f"hello v1 on {cli.url}" in done.stderr
    run_id = done.stdout.split("run ", 1)[1].split()[0]
    assert f"run {run_id} succeeded" in done.stdout
    assert cli.run_status(run_id) == "succeeded"


def test_failing_run_exits_1_and_prints_the_failing_step_and_its_error(cli: Cli) -> None:
    done = cli("run", cli.file("doomed.yml", ALWAYS_FAILS.format(name="doomed")))
    assert done.returncode == 1
    assert "boom failed: it broke" in done.stdout
    assert "error: step 'boom' failed: it broke" in done.stdout
    assert no_traceback(done)


def test_run_by_name_runs_a_workflow_the_server_registered(cli: Cli) -> None:
    done = cli("run", "greeting", "-i", "who=bo", "-i", "extra=3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'output: {"said":"bo"}' in done.stdout


def test_run_without_its_required_input_says_what_is_missing(cli: Cli) -> None:
    done = cli("run", "greeting")
    assert done.returncode == 1
    assert "'who' is a required property [input_invalid]" in done.stderr
    assert no_traceback(done)


def test_run_input_from_a_yaml_file_then_json_then_pairs(cli: Cli) -> None:
    inputs = cli.file("input.yml", "who: from the file\nn: 1\n")
    run_id = cli.detached(
        "greeting", "--input-file", inputs, "--input-json", '{"n": 2}', "-i", "m=[3]"
    )
    cli.ok("runs", "follow", run_id)
    assert cli.json("runs", "show", run_id)["input"] == {"who": "from the file", "n": 2, "m": [3]}


def test_detach_prints_the_run_id_and_runs_follow_shows_it_to_the_end(cli: Cli) -> None:
    run_id = cli.detached("greeting", "-i", "who=cy", "--idempotency-key", "cy-1")
    assert run_id and " " not in run_id
    assert cli.detached("greeting", "-i", "who=cy", "--idempotency-key", "cy-1") == run_id
    followed = cli.ok("runs", "follow", run_id)
    assert f"run {run_id} succeeded" in followed and "shout succeeded" in followed


def test_run_of_an_invalid_file_shows_its_problems_by_line_and_exits_1(cli: Cli) -> None:
    path = cli.file("broken.yml", INVALID)
    done = cli("run", path)
    assert done.returncode == 1
    assert f"{path}:4:5: step 'a': unknown handler 'nosuch'" in done.stdout
    assert f"{path}:7:18: step 'b': depends on unknown step 'c' [unknown_dependency]" in done.stdout
    assert no_traceback(done)


def test_ctrl_c_stops_following_and_leaves_the_run_running(cli: Cli, gate: Path) -> None:
    path = cli.file("gated.yml", GATED.format(name="ctrl_c", path=gate))
    process = subprocess.Popen(
        [*OVERTURE, "run", str(path), "--url", cli.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cli.directory,
        env=environment(),
    )
    try:
        run = until(lambda: cli.json("runs", "ls", "--workflow", "ctrl_c")["items"], "the run")
        run_id = run[0]["id"]
        until(lambda: cli.run_status(run_id) == "running", "the run to be running")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out + err
    assert f"run {run_id} keeps running" in err
    assert f"overture runs follow {run_id} --url {cli.url}" in err
    assert f"overture runs cancel {run_id} --url {cli.url}" in err
    assert cli.run_status(run_id) == "running"
    gate.touch()
    assert "wait succeeded" in cli.ok("runs", "follow", run_id)


# --- overture runs -----------------------------------------------------------------------------


def test_runs_ls_show_and_events_describe_a_run(cli: Cli) -> None:
    run_id = cli.detached("greeting", "-i", "who=di")
    cli.ok("runs", "follow", run_id)
    listed = cli.json("runs", "ls", "--workflow", "greeting", "--limit", "100")["items"]
    assert (run_id, "succeeded") in [(r["id"], r["status"]) for r in listed]
    assert run_id in cli.ok("runs", "ls", "--workflow", "greeting", "--limit", "100")

    run = cli.json("runs", "show", run_id)
    assert [(s["id"], s["status"]) for s in run["steps"]] == [
        ("greet", "succeeded"),
        ("shout", "succeeded"),
    ]
    shown = cli.ok("runs", "show", run_id)
    assert "status succeeded" in shown and 'output: {"said":"di"}' in shown

    events = [json.loads(line) for line in cli.ok("runs", "events", run_id, "--json").splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert (events[0]["type"], events[-1]["type"]) == ("RunStarted", "RunSucceeded")
    assert "    1 " in cli.ok("runs", "events", run_id)
    later = cli.ok("runs", "events", run_id, "--after", str(len(events) - 1), "--json")
    assert [json.loads(line)["seq"] for line in later.splitlines()] == [len(events)]


def test_runs_logs_prints_what_the_steps_logged(cli: Cli) -> None:
    flow = "name: talk\nsteps:\n  - {id: say, uses: chatty, with: {lines: 3}}\n"
    assert cli("run", cli.file("talk.yml", flow)).returncode == 0
    (run,) = cli.json("runs", "ls", "--workflow", "talk")["items"]
    heading, *logged = cli.ok("runs", "logs", run["id"]).splitlines()
    assert heading.startswith("say #1 · succeeded · worker ")
    assert [line.split(" INFO    ")[1] for line in logged] == [
        'line 1 {"n":1}',
        'line 2 {"n":2}',
        'line 3 {"n":3}',
    ]
    lines = [json.loads(line) for line in cli.ok("runs", "logs", run["id"], "--json").splitlines()]
    assert [(line["step_id"], line["message"]) for line in lines] == [
        ("say", "line 1"),
        ("say", "line 2"),
        ("say", "line 3"),
    ]


def test_runs_cancel_then_retry_then_the_run_succeeds(cli: Cli, gate: Path) -> None:
    run_id = cli.detached(cli.file("gated.yml", GATED.format(name="cancel_me", path=gate)))
    until(lambda: cli.run_status(run_id) == "running", "the run to be running")

    assert cli.ok("runs", "cancel", run_id).strip() == f"run {run_id} cancelled"
    assert cli.run_status(run_id) == "cancelled"
    assert cli.ok("runs", "retry", run_id).strip() == f"run {run_id} queued"
    gate.touch()
    followed = cli("runs", "follow", run_id)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert cli.run_status(run_id) == "succeeded"


def test_runs_replay_starts_a_new_run_with_the_same_input(cli: Cli) -> None:
    first = cli.detached("greeting", "-i", "who=ed")
    replay = cli.json("runs", "replay", first)
    assert replay["id"] != first
    assert (replay["workflow"], replay["input"]) == ("greeting", {"who": "ed"})
    assert 'output: {"said":"ed"}' in cli.ok("runs", "follow", replay["id"])


def test_unknown_run_is_not_found_on_the_server(cli: Cli) -> None:
    for command in ("show", "events", "logs", "follow", "cancel", "retry", "replay"):
        done = cli("runs", command, "no-such-run")
        assert done.returncode == 1, command
        assert "error: run 'no-such-run' not found [not_found]" in done.stderr, command
        assert no_traceback(done)


def test_runs_retry_of_a_succeeded_run_is_not_retryable(cli: Cli) -> None:
    run_id = cli.detached("greeting", "-i", "who=fi")
    cli.ok("runs", "follow", run_id)
    done = cli("runs", "retry", run_id)
    assert done.returncode == 1
    assert "[not_retryable]" in done.stderr


# --- overture dlq ------------------------------------------------------------------------------


def test_dlq_ls_and_requeue_run_a_dead_step_again(cli: Cli) -> None:
    flow = "name: lucky\nsteps:\n  - {id: try, uses: once, with: {flag: '${input.flag}'}}\n"
    done = cli("run", cli.file("lucky.yml", flow), "-i", f"flag={cli.directory / 'flag'}")
    assert done.returncode == 1
    assert "first attempt fails on purpose" in done.stdout
    (run,) = cli.json("runs", "ls", "--workflow", "lucky")["items"]

    (letter,) = [d for d in cli.json("dlq", "ls")["items"] if d["run_id"] == run["id"]]
    assert (letter["step_id"], letter["error"]["code"]) == ("try", "first_attempt")
    assert run["id"] in cli.ok("dlq", "ls")

    assert cli.ok("dlq", "requeue", str(letter["id"])).strip() == f"run {run['id']} queued"
    assert cli("runs", "follow", run["id"]).returncode == 0
    assert letter["id"] not in [d["id"] for d in cli.json("dlq", "ls")["items"]]
    (requeued,) = [d for d in cli.json("dlq", "ls", "--all")["items"] if d["id"] == letter["id"]]
    assert requeued["requeued_at"] is not None


# --- overture workflows ------------------------------------------------------------------------


def test_workflows_push_ls_and_show(cli: Cli) -> None:
    path = cli.file("pushed.yml", GREETING.replace("name: greeting", "name: pushed"))
    assert "✓" in cli.ok("workflows", "push", path)
    path.write_text(path.read_text().replace("uses: echo", "uses: noop", 1))
    assert "pushed v2 · 2 steps" in cli.ok("workflows", "push", path)

    names = {(w["name"], w["version"]) for w in cli.json("workflows", "ls")["items"]}
    assert ("pushed", 2) in names and ("greeting", 1) in names
    assert "pushed" in cli.ok("workflows", "ls")

    shown = cli.json("workflows", "show", "pushed")
    assert (shown["version"], shown["versions"]) == (2, [2, 1])
    assert [s["uses"] for s in shown["definition"]["steps"]] == ["noop", "echo"]
    assert cli.json("workflows", "show", "pushed", "--version", "1")["version"] == 1
    text = cli.ok("workflows", "show", "pushed")
    assert "pushed v2 · 2 steps" in text and "versions 2, 1" in text


def test_workflows_push_of_an_invalid_file_locates_each_problem_and_exits_1(cli: Cli) -> None:
    path = cli.file("broken.yml", INVALID)
    done = cli("workflows", "push", path)
    assert done.returncode == 1
    assert f"✗ {path}: 2 problems" in done.stdout
    assert f"{path}:4:5: step 'a': unknown handler 'nosuch'" in done.stdout
    assert f"{path}:7:18: step 'b': depends on unknown step 'c'" in done.stdout
    assert no_traceback(done)


def test_workers_ls_shows_the_servers_worker_and_its_handlers(cli: Cli, served: Served) -> None:
    (worker,) = cli.json("workers", "ls")["items"]
    assert worker["pid"] == served.server.process.pid and worker["running"]
    assert {"gate", "chatty", "once", "echo"} <= set(worker["handlers"])
    assert "running" in cli.ok("workers", "ls")


# --- choosing the server, and what goes wrong ----------------------------------------------------


def test_overture_url_in_the_environment_selects_the_server(cli: Cli) -> None:
    run_id = cli.detached("greeting", "-i", "who=gu")
    listed = cli.raw("runs", "ls", "--json", env={"OVERTURE_URL": cli.url})
    assert listed.returncode == 0, listed.stderr
    assert run_id in [r["id"] for r in json.loads(listed.stdout)["items"]]
    assert not (cli.directory / "overture.db").exists()


def test_database_url_flag_beats_overture_url_but_not_a_url_flag(cli: Cli) -> None:
    database = f"sqlite:///{cli.directory / 'here.db'}"
    here = cli.raw(
        "runs", "ls", "--json", "--database-url", database, env={"OVERTURE_URL": cli.url}
    )
    assert here.returncode == 0, here.stderr
    assert json.loads(here.stdout)["items"] == []  # the database's runs, not the server's
    both = cli("runs", "ls", "--database-url", database)
    assert both.returncode == 2
    assert "give --url (a server) or --database-url (a database), not both" in both.stderr


def test_tenant_with_a_server_is_a_usage_error(cli: Cli) -> None:
    done = cli("runs", "ls", "--tenant", "acme")
    assert done.returncode == 2
    assert "--tenant is for the database; a server acts as the tenant of the API key" in done.stderr


@pytest.mark.parametrize(
    "command",
    [("runs", "ls"), ("workflows", "ls"), ("dlq", "ls"), ("run", "greeting")],
    ids=" ".join,
)
def test_an_unreachable_server_is_one_clear_line(cli: Cli, command: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = cli.raw(*command, "--url", url)
    assert done.returncode == 1
    assert f"error: no Overture server at {url}: start one with `overture serve`" in done.stderr
    assert "--local" in done.stderr
    assert no_traceback(done)


def test_a_server_that_requires_keys_says_how_to_pass_one(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'keys.db'}"
    local = Cli(tmp_path, url="")
    created = local.raw("keys", "create", "--scopes", "admin", "--database-url", database)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    server = start_server(database, cwd=tmp_path)
    try:
        cli = Cli(tmp_path, server.url)
        missing = cli("runs", "ls")
        assert missing.returncode == 1
        assert "send an API key" in missing.stderr and "[unauthorized]" in missing.stderr
        assert "--api-key KEY or set OVERTURE_API_KEY" in missing.stderr

        wrong = cli("runs", "ls", "--api-key", "ov_wrong")
        assert wrong.returncode == 1
        assert "unknown or revoked API key" in wrong.stderr

        assert (
            cli.raw("runs", "ls", "--url", server.url, env={"OVERTURE_API_KEY": key}).returncode
            == 0
        )
        assert cli("workflows", "ls", "--api-key", key).returncode == 0
    finally:
        server.stop()

"""``overture events`` and ``overture schedules`` as a user runs them: on a SQLite file, and
against a real ``overture serve`` whose scheduler fires the ticks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.support.cli import run_overture
from tests.support.processes import no_traceback, until
from tests.support.server import running_server

WELCOME = """\
name: welcome
on:
  events: [user.signed_up]
  cron: ["0 7 * * *"]
steps:
  - {id: greet, uses: echo, with: {who: "${input.payload.name}"}}
output: ${steps.greet.output}
"""


class Cli:
    """``overture ...`` with its target options appended (a database or a server)."""

    def __init__(self, directory: Path, *target: str) -> None:
        self.directory = directory
        self.target = target

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_overture(*args, *self.target, cwd=self.directory)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture
def db(tmp_path: Path) -> Cli:
    (tmp_path / "welcome.yml").write_text(WELCOME)
    cli = Cli(tmp_path, "--database-url", f"sqlite:///{tmp_path / 'o.db'}")
    cli.ok("workflows", "push", "welcome.yml")
    return cli


def test_an_event_sent_from_the_command_line_starts_its_listeners_once(db: Cli) -> None:
    first = db.ok("events", "send", "user.signed_up", "--payload", '{"name": "ana"}', "--id", "e1")
    again = db.ok("events", "send", "user.signed_up", "--id", "e1")

    run_id = db.json("events", "show", "e1")["routes"][0]["run_id"]
    assert run_id in first and "welcome v1" in first
    assert "sent before" in again and run_id in again
    runs = db.json("runs", "ls")["items"]
    assert [r["id"] for r in runs] == [run_id]
    assert runs[0]["input"]["payload"] == {"name": "ana"}
    listed = db.json("events", "ls", "--type", "user.signed_up")["items"]
    assert [e["id"] for e in listed] == ["e1"]


def test_a_payload_can_come_from_a_file_and_bad_json_is_refused(db: Cli) -> None:
    (db.directory / "p.json").write_text('{"name": "bo"}')

    sent = db.json("events", "send", "user.signed_up", "--payload", "@p.json")
    bad = db("events", "send", "user.signed_up", "--payload", "{nope")
    missing = db("events", "send", "user.signed_up", "--payload", "@absent.json")

    assert sent["event"]["payload"] == {"name": "bo"}
    assert bad.returncode == 2 and "not JSON" in bad.stderr and no_traceback(bad)
    assert missing.returncode == 2 and "cannot read absent.json" in missing.stderr
    assert len(db.json("events", "ls")["items"]) == 1


def test_schedules_are_listed_added_paused_resumed_and_removed(db: Cli) -> None:
    own = db.json("schedules", "ls")["items"]
    assert [(s["id"], s["cron"], s["paused"]) for s in own] == [
        ("welcome:cron:0", "0 7 * * *", False)
    ]

    added = db.json(
        "schedules",
        "add",
        "weekly",
        "--workflow",
        "welcome",
        "--cron",
        "0 18 * * SUN",
        "--timezone",
        "Europe/Paris",
        "--input",
        '{"payload": {"name": "x"}}',
    )
    assert (added["timezone"], added["input"]) == ("Europe/Paris", {"payload": {"name": "x"}})
    assert db.json("schedules", "pause", "weekly")["paused"] is True
    assert "paused" in db.ok("schedules", "show", "weekly")
    resumed = db.json("schedules", "resume", "weekly")
    assert resumed["paused"] is False and resumed["next_fire_at"]

    refused = db("schedules", "rm", "welcome:cron:0")
    assert refused.returncode == 1 and "schedule_from_workflow" in refused.stderr
    bad = db("schedules", "add", "x", "--workflow", "welcome", "--cron", "0 25 * * *")
    assert bad.returncode == 1 and "hour 25" in bad.stderr and "[bad_cron]" in bad.stderr
    assert no_traceback(bad)
    spoof = db("events", "send", "user.signed_up", "--source", "webhook:gh")
    assert spoof.returncode == 1 and "[invalid_request]" in spoof.stderr, "as the API refuses it"
    odd_id = db("schedules", "add", "has/slash", "--workflow", "welcome", "--cron", "@daily")
    assert odd_id.returncode == 1 and "[invalid_request]" in odd_id.stderr
    db.ok("schedules", "rm", "weekly")
    assert [s["id"] for s in db.json("schedules", "ls")["items"]] == ["welcome:cron:0"]


def test_against_a_server_events_start_runs_and_schedules_fire(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "welcome.yml").write_text(WELCOME)
    with running_server(f"sqlite:///{tmp_path / 'o.db'}", workflows=tmp_path / "flows") as server:
        cli = Cli(tmp_path, "--url", server.url)

        sent = cli.json("events", "send", "user.signed_up", "--payload", '{"name": "cy"}')
        run_id = sent["event"]["routes"][0]["run_id"]
        until(lambda: cli.json("runs", "show", run_id)["status"] == "succeeded", "the run")

        cli.ok("schedules", "add", "often", "--workflow", "welcome", "--cron", "* * * * * *")
        ticks = until(
            lambda: cli.json("schedules", "show", "often")["ticks"] or None, "a fired tick"
        )
        cli.ok("schedules", "pause", "often")
        assert ticks[0]["run_id"]
        assert cli.json("runs", "show", ticks[0]["run_id"])["workflow"] == "welcome"

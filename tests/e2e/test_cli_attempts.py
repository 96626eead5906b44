"""``overture runs attempts`` and ``overture runs logs`` as a user runs them: a real ``overture
serve`` on a SQLite file, asked with ``--url`` and read straight from the file with
``--database-url``; both must print the same."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.cli import run_overture
from tests.support.processes import no_traceback
from tests.support.server import RunningServer, start_server

FLOW = """\
name: attempted
input: {type: object, required: [url]}
steps:
  - id: talk
    uses: chatty
    with: {lines: 2}
  - id: fetch
    uses: http
    with: {url: "${input.url}"}
  - id: flaky
    uses: fail
    depends_on: [talk, fetch]
    retry: {max_attempts: 2, initial: 0.01, jitter: 0}
    with: {message: "try again", code: again, retryable: true}
"""


@dataclass(frozen=True)
class Served:
    server: RunningServer
    database_url: str
    directory: Path
    run_id: str

    def both(self, *args: str) -> tuple[subprocess.CompletedProcess[str], ...]:
        """``overture ARGS`` asking the server, then reading the database."""
        return (
            run_overture(*args, "--url", self.server.url, cwd=self.directory),
            run_overture(*args, "--database-url", self.database_url, cwd=self.directory),
        )

    def ok(self, *args: str) -> str:
        """The output of ``overture ARGS``, the same in both modes."""
        remote, local = self.both(*args)
        assert remote.returncode == 0, remote.stdout + remote.stderr
        assert local.returncode == 0, local.stdout + local.stderr
        assert remote.stdout == local.stdout
        return remote.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server whose http steps may call it, and one finished run of ``FLOW`` on it."""
    directory = tmp_path_factory.mktemp("attempts")
    database_url = f"sqlite:///{directory / 'served.db'}"
    server = start_server(
        database_url,
        "--app",
        "tests.api.apps:registry",
        cwd=directory,
        env={"OVERTURE_HTTP_ALLOWED_NETWORKS": "127.0.0.1"},
    )
    try:
        (directory / "flow.yml").write_text(FLOW)
        done = run_overture(
            "run",
            "flow.yml",
            "-i",
            f"url={server.url}/health",
            "--detach",
            "--url",
            server.url,
            cwd=directory,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        run_id = done.stdout.strip()
        followed = run_overture("runs", "follow", run_id, "--url", server.url, cwd=directory)
        assert followed.returncode == 1, followed.stdout + followed.stderr  # flaky fails twice
        yield Served(server, database_url, directory, run_id)
    finally:
        assert server.stop() == 0, server.log


def test_runs_attempts_lists_every_attempt_the_same_from_server_and_database(
    served: Served,
) -> None:
    data: dict[str, Any] = json.loads(served.ok("runs", "attempts", served.run_id, "--json"))
    found = [(a["step_id"], a["attempt"], a["status"]) for a in data["items"]]
    assert sorted(found[:2]) == [("fetch", 1, "succeeded"), ("talk", 1, "succeeded")]
    assert found[2:] == [("flaky", 1, "failed"), ("flaky", 2, "failed")]
    codes = {a["step_id"]: a["status_code"] for a in data["items"]}
    assert codes == {"talk": None, "fetch": 200, "flaky": None}
    (talk,) = [a for a in data["items"] if a["step_id"] == "talk"]
    assert [line["message"] for line in talk["logs"]] == ["line 1", "line 2"]


def test_runs_attempts_prints_a_table_the_same_from_server_and_database(served: Served) -> None:
    table = served.ok("runs", "attempts", served.run_id)
    rows = {
        line.split("│")[1].strip() + line.split("│")[2].strip(): line
        for line in table.splitlines()
        if line.startswith("│")
    }
    assert " 200 " in rows["fetch1"] and "succeeded" in rows["fetch1"]
    assert "failed" in rows["flaky2"] and " again " in rows["flaky2"]
    assert len(rows) == 4


def test_runs_logs_prints_each_attempt_with_its_lines(served: Served) -> None:
    printed = served.ok("runs", "logs", served.run_id).splitlines()
    headings = [line for line in printed if not line.startswith("  ")]
    assert [h.split(" · ")[:2] for h in headings][2:] == [
        ["flaky #1", "failed"],
        ["flaky #2", "failed"],
    ]
    talk = printed.index(next(h for h in headings if h.startswith("talk #1 · succeeded · worker")))
    assert [line.split(maxsplit=1)[1] for line in printed[talk + 1 : talk + 3]] == [
        'INFO    line 1 {"n":1}',
        'WARNING line 2 {"n":2}',
    ]
    (fetch,) = [h for h in headings if h.startswith("fetch #1")]
    assert fetch.endswith(" · HTTP 200")
    assert printed.count("  error: try again [again]") == 2


def test_runs_logs_after_a_line_shows_only_later_lines(served: Served) -> None:
    logged = served.ok("runs", "logs", served.run_id, "--json").splitlines()
    (first,) = [line for line in map(json.loads, logged) if line["message"] == "line 1"]
    later = run_overture(
        "runs",
        "logs",
        served.run_id,
        "--after",
        str(first["id"]),
        "--url",
        served.server.url,
        cwd=served.directory,
    )
    assert later.returncode == 0, later.stderr
    assert "line 1" not in later.stdout and "line 2" in later.stdout
    assert "flaky" not in later.stdout  # its attempts logged nothing


def test_runs_logs_json_is_one_line_per_logged_line(served: Served) -> None:
    printed = served.ok("runs", "logs", served.run_id, "--json").splitlines()
    lines = [json.loads(line) for line in printed]
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    assert [(line["step_id"], line["message"]) for line in lines if line["step_id"] == "talk"] == [
        ("talk", "line 1"),
        ("talk", "line 2"),
    ]


def test_attempts_of_an_unknown_run_are_not_found(served: Served) -> None:
    for done in served.both("runs", "attempts", "no-such-run"):
        assert done.returncode == 1
        assert "error: run 'no-such-run' not found [not_found]" in done.stderr
        assert no_traceback(done)

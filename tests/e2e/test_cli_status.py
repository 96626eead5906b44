"""``overture status`` and ``overture workers ls`` as an operator runs them: against a server
without workers (work waits, the status says so and exits 1), then with a worker (exit 0)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_overture
from tests.support.processes import until
from tests.support.server import running_server
from tests.support.workers import WorkerProcess, start_worker

HELLO = """\
name: hello
steps:
  - {id: greet, uses: echo, with: {text: hi}}
"""


def test_status_needs_attention_until_a_worker_runs_the_queued_work(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "hello.yml").write_text(HELLO)
    database = f"sqlite:///{tmp_path / 'o.db'}"
    workers: list[WorkerProcess] = []
    with running_server(database, "--workers", "0", workflows=tmp_path / "flows") as server:

        def overture(*args: str, url: bool = True) -> tuple[int, str]:
            """The exit status and what was printed on stdout (stderr only in a failure)."""
            target = ("--url", server.url) if url else ("--database-url", database)
            done = run_overture(*args, *target, cwd=tmp_path)
            assert "Traceback" not in done.stderr, done.stderr
            return done.returncode, done.stdout

        code, out = overture("run", "hello", "--detach")
        assert code == 0, out

        code, out = overture("status", "--json")
        assert code == 1, out
        found = json.loads(out)
        assert found["healthy"] is False
        assert found["attention"] == ["1 ready attempt(s) and no live worker to run them"]
        [queue] = found["queues"]
        assert (queue["queue"], queue["ready"], queue["running"]) == ("echo", 1, 0)
        assert found["workers"] == {"live": 0, "items": []}

        code, table = overture("status", url=False)
        assert code == 1, table
        assert "attention" in table and "no live worker" in table and "echo" in table
        assert "running" in table

        try:
            worker = start_worker(workers, database, tmp_path)

            def healthy() -> dict[str, object] | None:
                code, out = overture("status", "--json")
                found = json.loads(out)
                return found if code == 0 and not found["queues"] else None

            found = until(healthy, "the worker to run the queued step")
            assert found["workers"]["live"] == 1  # type: ignore[index]
            code, table = overture("status")
            assert code == 0 and "healthy" in table and "1 live" in table, table

            code, table = overture("workers", "ls", url=False)
            assert code == 0, table
            assert "live" in table and "yes" in table, table
            code, out = overture("workers", "ls", "--json")
            [listed] = json.loads(out)["items"]
            assert listed["pid"] == worker.pid and listed["live"] is True
        finally:
            for started in workers:
                started.stop()

"""``overture circuits`` as a user runs it: on a SQLite file, and against a real server whose
worker runs a step that keeps failing until its circuit opens."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_overture
from tests.support.processes import until
from tests.support.server import running_server

DOWN = """\
name: down
steps:
  - id: call
    uses: fail
    with: {code: agent_down, retryable: true}
    circuit: {key: "agent:clo", failure_threshold: 2, cooldown: 1h}
    retry: {max_attempts: 5, initial: 0.05, max: 0.05, jitter: false}
"""


def test_a_failing_step_opens_its_circuit_and_the_cli_shows_and_resets_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "down.yml").write_text(DOWN)
    database = f"sqlite:///{tmp_path / 'o.db'}"
    with running_server(database, workflows=tmp_path / "flows") as server:

        def overture(*args: str, url: bool = True) -> tuple[int, str]:
            target = ("--url", server.url) if url else ("--database-url", database)
            done = run_overture(*args, *target, cwd=tmp_path)
            return done.returncode, done.stdout + done.stderr

        code, out = overture("run", "down", "--detach")
        assert code == 0, out

        def opened() -> bool:
            code, out = overture("circuits", "ls", "--json")
            assert code == 0, out
            return any(c["status"] == "open" for c in json.loads(out)["items"])

        until(opened, "the circuit to open")
        code, table = overture("circuits", "ls")
        assert code == 0 and "agent:clo" in table and "open" in table, table
        code, shown = overture("circuits", "show", "agent:clo", url=False)
        assert code == 0 and "open until" in shown, shown

        code, out = overture("circuits", "reset", "agent:clo", "--json")
        assert code == 0, out
        assert json.loads(out)["status"] == "closed"

        code, out = overture("circuits", "reset", "no-such-circuit", url=False)
        assert code != 0
        assert "circuit 'no-such-circuit' not found" in out
        assert "Traceback" not in out

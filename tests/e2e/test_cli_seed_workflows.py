"""The seed's workflows, run as a user runs them: `overture demo-agent`, `overture serve` with the
Wisely files, and `overture run FILE` following each run live until it ends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.agent import AgentProcess, agent
from tests.support.server import RunningServer, environment, start_server

__all__ = ["agent"]  # the fixture, used by name

ROOT = Path(__file__).resolve().parents[2]
WISELY = ROOT / "examples" / "wisely"

FAILS_DOWNSTREAM = """
name: downstream_breaks
steps:
  - id: fetch
    call: /status/500
    retry: {max_attempts: 2, initial: 0.01, max: 0.01}
"""


@pytest.fixture
def server(agent: AgentProcess, tmp_path: Path) -> Iterator[RunningServer]:
    started = start_server(
        f"sqlite:///{tmp_path / 'overture.db'}",
        workflows=WISELY,
        env={"OVERTURE_HTTP_BASE_URL": agent.url},
        cwd=tmp_path,
    )
    try:
        yield started
    finally:
        started.stop()


def overture_run(server: RunningServer, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "overture", "run", str(path), "--url", server.url],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=45,
        check=False,
    )


@pytest.mark.parametrize("name", ["daily_instructor_v1", "weekly_seed_v1"])
def test_a_seed_workflow_runs_against_the_demo_agent_and_exits_0(
    server: RunningServer, agent: AgentProcess, name: str
) -> None:
    done = overture_run(server, WISELY / f"{name}.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    workflow = (WISELY / f"{name}.yml").read_text()
    step_ids = [line.split("id:")[1].strip() for line in workflow.splitlines() if "- id:" in line]
    for step_id in step_ids:  # each step reported live as it finished
        assert f"✓ {step_id} succeeded (" in done.stdout
    assert " succeeded\n" in done.stdout
    calls = agent.get("/calls").json()["calls"]
    called = [c["path"] for c in calls if c["path"].startswith("/functions/v1/agent-proxy/")]
    assert len(called) == len(step_ids)  # once each: `/` was the fixture's readiness probe


def test_a_failing_workflow_exits_1_and_prints_the_failing_steps_error(
    server: RunningServer, tmp_path: Path
) -> None:
    path = tmp_path / "breaks.yml"
    path.write_text(FAILS_DOWNSTREAM)
    done = overture_run(server, path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: step 'fetch' failed" in done.stdout + done.stderr
    assert "failed after 2 attempts" in done.stdout
    assert "answered 500" in done.stdout

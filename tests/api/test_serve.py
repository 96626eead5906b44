"""``overture serve`` as a process: what it refuses, development mode, its workflow directory,
``--workers 0`` beside a separate ``overture worker``, shutdown, and its ``--help``."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.api.helpers import WAIT, StoreThread, create_key
from tests.support.server import ROOT, environment, run_serve, running_server, start_server

from overture.settings import SETTINGS

CORPUS = ROOT / "tests" / "corpus" / "bad"
HANDLERS = "tests.apps.handlers:registry"
SLOW = """\
name: slowpid
steps:
  - id: nap
    uses: slow
    with: {seconds: "${input.seconds}", marker: "${input.marker}"}
output: ${steps.nap.output}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(
        "sqlite_url" if request.param == "sqlite" else "postgres_url"
    )
    return url


def wait_for_run(url: str, run_id: str, statuses: set[str]) -> dict[str, object]:
    deadline = time.monotonic() + WAIT
    while True:
        run: dict[str, object] = httpx.get(f"{url}/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, f"run never reached {statuses}: {run}"
        time.sleep(0.05)


def test_without_keys_a_non_loopback_host_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    result = run_serve(
        "--host", "0.0.0.0", "--port", "0", "--database-url", sqlite_url, cwd=tmp_path
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no API key exists" in result.stderr
    assert "overture keys create" in result.stderr
    assert "Traceback" not in result.stderr


def test_with_a_key_a_non_loopback_host_is_served(sqlite_url: str, tmp_path: Path) -> None:
    db = StoreThread(sqlite_url, tmp_path / "artifacts")
    try:
        key, _ = create_key(db, "acme", ("read",))
    finally:
        db.close()
    with running_server(sqlite_url, "--host", "0.0.0.0", cwd=tmp_path) as server:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(f"{url}/v1/runs").status_code == 401
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{url}/v1/runs", headers=headers).status_code == 200
        assert "DEVELOPMENT MODE" not in server.log


def test_without_keys_on_loopback_it_serves_the_default_tenant_until_a_key_exists(
    sqlite_url: str, tmp_path: Path
) -> None:
    workflows = tmp_path / "workflows"
    (workflows / "nested").mkdir(parents=True)
    (workflows / "nested" / "slowpid.yml").write_text(SLOW)
    with running_server(sqlite_url, "--app", HANDLERS, workflows=workflows, cwd=tmp_path) as server:
        assert "DEVELOPMENT MODE" in server.log
        assert "WARNING" in server.log
        [listed] = httpx.get(f"{server.url}/v1/workflows").json()["items"]
        assert listed["name"] == "slowpid"  # registered from the directory, for 'default'
        workers = httpx.get(f"{server.url}/v1/workers")  # every scope: admin too
        assert workers.status_code == 200
        bogus = httpx.get(f"{server.url}/v1/runs", headers={"Authorization": "Bearer nope"})
        assert bogus.status_code == 401

        db = StoreThread(sqlite_url, tmp_path / "artifacts")
        try:
            key, _ = create_key(db, "acme", ("read",))
        finally:
            db.close()
        # Development mode ends with the first key, without a restart.
        assert httpx.get(f"{server.url}/v1/runs").status_code == 401
        mine = httpx.get(f"{server.url}/v1/runs", headers={"Authorization": f"Bearer {key}"})
        assert mine.status_code == 200


def test_invalid_workflow_files_stop_it_with_every_problem_listed(
    sqlite_url: str, tmp_path: Path
) -> None:
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    bad = ["cycle.yml", "unknown_handler.yml", "syntax_error.yml", "duplicate_id.yml"]
    for name in bad:
        shutil.copy(CORPUS / name, workflows / name)
    (workflows / "fine.yml").write_text(SLOW)
    result = run_serve(
        "--port",
        "0",
        "--database-url",
        sqlite_url,
        "--workflows",
        str(workflows),
        "--app",
        HANDLERS,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    output = " ".join((result.stdout + result.stderr).split())  # rich may wrap long lines
    assert "4 invalid workflow file(s)" in output
    for name in bad:
        line = next(
            part.removeprefix("line=")
            for part in (CORPUS / name).read_text().splitlines()[0].split()
            if part.startswith("line=")
        )
        assert f"{workflows / name}:{line}:" in output, (name, output)
    assert "fine.yml" not in output
    assert "Traceback" not in output


def test_a_missing_workflow_directory_named_explicitly_is_refused(
    sqlite_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    result = run_serve(
        "--port", "0", "--database-url", sqlite_url, "--workflows", str(missing), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr


class WorkerProcess:
    """``overture worker`` beside the server, its output in a file."""

    def __init__(self, url: str, log: Path) -> None:
        self._log = log.open("wb")
        self.log = log
        command = [
            sys.executable,
            "-m",
            "overture",
            "worker",
            "--database-url",
            url,
            "--app",
            HANDLERS,
            "--poll",
            "0.05",
        ]
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=environment()
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code


def test_workers_0_serves_the_api_while_a_separate_worker_runs_the_steps(
    database_url: str, tmp_path: Path
) -> None:
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "slowpid.yml").write_text(SLOW)
    with running_server(
        database_url, "--workers", "0", "--app", HANDLERS, workflows=workflows, cwd=tmp_path
    ) as server:
        assert httpx.get(f"{server.url}/v1/workers").json()["items"] == []
        marker = tmp_path / "marks"
        response = httpx.post(
            f"{server.url}/v1/runs",
            json={"workflow": "slowpid", "input": {"seconds": 0, "marker": str(marker)}},
        )
        assert response.status_code == 201, response.text
        run_id = response.json()["id"]
        assert httpx.get(f"{server.url}/v1/runs/{run_id}").json()["status"] == "queued"

        worker = WorkerProcess(database_url, tmp_path / "worker.log")
        try:
            run = wait_for_run(server.url, run_id, {"succeeded", "failed"})
            assert run["status"] == "succeeded", run
            assert run["output"] == {"pid": worker.process.pid}  # the step ran over there
            [listed] = httpx.get(f"{server.url}/v1/workers").json()["items"]
            assert listed["pid"] == worker.process.pid
            assert "slow" in listed["handlers"]
        finally:
            assert worker.stop() == 0, worker.log.read_text()


def test_sigterm_lets_the_running_step_finish_then_exits_0(sqlite_url: str, tmp_path: Path) -> None:
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "slowpid.yml").write_text(SLOW)
    server = start_server(
        sqlite_url, "--app", HANDLERS, "--grace", "20", workflows=workflows, cwd=tmp_path
    )
    try:
        marker = tmp_path / "marks"
        response = httpx.post(
            f"{server.url}/v1/runs",
            json={"workflow": "slowpid", "input": {"seconds": 1, "marker": str(marker)}},
        )
        assert response.status_code == 201
        run_id = response.json()["id"]
        wait_for_run(server.url, run_id, {"running"})
        deadline = time.monotonic() + WAIT
        while not list(marker.glob("*.started")):
            assert time.monotonic() < deadline, server.log
            time.sleep(0.02)
    finally:
        status = server.stop(timeout=30)
    assert status == 0, server.log
    assert list(marker.glob(f"{run_id}.nap.*.finished")), server.log  # drained, not cut off
    assert not list(marker.glob("*.cancelled"))
    with running_server(sqlite_url, "--workers", "0", "--app", HANDLERS, cwd=tmp_path) as again:
        run = httpx.get(f"{again.url}/v1/runs/{run_id}").json()
    assert run["status"] == "succeeded"


def test_help_names_each_settings_environment_variable() -> None:
    result = run_serve("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for name in (
        "host",
        "port",
        "database_url",
        "workflows",
        "workers",
        "app",
        "lease",
        "grace",
        "max_body_bytes",
        "log_level",
    ):
        setting = SETTINGS[name]
        assert setting.flag in text
        assert f"env: {setting.env}" in text, setting.env
    assert "OVERTURE_CONFIG" in text


def test_the_environment_sets_what_no_flag_sets(sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "overture.toml").write_text("max_body_bytes = 4096\nlog_level = 'DEBUG'\n")
    env = {"OVERTURE_MAX_BODY_BYTES": "2048"}
    with running_server(sqlite_url, "--log-level", "INFO", env=env, cwd=tmp_path) as server:
        body = {"workflow": "x", "input": {"pad": "x" * 3000}}
        refused = httpx.post(f"{server.url}/v1/runs", json=body)
        assert refused.status_code == 413  # env (2048) over the file (4096)
        assert "request bodies are limited to 2048 bytes" in refused.json()["detail"]
        assert '"level":"DEBUG"' not in server.log  # the flag (INFO) over the file (DEBUG)
        assert '"level":"INFO"' in server.log

"""What enabling ``shell`` hands to whom: only the tenants of ``shell_tenants`` run commands, and
a command, running as the worker's OS user, cannot read the worker's environment from ``/proc``.

The ``/proc`` tests run a worker process as a user that is not root (``nobody`` when the tests
run as root, else ours): root reads every process's environment whatever the worker does.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.cli import run_overture
from tests.support.server import environment

from overture.core.events import ErrorInfo
from overture.handlers.loading import process_handlers
from overture.runtime.context import StepContext
from overture.runtime.executor import execute
from overture.settings import Settings, load_settings

pytestmark = pytest.mark.skipif(os.name != "posix", reason="shell steps are POSIX")

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-of-the-worker"
NOBODY = 65534
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


# --- shell_tenants -----------------------------------------------------------------------------


def shell_step(settings: Settings, tenant: str, marker: Path) -> ErrorInfo | None:
    """The error of a shell step of ``tenant`` that touches ``marker`` (None: it ran)."""

    async def run() -> ErrorInfo | None:
        handlers = process_handlers(settings)
        ctx = StepContext(run_id="r", step_id="s", attempt=1, workflow="w", tenant=tenant)
        try:
            spec = handlers.registry.get("shell")
            return (await execute(spec, {"argv": ["touch", str(marker)]}, ctx, {})).error
        finally:
            await handlers.aclose()

    return asyncio.run(run())


def test_only_the_tenants_in_shell_tenants_run_shell_steps(tmp_path: Path) -> None:
    environ = {"OVERTURE_ENABLE_SHELL": "1", "OVERTURE_SHELL_TENANTS": "acme, ops"}
    settings = load_settings({}, environ=environ)
    assert settings.shell_tenants == ("acme", "ops")

    refused = shell_step(settings, "globex", tmp_path / "globex")
    assert refused is not None and refused.code == "shell_not_allowed"
    assert not refused.retryable
    assert "tenant 'globex'" in refused.message
    assert "shell_tenants" in refused.message and "OVERTURE_SHELL_TENANTS" in refused.message
    assert "acme" not in refused.message  # one tenant does not learn the others' names
    assert not (tmp_path / "globex").exists()

    assert shell_step(settings, "ops", tmp_path / "ops") is None
    assert (tmp_path / "ops").exists()


def test_without_shell_tenants_every_tenant_runs_shell_steps(tmp_path: Path) -> None:
    assert Settings().shell_tenants == ()
    assert shell_step(Settings(enable_shell=True), "globex", tmp_path / "ran") is None
    assert (tmp_path / "ran").exists()


def test_run_local_reads_shell_tenants(tmp_path: Path) -> None:
    (tmp_path / "flow.yml").write_text(
        "name: flow\nsteps:\n  - {id: hi, uses: shell, with: {argv: [echo, hi]}}\n"
    )
    env = {"OVERTURE_ENABLE_SHELL": "1", "OVERTURE_SHELL_TENANTS": "acme"}
    database = f"sqlite:///{tmp_path / 'o.db'}"
    done = run_overture(
        "run", "flow.yml", "--local", "--database-url", database, cwd=tmp_path, env=env
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tenant 'default' may not run shell steps" in done.stdout


def test_the_worker_and_serve_commands_take_shell_tenants() -> None:
    for command in ("worker", "serve"):
        done = run_overture(command, "--help", cwd=ROOT)
        assert "--shell-tenants" in done.stdout and "OVERTURE_SHELL_TENANTS" in done.stdout


# --- the worker's environment --------------------------------------------------------------------

DUMPABLE = """
import ctypes
from overture.handlers.loading import process_handlers
from overture.settings import Settings

prctl = ctypes.CDLL(None).prctl
seen = [prctl(3, 0, 0, 0, 0)]  # PR_GET_DUMPABLE
process_handlers(Settings(enable_shell=False))
seen.append(prctl(3, 0, 0, 0, 0))
process_handlers(Settings(enable_shell=True))
seen.append(prctl(3, 0, 0, 0, 0))
print(*seen)
"""


@linux_only
def test_a_worker_that_enables_shell_becomes_non_dumpable() -> None:
    # In a process of its own: the flag, once cleared, stays cleared for the whole process.
    done = subprocess.run(
        [sys.executable, "-c", DUMPABLE],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "0"]  # before, with shell off, with shell on


WORKER = """
import asyncio, json, sys
from overture.handlers.loading import process_handlers
from overture.runtime.context import StepContext
from overture.runtime.executor import execute
from overture.settings import Settings

async def main():
    handlers = process_handlers(Settings(enable_shell=True))
    ctx = StepContext(run_id="r", step_id="s", attempt=1, workflow="w")
    outcome = await execute(handlers.registry.get("shell"), json.loads(sys.argv[1]), ctx, {})
    await handlers.aclose()
    error = outcome.error
    print(json.dumps({"output": outcome.output, "error": error and [error.code, error.message]}))

asyncio.run(main())
"""


def unprivileged(env: dict[str, str]) -> list[str]:
    """How to start this Python as a user that is not root: as ourselves, or as ``nobody``
    (through ``setpriv``) when the tests run as root; skips the test when that cannot be."""
    if os.geteuid() != 0:
        return [sys.executable]
    setpriv = shutil.which("setpriv")
    command = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable]
    if setpriv is not None:
        command.insert(0, setpriv)
        probe = [*command, "-c", "import overture"]
        if (
            subprocess.run(probe, env=env, cwd="/", capture_output=True, check=False).returncode
            == 0
        ):
            return command
    pytest.skip(
        "the tests run as root and this Python cannot run as nobody: as root a command "
        "reads any process's environment, so the /proc read cannot be shown"
    )


def as_unprivileged_worker(inputs: dict[str, Any]) -> dict[str, Any]:
    """The outcome of a shell step run by a worker process of a user that is not root, with
    secrets in its environment."""
    # Coverage would write its data where that user may not.
    env = {k: v for k, v in environment().items() if not k.startswith(("COV_CORE", "COVERAGE"))}
    env |= {
        "OVERTURE_SECRET_API_KEY": SECRET,
        "OVERTURE_DATABASE_URL": f"postgresql://overture:{SECRET}@db/overture",
    }
    done = subprocess.run(
        [*unprivileged(env), "-c", WORKER, json.dumps(inputs)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


READ_PARENT = 'cat "/proc/$PPID/environ"'
"""The command's parent is the worker."""


@linux_only
def test_a_command_cannot_read_the_workers_environment_from_proc() -> None:
    outcome = as_unprivileged_worker({"argv": ["sh", "-c", READ_PARENT]})
    assert outcome["output"] is None
    code, message = outcome["error"]
    assert code == "shell_exit_1"
    assert "environ: Permission denied" in message


@pytest.fixture
def locked_directory() -> Iterator[str]:
    """A directory the unprivileged worker sees but may not enter."""
    path = tempfile.mkdtemp(prefix="overture-locked-", dir="/tmp")
    os.chmod(path, 0)
    yield path
    os.rmdir(path)


@linux_only
def test_a_cwd_the_worker_may_not_enter_is_named_as_the_reason(locked_directory: str) -> None:
    outcome = as_unprivileged_worker({"argv": ["true"], "cwd": locked_directory})
    code, message = outcome["error"]
    assert code == "shell_cwd_not_found"
    assert f"cwd {locked_directory!r}: Permission denied" in message
    assert "not executable" not in message

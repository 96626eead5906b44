"""The ``shell`` handler with real processes: outputs and logs, exit codes, the environment
allow-list and secrets, process groups killed on a timeout or a cancellation, output caps, the
switch that keeps it off, and a run through ``overture run --local``.

Attempts go through ``runtime.executor.execute`` (input schema, error classification and
redaction, as a worker runs them) unless a test must cancel the handler's task itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.support.cli import run_overture
from tests.support.processes import no_traceback, until

from overture.core.events import ErrorInfo
from overture.handlers import shell
from overture.handlers.builtin import builtin_registry
from overture.handlers.loading import process_handlers
from overture.handlers.shell import DEFAULT_INHERITED, ShellSettings
from overture.runtime.context import StepContext
from overture.runtime.executor import Outcome, execute
from overture.serde import JSON
from overture.settings import Settings, load_settings

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SECRET = "s3cr3t-centerpoint-key"
SECRETS = {"API_KEY": SECRET}
ENABLED = ShellSettings(enabled=True, grace=0.5)


def context() -> StepContext:
    return StepContext(run_id="run-1", step_id="sync", attempt=1, workflow="w", secrets=SECRETS)


async def attempt(
    inputs: dict[str, JSON],
    settings: ShellSettings | None = ENABLED,
    *,
    ctx: StepContext | None = None,
    timeout: float | None = None,
) -> Outcome:
    """One attempt of a ``shell`` step, as a worker makes it."""
    spec = builtin_registry(shell=settings).get("shell")
    return await execute(spec, inputs, ctx or context(), SECRETS, timeout=timeout)


async def output(inputs: dict[str, JSON], ctx: StepContext | None = None) -> dict[str, Any]:
    outcome = await attempt(inputs, ctx=ctx)
    assert outcome.error is None, outcome.error
    assert isinstance(outcome.output, dict)
    return outcome.output


async def failure(inputs: dict[str, JSON], **kw: Any) -> ErrorInfo:
    outcome = await attempt(inputs, **kw)
    assert outcome.error is not None, outcome.output
    return outcome.error


def py(code: str, *args: str) -> list[JSON]:
    """argv running ``code`` with this Python."""
    return [PYTHON, "-c", code, *args]


def logged(ctx: StepContext, stream: str) -> list[str]:
    return [line.message for line in ctx.logs if line.fields.get("stream") == stream]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped has ended: it is not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rindex(")") + 2] not in "ZX"


def read_pid(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else None


def tree_command(ignore_term: bool = False) -> dict[str, JSON]:
    """Inputs for a shell (pid in sh.pid) that starts a grandchild (pid in child.pid) and waits
    for it; with ``ignore_term`` the grandchild ignores SIGTERM, so only SIGKILL ends it."""
    grandchild = (
        "import os, signal, time\n"
        f"signal.signal(signal.SIGTERM, signal.SIG_IGN if {ignore_term} else signal.SIG_DFL)\n"
        "open('child.pid', 'w').write(str(os.getpid()))\n"
        "time.sleep(300)\n"
    )
    script = f'echo $$ > sh.pid; {PYTHON} -c "$GRANDCHILD" & wait'
    return {"argv": ["sh", "-c", script], "env": {"GRANDCHILD": grandchild}}


def assert_tree_gone(directory: Path) -> None:
    pids = [read_pid(directory / "sh.pid"), read_pid(directory / "child.pid")]
    assert all(pids), pids
    until(lambda: not any(alive(pid) for pid in pids if pid), "the process tree to be gone", 10)


# --- running a command -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_command_succeeds_with_its_output_and_every_line_logged() -> None:
    ctx = context()
    code = "import sys; print('one'); print('two'); print('careful', file=sys.stderr)"
    out = await output({"argv": py(code)}, ctx)
    assert out["exit_code"] == 0
    assert out["stdout"] == "one\ntwo\n"
    assert out["stderr"] == "careful\n"
    assert isinstance(out["duration"], float) and out["duration"] >= 0
    assert logged(ctx, "stdout") == ["one", "two"]
    assert logged(ctx, "stderr") == ["careful"]
    levels = {line.fields.get("stream"): line.level for line in ctx.logs}
    assert levels == {"stdout": "info", "stderr": "warning", None: "info"}
    assert ctx.logs[0].message.startswith(f"$ {PYTHON} -c ")


@pytest.mark.asyncio
async def test_numbers_in_argv_are_passed_as_their_text() -> None:
    out = await output({"argv": ["echo", 3, 2.5, True]})
    assert out["stdout"] == "3 2.5 true\n"


@pytest.mark.asyncio
async def test_a_non_zero_exit_fails_for_good_quoting_the_last_stderr_lines() -> None:
    code = "import sys; print('\\n'.join(f'line {i}' for i in range(10)), file=sys.stderr); exit(3)"
    error = await failure({"argv": py(code)})
    assert error.code == "shell_exit_3"
    assert not error.retryable
    assert error.message.endswith(": line 5 | line 6 | line 7 | line 8 | line 9")
    assert error.details == {"exit_code": 3}


@pytest.mark.asyncio
async def test_ok_exit_codes_make_another_exit_code_a_success() -> None:
    out = await output({"argv": ["sh", "-c", "exit 1"], "ok_exit_codes": [0, 1]})
    assert out["exit_code"] == 1
    error = await failure({"argv": ["true"], "ok_exit_codes": [1]})
    assert error.code == "shell_exit_0"


@pytest.mark.asyncio
async def test_retry_exit_codes_fail_the_attempt_retryably() -> None:
    error = await failure({"argv": ["sh", "-c", "exit 75"], "retry_exit_codes": [75]})
    assert error.code == "shell_exit_75"
    assert error.retryable


@pytest.mark.asyncio
async def test_a_command_killed_by_a_signal_fails_naming_it() -> None:
    error = await failure({"argv": ["sh", "-c", "kill -KILL $$"]})
    assert error.code == "shell_signal_9"
    assert "SIGKILL" in error.message


@pytest.mark.asyncio
async def test_a_string_argv_is_refused_with_how_to_write_a_list() -> None:
    error = await failure({"argv": "ls -la /tmp"})
    assert error.code == "bad_input"
    assert not error.retryable
    assert "list" in error.message and "[sh, -c" in error.message


@pytest.mark.asyncio
@pytest.mark.parametrize("argv", [[], [""]])
async def test_an_empty_argv_is_refused(argv: list[JSON]) -> None:
    assert (await failure({"argv": argv})).code == "bad_input"


@pytest.mark.asyncio
async def test_a_program_that_does_not_exist_fails_for_good(tmp_path: Path) -> None:
    error = await failure({"argv": ["no-such-program-anywhere", "x"]})
    assert error.code == "shell_not_found"
    assert not error.retryable
    assert "'no-such-program-anywhere' was not found on the PATH" in error.message


@pytest.mark.asyncio
async def test_a_file_that_is_not_executable_fails_for_good(tmp_path: Path) -> None:
    script = tmp_path / "sync.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    error = await failure({"argv": [str(script)]})
    assert error.code == "shell_not_found"
    assert "is not executable" in error.message


@pytest.mark.asyncio
async def test_a_script_whose_interpreter_is_missing_names_the_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "sync.sh"
    script.write_text("#!/no/such/interpreter -e\necho hi\n")
    script.chmod(0o755)
    for inputs in ({"argv": [str(script)]}, {"argv": ["sync.sh"], "env": {"PATH": str(tmp_path)}}):
        error = await failure(inputs)
        assert error.code == "shell_not_found"
        assert "its interpreter '/no/such/interpreter' (its #! line) was not found" in error.message
        assert "sync.sh' was not found" not in error.message


@pytest.mark.asyncio
async def test_cwd_is_where_the_command_runs_and_relative_programs_are_found(
    tmp_path: Path,
) -> None:
    script = tmp_path / "where.sh"
    script.write_text("#!/bin/sh\npwd\n")
    script.chmod(0o755)
    here = f"{tmp_path.resolve()}\n"  # noqa: ASYNC240 (a test, before anything runs)
    out = await output({"argv": ["./where.sh"], "cwd": str(tmp_path)})
    assert out["stdout"] == here


@pytest.mark.asyncio
async def test_a_cwd_that_does_not_exist_fails_for_good(tmp_path: Path) -> None:
    error = await failure({"argv": ["true"], "cwd": str(tmp_path / "missing")})
    assert error.code == "shell_cwd_not_found"
    assert not error.retryable


@pytest.mark.asyncio
async def test_stdin_is_written_to_the_command() -> None:
    out = await output({"argv": ["cat"], "stdin": "line one\nline two\n"})
    assert out["stdout"] == "line one\nline two\n"


@pytest.mark.asyncio
async def test_without_stdin_the_command_reads_nothing() -> None:
    out = await output({"argv": ["cat"]})  # would wait for ever on the worker's own stdin
    assert out["stdout"] == ""


@pytest.mark.asyncio
async def test_stdin_the_command_does_not_read_is_no_error() -> None:
    out = await output({"argv": ["true"], "stdin": "x" * 1_000_000})
    assert out["exit_code"] == 0


@pytest.mark.asyncio
async def test_unknown_inputs_are_refused_before_anything_runs() -> None:
    assert (await failure({"argv": ["true"], "shell": True})).code == "bad_input"


# --- the environment ---------------------------------------------------------------------------

PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


async def child_environment(inputs: dict[str, JSON]) -> dict[str, str]:
    out = await output({"argv": py(PRINT_ENV), **inputs})
    env: dict[str, str] = json.loads(out["stdout"])
    return env


@pytest.mark.asyncio
async def test_the_child_gets_a_minimal_environment_not_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKER_ONLY", "not for children")
    monkeypatch.setenv("OVERTURE_SECRET_API_KEY", SECRET)
    monkeypatch.setenv("OVERTURE_DATABASE_URL", "postgresql://overture:pw@db/overture")
    env = await child_environment({"env": {"SYNC_MODE": "full"}})
    assert env["SYNC_MODE"] == "full"
    assert env["PATH"] == os.environ["PATH"]
    assert "WORKER_ONLY" not in env
    assert not any(name.startswith("OVERTURE_") for name in env)
    assert SECRET not in str(env)
    # LC_CTYPE: a Python child may set it itself, coercing the C locale to UTF-8.
    assert set(env) - {"SYNC_MODE", "LC_CTYPE"} <= set(DEFAULT_INHERITED)


@pytest.mark.asyncio
async def test_inherit_env_passes_the_named_worker_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NODE_OPTIONS", "--max-old-space-size=512")
    monkeypatch.setenv("WORKER_ONLY", "not for children")
    env = await child_environment({"inherit_env": ["NODE_OPTIONS", "NOT_SET_ANYWHERE"]})
    assert env["NODE_OPTIONS"] == "--max-old-space-size=512"
    assert "NOT_SET_ANYWHERE" not in env and "WORKER_ONLY" not in env


@pytest.mark.asyncio
async def test_inherit_env_cannot_pass_overture_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OVERTURE_SECRET_API_KEY", SECRET)
    error = await failure({"argv": ["true"], "inherit_env": ["OVERTURE_SECRET_API_KEY"]})
    assert error.code == "bad_input"
    assert "${secrets.NAME}" in error.message


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["A=B", ""])
async def test_a_variable_name_the_system_cannot_hold_is_refused(name: str) -> None:
    error = await failure({"argv": ["true"], "env": {name: "x"}})
    assert error.code == "bad_input"


@pytest.mark.asyncio
async def test_a_secret_in_env_reaches_the_command_and_is_masked_in_logs_and_output() -> None:
    ctx = context()
    code = (
        "import os, sys; key = os.environ['CENTERPOINT_API_KEY']\n"
        "print('using', key); print('denied for', key, file=sys.stderr)\n"
        "print('length', len(key))"
    )
    inputs: dict[str, JSON] = {
        "argv": py(code),
        "env": {"CENTERPOINT_API_KEY": {"$secret": "API_KEY"}},
    }
    out = await output(inputs, ctx)
    assert f"length {len(SECRET)}" in out["stdout"]  # the command had the real value
    assert out["stdout"].startswith("using ***\n")
    assert out["stderr"] == "denied for ***\n"
    assert "using ***" in logged(ctx, "stdout") and "denied for ***" in logged(ctx, "stderr")
    assert SECRET not in repr(ctx.logs)


@pytest.mark.asyncio
async def test_a_secret_printed_by_a_failing_command_is_masked_in_the_error() -> None:
    code = "import os, sys; print('bad key', os.environ['KEY'], file=sys.stderr); exit(2)"
    error = await failure({"argv": py(code), "env": {"KEY": {"$secret": "API_KEY"}}})
    assert error.code == "shell_exit_2"
    assert SECRET not in error.message and "bad key ***" in error.message


# --- timeouts and cancellation kill the whole process group ------------------------------------


@pytest.mark.asyncio
async def test_the_timeout_kills_the_command_and_its_grandchild(tmp_path: Path) -> None:
    started = time.monotonic()
    error = await failure({**tree_command(), "cwd": str(tmp_path), "timeout": 1})
    assert error.code == "shell_timeout"
    assert error.retryable
    assert time.monotonic() - started < 10
    assert_tree_gone(tmp_path)


@pytest.mark.asyncio
async def test_a_grandchild_that_ignores_sigterm_is_killed_after_the_grace(
    tmp_path: Path,
) -> None:
    error = await failure({**tree_command(ignore_term=True), "cwd": str(tmp_path), "timeout": 1})
    assert error.code == "shell_timeout"
    assert_tree_gone(tmp_path)


@pytest.mark.asyncio
async def test_the_steps_timeout_kills_the_process_group_too(tmp_path: Path) -> None:
    outcome = await attempt({**tree_command(), "cwd": str(tmp_path)}, timeout=1)
    assert outcome.error is not None and outcome.error.code == "timeout"
    assert_tree_gone(tmp_path)


@pytest.mark.asyncio
async def test_cancelling_the_handler_kills_the_process_group(tmp_path: Path) -> None:
    spec = builtin_registry(shell=ENABLED).get("shell")
    task = asyncio.create_task(spec.fn(context(), **tree_command(), cwd=str(tmp_path)))
    deadline = time.monotonic() + 10
    while read_pid(tmp_path / "child.pid") is None:
        assert time.monotonic() < deadline, "the grandchild never started"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_tree_gone(tmp_path)


@pytest.mark.asyncio
async def test_processes_left_running_when_the_command_exits_are_stopped(
    tmp_path: Path,
) -> None:
    ctx = context()
    script = "sleep 300 & echo $! > child.pid; echo $$ > sh.pid; echo done"
    out = await output({"argv": ["sh", "-c", script], "cwd": str(tmp_path)}, ctx)
    assert out["stdout"] == "done\n"  # not held up by the sleep that kept the pipe open
    assert_tree_gone(tmp_path)
    assert any("left running" in line.message for line in ctx.logs)


@pytest.mark.asyncio
async def test_a_process_that_leaves_the_group_cannot_hold_the_step_up(tmp_path: Path) -> None:
    escapee = (
        "import os, time; os.setsid()\n"  # a daemon: out of the group's reach, pipes still open
        "open('escaped.pid', 'w').write(str(os.getpid())); time.sleep(60)"
    )
    script = f'{PYTHON} -c "$ESCAPEE" & while [ ! -s escaped.pid ]; do sleep 0.05; done; echo ok'
    inputs: dict[str, JSON] = {"argv": ["sh", "-c", script], "env": {"ESCAPEE": escapee}}
    ctx = context()
    open_files = len(os.listdir("/proc/self/fd"))
    started = time.monotonic()
    try:
        out = await output({**inputs, "cwd": str(tmp_path)}, ctx)
        for _ in range(10):  # transports close their file descriptors on the loop's next turns
            await asyncio.sleep(0)
        assert len(os.listdir("/proc/self/fd")) == open_files  # our ends of its pipes are closed
    finally:
        if pid := read_pid(tmp_path / "escaped.pid"):
            os.kill(pid, signal.SIGKILL)
    assert out["stdout"] == "ok\n"
    assert time.monotonic() - started < 10
    assert any("stopped reading output" in line.message for line in ctx.logs)


@pytest.mark.asyncio
async def test_a_group_found_gone_is_never_signalled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Once the command has exited and its group is found empty, the kernel may give the group's
    # id to another process group: nothing may be sent to it after that.
    found_gone: set[int] = set()
    sent: list[int] = []

    def group_alive(group: int) -> bool:
        if group in found_gone:
            return True  # the id now names a stranger's group
        if alive := real_group_alive(group):
            return alive
        found_gone.add(group)
        return False

    def signal_group(group: int, signum: int) -> None:
        if group in found_gone:
            sent.append(signum)
        else:
            real_signal_group(group, signum)

    real_group_alive, real_signal_group = shell._group_alive, shell._signal_group
    monkeypatch.setattr(shell, "_group_alive", group_alive)
    monkeypatch.setattr(shell, "_signal_group", signal_group)
    assert (await output({"argv": ["true"]}))["exit_code"] == 0
    assert found_gone and sent == []


# --- output caps -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_megabytes_of_output_finish_with_logs_capped_and_a_note() -> None:
    ctx = context()
    code = "import sys\nfor i in range(60000): print(f'{i:08d}' + 'x' * 91)\nprint('the end')"
    out = await output({"argv": py(code), "max_output_bytes": 10_000}, ctx)
    lines = logged(ctx, "stdout")
    assert lines[0] == "00000000" + "x" * 91
    assert sum(len(line) + 1 for line in lines[:-1]) <= 10_000  # the last one is the note
    (note,) = [line for line in ctx.logs if "were not logged" in line.message]
    assert note.level == "warning"
    assert note.fields["dropped_lines"] == 60001 - 100
    assert len(out["stdout"].encode()) <= 10_000
    assert out["stdout"].endswith("00059999" + "x" * 91 + "\nthe end\n")


@pytest.mark.asyncio
async def test_both_streams_are_drained_at_once_so_the_child_never_blocks() -> None:
    # Each stream alone is far beyond a pipe's buffer, interleaved: reading one stream to its
    # end before the other would deadlock.
    code = (
        "import sys\n"
        "for i in range(20000):\n"
        "    sys.stdout.write('o' * 99 + '\\n'); sys.stderr.write('e' * 99 + '\\n')\n"
    )
    ctx = context()
    out = await output({"argv": py(code)}, ctx)
    assert out["stdout"].endswith("o" * 99 + "\n") and out["stderr"].endswith("e" * 99 + "\n")
    notes = [line.fields["stream"] for line in ctx.logs if "were not logged" in line.message]
    assert sorted(notes) == ["stderr", "stdout"]


@pytest.mark.asyncio
async def test_a_line_without_end_is_logged_in_pieces_and_capped() -> None:
    ctx = context()
    code = "import sys; sys.stdout.write('y' * 3_000_000)"
    out = await output({"argv": py(code)}, ctx)
    assert out["stdout"] == "y" * 64 * 1024
    assert all(len(line) <= 16 * 1024 for line in logged(ctx, "stdout"))


# --- off unless enabled ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_shell_handler_is_disabled_by_default(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    error = await failure({"argv": ["touch", str(marker)]}, settings=None)
    assert error.code == "shell_disabled"
    assert not error.retryable
    assert "OVERTURE_ENABLE_SHELL" in error.message
    assert not marker.exists()


@pytest.mark.parametrize("settings", [{"grace": -1}, {"max_output_bytes": 0}, {"max_log_lines": 0}])
def test_shell_settings_refuse_values_that_cannot_work(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="ShellSettings"):
        ShellSettings(**settings)


def test_process_handlers_register_shell_and_enable_it_only_when_set() -> None:
    assert "shell" in process_handlers(Settings()).registry
    assert not load_settings({}, environ={}).enable_shell
    assert load_settings({}, environ={"OVERTURE_ENABLE_SHELL": "1"}).enable_shell

    async def run(settings: Settings) -> Outcome:
        handlers = process_handlers(settings)
        try:
            return await execute(handlers.registry.get("shell"), {"argv": ["true"]}, context(), {})
        finally:
            await handlers.aclose()

    disabled = asyncio.run(run(Settings()))
    assert disabled.error is not None and disabled.error.code == "shell_disabled"
    enabled = asyncio.run(run(Settings(enable_shell=True)))
    assert enabled.error is None


# --- end to end: overture run --local ----------------------------------------------------------

SYNC_SCRIPT = """\
import os, sys
print("syncing CenterPoint since", sys.argv[2])
print("key", os.environ["CENTERPOINT_API_KEY"], "run", os.environ["SYNC_RUN_ID"][:4])
print("leaked:", sorted(k for k in os.environ if k.startswith("OVERTURE_")), file=sys.stderr)
print("synced 3 records")
"""


def test_the_centerpoint_sync_example_runs_durably_with_the_shell_enabled(tmp_path: Path) -> None:
    (tmp_path / "sync.py").write_text(SYNC_SCRIPT)
    example = ROOT / "examples" / "centerpoint_sync.yml"
    database = f"sqlite:///{tmp_path / 'o.db'}"
    inputs = ["-i", "since=2026-01-01", "-i", f"runtime={PYTHON}", "-i", "script=sync.py"]
    env = {"OVERTURE_ENABLE_SHELL": "1", "OVERTURE_SECRET_CENTERPOINT_API_KEY": SECRET}

    done = run_overture(
        "run", example, "--local", "--database-url", database, *inputs, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "synced 3 records" in done.stdout  # the run's output: the script's stdout
    assert SECRET not in done.stdout + done.stderr

    listed = run_overture("runs", "ls", "--database-url", database, "--json", cwd=tmp_path)
    (run,) = json.loads(listed.stdout)["items"]
    logs = run_overture("runs", "logs", run["id"], "--database-url", database, cwd=tmp_path)
    assert logs.returncode == 0, logs.stderr
    assert "syncing CenterPoint since 2026-01-01" in logs.stdout
    assert "key *** run" in logs.stdout and SECRET not in logs.stdout
    assert "leaked: []" in logs.stdout
    assert '"stream":"stderr"' in logs.stdout.replace(" ", "")


def test_a_shell_step_fails_with_shell_disabled_unless_the_worker_enables_it(
    tmp_path: Path,
) -> None:
    example = ROOT / "examples" / "centerpoint_sync.yml"
    database = f"sqlite:///{tmp_path / 'o.db'}"
    env = {"OVERTURE_SECRET_CENTERPOINT_API_KEY": SECRET}
    done = run_overture(
        "run",
        example,
        "--local",
        "--database-url",
        database,
        "-i",
        "since=x",
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 1
    assert "shell steps are disabled on this worker: set OVERTURE_ENABLE_SHELL=1" in done.stdout
    assert no_traceback(done)


def test_the_worker_and_serve_commands_take_enable_shell() -> None:
    for command in ("worker", "serve"):
        done = run_overture(command, "--help", cwd=ROOT)
        assert "--enable-shell" in done.stdout and "OVERTURE_ENABLE_SHELL" in done.stdout

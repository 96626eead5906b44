"""The built-in ``shell`` handler: run a command on the worker's machine, never through a shell.

    - id: sync
      uses: shell
      with:
        argv: [tsx, scripts/centerpoint-sync.ts, --since, "${input.since}"]
        env: {CENTERPOINT_TOKEN: "${secrets.CENTERPOINT_TOKEN}"}
        timeout: 600

Off unless the process runs with ``OVERTURE_ENABLE_SHELL`` set: a workflow author should not get
a shell on every worker by default. When off, the handler is still registered (so workflows
validate everywhere) and every call fails at once with ``shell_disabled``.

The command runs in a process group of its own. Its own ``timeout``, the step's timeout, a
cancelled run and a stopping worker all end the same way: SIGTERM to the whole group, a short
grace, then SIGKILL, so grandchildren never outlive the step. Processes still running in the
group when the command exits are stopped the same way, else they would hold its output pipes
open. The child sees only a minimal environment plus what the step names: never the worker's
own, which holds ``OVERTURE_SECRET_*`` values and database credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overture import serde
from overture.errors import NonRetryable, Retry, StepError
from overture.handlers.shell_output import Capture, pump
from overture.runtime.context import StepContext
from overture.serde import JSON

ENABLE_ENV = "OVERTURE_ENABLE_SHELL"
DEFAULT_INHERITED = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR")
"""What the child gets from the worker's environment unless the step's ``inherit_env`` adds more."""
RESERVED_PREFIX = "OVERTURE_"
"""Worker variables a step cannot inherit: settings, database URLs, API keys and secrets."""
STOP_POLL = 0.05
"""Seconds between checks that a stopped process group is gone."""
FAILURE_LINES = 5
"""Lines of the command's stderr quoted in a failure's message."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ShellSettings:
    """Whether and how the ``shell`` handler runs commands."""

    enabled: bool = False
    """Run commands at all (``OVERTURE_ENABLE_SHELL``); when off every call fails at once."""
    grace: float = 2.0
    """Seconds between SIGTERM and SIGKILL when a command's process group is stopped."""
    max_output_bytes: int = 64 * 1024
    """Per stream: bytes logged, and bytes of its end kept in the output, unless a step sets it."""
    max_log_lines: int = 1000
    """Per stream: lines logged at most (each line is a stored row)."""

    def __post_init__(self) -> None:
        if self.grace < 0:
            raise ValueError(f"ShellSettings.grace must be >= 0, got {self.grace!r}")
        if self.max_output_bytes < 1 or self.max_log_lines < 1:
            raise ValueError("ShellSettings.max_output_bytes and max_log_lines must be positive")


SCALAR = {"type": ["string", "number", "boolean"]}
SHELL_INPUT: dict[str, Any] = {
    "type": "object",
    "required": ["argv"],
    "properties": {
        # A string passes the schema so that the handler can say why a list is needed.
        "argv": {"type": ["array", "string"], "minItems": 1, "items": SCALAR},
        "cwd": {"type": "string", "minLength": 1},
        "env": {"type": "object", "additionalProperties": SCALAR},
        "inherit_env": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "stdin": {"type": "string"},
        "max_output_bytes": {"type": "integer", "minimum": 1},
        "ok_exit_codes": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        "retry_exit_codes": {"type": "array", "items": {"type": "integer"}},
    },
    "additionalProperties": False,
}
SHELL_OUTPUT: dict[str, Any] = {
    "type": "object",
    "required": ["exit_code", "stdout", "stderr", "duration"],
    "properties": {
        "exit_code": {"type": "integer"},
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "duration": {"type": "number"},
    },
}


class ShellHandler:
    """The ``shell`` handler and its settings."""

    def __init__(self, settings: ShellSettings | None = None) -> None:
        self.settings = settings or ShellSettings()

    async def shell(
        self,
        ctx: StepContext,
        *,
        argv: Sequence[str | float | bool] | str,
        cwd: str | None = None,
        env: Mapping[str, str | float | bool] | None = None,
        inherit_env: Sequence[str] = (),
        timeout: float | None = None,
        stdin: str | None = None,
        max_output_bytes: int | None = None,
        ok_exit_codes: Sequence[int] = (0,),
        retry_exit_codes: Sequence[int] = (),
    ) -> dict[str, JSON]:
        """Run ``argv`` (a list, never a shell string); output ``{exit_code, stdout, stderr,
        duration}``.

        ``cwd``, ``env`` (added variables; values may be secrets), ``inherit_env`` (names passed
        from the worker's environment besides PATH, HOME, USER, LANG, LC_ALL, TZ, TMPDIR),
        ``timeout`` (seconds), ``stdin``, ``max_output_bytes`` (per stream, logged and kept),
        ``ok_exit_codes`` ([0]), ``retry_exit_codes`` (exit codes worth another attempt).
        Output lines go to the step's log as they come.
        """
        if not self.settings.enabled:
            raise NonRetryable(
                f"shell steps are disabled on this worker: set {ENABLE_ENV}=1 (or "
                "--enable-shell, or enable_shell = true in overture.toml) where steps run",
                code="shell_disabled",
            )
        if os.name != "posix":
            raise NonRetryable("shell steps need a POSIX system", code="shell_unsupported")
        command = _command(argv)
        run = _Run(
            ctx=ctx,
            command=command,
            limit=max_output_bytes or self.settings.max_output_bytes,
            settings=self.settings,
        )
        process = await run.spawn(
            _directory(cwd), _environment(os.environ, inherit_env, env), stdin
        )
        exit_code = await run.wait(process, stdin, timeout)
        duration = round(time.monotonic() - run.started, 3)
        ctx.log(f"{command[0]} exited with {exit_code} after {duration:g}s", exit_code=exit_code)
        if exit_code not in ok_exit_codes:
            raise run.failed(exit_code, retryable=exit_code in retry_exit_codes)
        return {
            "exit_code": exit_code,
            "stdout": run.stdout.text(),
            "stderr": run.stderr.text(),
            "duration": duration,
        }


# --- checking the inputs -----------------------------------------------------------------------


def _command(argv: Sequence[str | float | bool] | str) -> list[str]:
    if isinstance(argv, str):
        raise NonRetryable(
            "argv must be a list of arguments, e.g. [ls, -la, /tmp], not a string: shell steps "
            "run no shell, so nothing would split, quote or expand it. If you need a shell's "
            'features, ask for one: [sh, -c, "..."]',
            code="bad_input",
        )
    command = [arg if isinstance(arg, str) else serde.dumps_text(arg) for arg in argv]
    if not command or not command[0]:
        raise NonRetryable("argv[0], the program to run, must not be empty", code="bad_input")
    if any("\0" in arg for arg in command):
        raise NonRetryable("an argument in argv contains a NUL character", code="bad_input")
    return command


def _directory(cwd: str | None) -> str | None:
    if cwd is not None and not Path(cwd).is_dir():
        raise NonRetryable(
            f"cwd {cwd!r} is not a directory on this worker", code="shell_cwd_not_found"
        )
    return cwd


def _environment(
    worker: Mapping[str, str],
    inherit: Sequence[str],
    extra: Mapping[str, str | float | bool] | None,
) -> dict[str, str]:
    """The child's whole environment: the minimal set and ``inherit`` from ``worker``, then
    ``extra``."""
    if refused := sorted(name for name in inherit if name.upper().startswith(RESERVED_PREFIX)):
        raise NonRetryable(
            f"inherit_env cannot pass {', '.join(refused)}: {RESERVED_PREFIX}* variables hold the "
            'worker\'s settings and secrets. Pass a secret as env: {NAME: "${secrets.NAME}"}',
            code="bad_input",
        )
    names = dict.fromkeys([*DEFAULT_INHERITED, *inherit])
    child = {name: worker[name] for name in names if name in worker}
    child.setdefault("PATH", os.defpath)
    for name, value in (extra or {}).items():
        text = value if isinstance(value, str) else serde.dumps_text(value)
        if not name or "=" in name or "\0" in name + text:
            raise NonRetryable(
                f"env: {name!r} cannot be an environment variable (no '=' or NUL allowed)",
                code="bad_input",
            )
        child[name] = text
    return child


# --- one command, start to end -----------------------------------------------------------------


@dataclass(kw_only=True)
class _Run:
    """One command of one attempt: its output so far, and how to end its process group."""

    ctx: StepContext
    command: list[str]
    limit: int
    settings: ShellSettings

    def __post_init__(self) -> None:
        lines = self.settings.max_log_lines
        self.stdout = Capture(self.ctx, "stdout", "info", self.limit, lines)
        self.stderr = Capture(self.ctx, "stderr", "warning", self.limit, lines)
        self.started = time.monotonic()

    async def spawn(
        self, cwd: str | None, env: dict[str, str], stdin: str | None
    ) -> asyncio.subprocess.Process:
        """Start the command in a new session (its own process group), output piped."""
        self.ctx.log(f"$ {shlex.join(self.command)}" + (f"  (in {cwd})" if cwd else ""))
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as error:
            raise self._not_found(error) from None
        except OSError as error:  # out of processes or file descriptors: may pass
            retry = Retry(
                f"could not start {self.command[0]!r}: {error}", code="shell_spawn_failed"
            )
            raise retry from None
        self.started = time.monotonic()
        return process

    def _not_found(self, error: OSError) -> StepError:
        program = self.command[0]
        what = "is not executable" if isinstance(error, PermissionError) else "was not found"
        if "/" not in program:
            what += " on the PATH the command gets (set PATH in env, or give its full path)"
        return NonRetryable(f"{program!r} {what}", code="shell_not_found")

    async def wait(
        self, process: asyncio.subprocess.Process, stdin: str | None, timeout: float | None
    ) -> int:
        """The exit code, once the command and everything it left in its group have ended;
        stops the group on ``timeout`` (``shell_timeout``) and on cancellation."""
        assert process.stdout is not None
        assert process.stderr is not None
        readers = [
            asyncio.create_task(pump(process.stdout, self.stdout)),
            asyncio.create_task(pump(process.stderr, self.stderr)),
        ]
        if stdin is not None:
            readers.append(asyncio.create_task(_feed(process, stdin)))
        timed_out = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    await _exited(process)
            except TimeoutError:
                timed_out = True
                self.ctx.log(f"timed out after {timeout:g}s: stopping it", level="warning")
            else:
                if _group_alive(process.pid):
                    self.ctx.log("stopping the processes the command left running", level="warning")
            await _stop_group(process, self.settings.grace)
            await self._finish_reading(readers)
        finally:
            # Cancelled (step timeout, run cancelled, worker stopping) or failed above: the group
            # goes, whatever state it is in. A no-op when it has already gone.
            for task in readers:
                task.cancel()
            await _stop_group(process, self.settings.grace)
            await asyncio.gather(*readers, return_exceptions=True)
            _close_pipes(process)
        if timed_out:
            message = f"{self.command[0]} did not finish within {timeout:g}s and was killed"
            raise Retry(self._with_output(message), code="shell_timeout")
        assert process.returncode is not None
        return process.returncode

    async def _finish_reading(self, readers: list[asyncio.Task[None]]) -> None:
        """Read what is left in the pipes; a process that left the group (``setsid``) may hold
        them open for ever, so reading stops after the grace period."""
        _, pending = await asyncio.wait(readers, timeout=max(self.settings.grace, 0.5))
        if pending:
            self.ctx.log(
                "stopped reading output: a process outside the command's group holds its pipes",
                level="warning",
            )
        self.stdout.finish()
        self.stderr.finish()

    def failed(self, exit_code: int, *, retryable: bool) -> StepError:
        """How an exit code outside ``ok_exit_codes`` fails the step."""
        program = self.command[0]
        if exit_code < 0:
            name = _signal_name(-exit_code)
            code, message = f"shell_signal_{-exit_code}", f"{program} was killed by {name}"
        else:
            code, message = f"shell_exit_{exit_code}", f"{program} exited with {exit_code}"
        message = self._with_output(message)
        error: StepError
        error = Retry(message, code=code) if retryable else NonRetryable(message, code=code)
        error.details = {"exit_code": exit_code}
        return error

    def _with_output(self, message: str) -> str:
        """``message`` and the last lines of stderr (of stdout if stderr is empty)."""
        last = self.stderr.last_lines(FAILURE_LINES) or self.stdout.last_lines(FAILURE_LINES)
        return f"{message}: {' | '.join(last)}" if last else message


def _close_pipes(process: asyncio.subprocess.Process) -> None:
    """Close our ends of the pipes (no-op when they reached their end), so that a process that
    left the group and holds them leaks no file descriptors and no transport here."""
    transport = getattr(process, "_transport", None)  # asyncio offers no public way to it
    for fd in (0, 1, 2):
        pipe = transport.get_pipe_transport(fd) if transport is not None else None
        if pipe is not None:
            pipe.close()


async def _feed(process: asyncio.subprocess.Process, text: str) -> None:
    """Write ``stdin`` and close it; a command that exits without reading it is no error."""
    assert process.stdin is not None
    try:
        process.stdin.write(text.encode())
        await process.stdin.drain()
        process.stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass


# --- process groups ----------------------------------------------------------------------------


async def _stop_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the process group, give it ``grace`` seconds, SIGKILL what is left; reap.

    The SIGKILL is sent in a ``finally``, so a second cancellation during the grace period
    shortens it instead of leaving processes behind."""
    group = process.pid  # start_new_session: the command leads a group with its own pid
    if process.returncode is not None and not _group_alive(group):
        return
    try:
        _signal_group(group, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline:
            if process.returncode is not None and not _group_alive(group):
                break
            await asyncio.sleep(STOP_POLL)
    finally:
        if process.returncode is None or _group_alive(group):
            _signal_group(group, signal.SIGKILL)
    await _exited(process)


async def _exited(process: asyncio.subprocess.Process) -> int:
    """The exit code once the process has exited. ``Process.wait()`` alone also waits for its
    pipes to close, which a grandchild may keep open after the command itself has ended."""
    waiter = asyncio.ensure_future(process.wait())
    try:
        while process.returncode is None:
            await asyncio.wait({waiter}, timeout=STOP_POLL)
    finally:
        waiter.cancel()
    return process.returncode


def _signal_group(group: int, signum: int) -> None:
    # Gone already: nothing to do (an unreaped leader keeps the group there until reaped).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    """Whether a process of the group still runs (zombies waiting for a reaper do not count:
    where PID 1 reaps nothing, a dead grandchild stays a zombie for ever)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with os.scandir("/proc") as entries:
            return any(_live_member(entry.path, group) for entry in entries if entry.name.isdigit())
    except OSError:  # no /proc (macOS, where launchd reaps every orphan at once)
        return True


def _live_member(directory: str, group: int) -> bool:
    try:
        stat = Path(directory, "stat").read_text()
    except OSError:
        return False
    # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after it
    state, _, pgrp, *_ = stat[stat.rindex(")") + 2 :].split()
    return int(pgrp) == group and state not in ("Z", "X")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"

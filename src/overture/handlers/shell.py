"""The built-in ``shell`` handler: run a command on the worker's machine, never through a shell.

    - id: sync
      uses: shell
      with:
        argv: [tsx, scripts/centerpoint-sync.ts, --since, "${input.since}"]
        env: {CENTERPOINT_TOKEN: "${secrets.CENTERPOINT_TOKEN}"}
        timeout: 600

Off unless the process runs with ``OVERTURE_ENABLE_SHELL`` set: a workflow author should not get
a shell on every worker by default. When off, the handler is still registered (so workflows
validate everywhere) and every call fails at once with ``shell_disabled``. ``shell_tenants``
narrows it to some tenants: any tenant with a key that may start runs could otherwise run
programs as the worker's OS user.

The command runs in a process group of its own. Its own ``timeout``, the step's timeout, a
cancelled run and a stopping worker all end the same way: SIGTERM to the whole group, a short
grace, then SIGKILL, so grandchildren never outlive the step. Processes still running in the
group when the command exits are stopped the same way, else they would hold its output pipes
open. The child is given only a minimal environment plus what the step names, not the worker's
own (which holds ``OVERTURE_SECRET_*`` values and database credentials), and the worker makes
itself non-dumpable so that the child cannot read that environment from ``/proc`` either. The
command's lines are logged as they come, into the attempt's log, which is stored with the
attempt's completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import shlex
import shutil
import signal
import sys
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

logger = logging.getLogger("overture.shell")

ENABLE_ENV = "OVERTURE_ENABLE_SHELL"
TENANTS_ENV = "OVERTURE_SHELL_TENANTS"
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
    tenants: tuple[str, ...] = ()
    """The tenants whose commands run (``OVERTURE_SHELL_TENANTS``); empty: every tenant's.
    Another tenant's shell steps fail at once with ``shell_not_allowed``."""
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
        if self.settings.enabled:
            forbid_dumping()

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
        Output lines go to the attempt's log, stored when the attempt ends.
        """
        if not self.settings.enabled:
            raise NonRetryable(
                f"shell steps are disabled on this worker: set {ENABLE_ENV}=1 (or "
                "--enable-shell, or enable_shell = true in overture.toml) where steps run",
                code="shell_disabled",
            )
        if self.settings.tenants and ctx.tenant not in self.settings.tenants:
            # The allowed tenants are not listed: one tenant need not learn the others' names.
            raise NonRetryable(
                f"tenant {ctx.tenant!r} may not run shell steps on this worker: its "
                f"shell_tenants setting ({TENANTS_ENV}) does not name it",
                code="shell_not_allowed",
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


# --- the worker's own environment ------------------------------------------------------------

PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
"""``prctl`` options, from <linux/prctl.h>."""


@functools.cache
def forbid_dumping() -> None:
    """Make this process non-dumpable (on Linux; elsewhere nothing is done), once per process.

    Commands run as the worker's OS user, and the kernel lets a process read
    ``/proc/<pid>/environ`` and ``/proc/<pid>/mem`` of, or ptrace, any process of its own user:
    a command given a minimal environment could still read the worker's, with every
    ``OVERTURE_SECRET_*`` value and the database URL, from ``/proc/$PPID/environ``. A
    non-dumpable process is out of reach of the other processes of its user. What it does not
    stop: root and processes with CAP_SYS_PTRACE still read it; the worker's files
    (``overture.toml``, a SQLite database, a ``.env``) stay readable to its commands, and so do
    other processes of the same user (a wrapper shell that did not ``exec`` the worker, an
    Overture process with shell steps off). The worker no longer writes core dumps. A command is
    dumpable again once it has started (``execve`` resets it), so it loses nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        reason = os.strerror(ctypes.get_errno())
        logger.warning(
            "could not make the worker non-dumpable (%s): shell commands may read its "
            "environment from /proc",
            reason,
        )


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
            raise self._not_started(error, cwd, env.get("PATH")) from None
        except OSError as error:  # out of processes or file descriptors: may pass
            retry = Retry(
                f"could not start {self.command[0]!r}: {error}", code="shell_spawn_failed"
            )
            raise retry from None
        self.started = time.monotonic()
        return process

    def _not_started(self, error: OSError, cwd: str | None, path: str | None) -> StepError:
        """Why the command could not start; ``error.filename`` names what failed: ``cwd`` when
        the worker could not enter it, else the program (which, if it exists, lacks its ``#!``
        interpreter or its loader)."""
        program = self.command[0]
        if cwd is not None and error.filename == cwd:
            hint = isinstance(error, PermissionError) and " (the worker's OS user may not enter it)"
            return NonRetryable(
                f"cannot run {program!r} in cwd {cwd!r}: {error.strerror}{hint or ''}",
                code="shell_cwd_not_found",
            )
        if isinstance(error, PermissionError):
            what = "is not executable"
        elif found := _existing(program, cwd, path):
            return NonRetryable(
                f"{program!r} ({found}) exists but cannot start: {_missing_part(found)}",
                code="shell_not_found",
            )
        else:
            what = "was not found"
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
        timed_out = stopped = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    await _exited(process)
            except TimeoutError:
                timed_out = True
                self.ctx.log(f"timed out after {timeout:g}s: stopping it", level="warning")
            else:
                stopped = not _group_alive(process.pid)  # the usual case: nothing left
                if not stopped:
                    self.ctx.log("stopping the processes the command left running", level="warning")
            if not stopped:
                await _stop_group(process, self.settings.grace)
                stopped = True
            await self._finish_reading(readers)
        finally:
            for task in readers:
                task.cancel()
            # Cancelled (step timeout, run cancelled, worker stopping) or failed above: the group
            # goes, whatever state it is in. Never once it was found gone with its leader reaped:
            # the kernel may since have given its id to another process group.
            if not stopped:
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


def _existing(program: str, cwd: str | None, path: str | None) -> str | None:
    """The file ``program`` names, found as the system looks it up, or None."""
    if "/" in program:
        found = Path(cwd or ".", program)
        return str(found) if found.is_file() else None
    return shutil.which(program, path=path)


def _missing_part(file: str) -> str:
    """What a program that exists but is "not found" by ``execve`` lacks."""
    try:
        with open(file, "rb") as opened:
            first = opened.readline(256)
    except OSError:
        first = b""
    if first.startswith(b"#!") and (words := first[2:].split()):
        interpreter = words[0].decode(errors="replace")
        return f"its interpreter {interpreter!r} (its #! line) was not found"
    return "a file it needs to start (its #! interpreter or its dynamic loader) was not found"


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
    gone = False
    try:
        _signal_group(group, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline:
            if gone := process.returncode is not None and not _group_alive(group):
                break
            await asyncio.sleep(STOP_POLL)
    finally:
        # Once found gone (leader reaped, no member left), the group's id is no longer ours.
        if not gone and (process.returncode is None or _group_alive(group)):
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

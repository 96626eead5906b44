"""A real ``overture serve`` process for tests: started on a free port, stopped with SIGTERM.

    with running_server(database_url, workflows=tmp_path) as server:
        httpx.get(f"{server.url}/health")

The port is the one the server reports after it started listening (``--port 0``), so parallel
tests never race for a port. ``run_serve`` is for the invocations expected to exit by
themselves (a refusal, invalid workflow files, ``--help``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0
EXIT_TIMEOUT = 30.0
LISTENING = re.compile(r"Overture API on (http://[\w.:\[\]-]+:\d+)")


def environment(**extra: str) -> dict[str, str]:
    """Ours without OVERTURE_* settings, with the test apps importable."""
    ours = {k: v for k, v in os.environ.items() if not k.startswith("OVERTURE_")}
    return {**ours, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **extra}


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "overture", "serve", *args]


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return "".join(self.output)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(5)  # the rest of the output, up to end of file
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def _pump(process: subprocess.Popen[str], into: list[str], seen: threading.Event) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        into.append(line)
        if LISTENING.search(line):
            seen.set()
    seen.set()


def start_server(
    database_url: str,
    *args: str,
    workflows: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> RunningServer:
    """Start ``overture serve`` and return once it listens (``RuntimeError`` if it exits)."""
    command = serve_command(
        "--port",
        "0",
        "--database-url",
        database_url,
        "--grace",
        "5",
        *(["--workflows", str(workflows)] if workflows is not None else []),
        *args,
    )
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment(**(env or {})),
        cwd=cwd,
    )
    output: list[str] = []
    listening = threading.Event()
    reader = threading.Thread(target=_pump, args=(process, output, listening), daemon=True)
    reader.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not listening.wait(0.05):
        if time.monotonic() > deadline:
            RunningServer(url="", process=process, output=output, reader=reader).stop(0)
            raise RuntimeError("overture serve did not start:\n" + "".join(output))
    found = LISTENING.search("".join(output))
    if found is None:
        RunningServer(url="", process=process, output=output, reader=reader).stop()
        raise RuntimeError(f"overture serve exited with {process.returncode}:\n" + "".join(output))
    return RunningServer(url=found.group(1), process=process, output=output, reader=reader)


@contextmanager
def running_server(database_url: str, *args: str, **kwargs: object) -> Iterator[RunningServer]:
    server = start_server(database_url, *args, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def run_serve(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``overture serve ARGS`` to its end (for invocations that must exit by themselves)."""
    return subprocess.run(
        serve_command(*args),
        capture_output=True,
        text=True,
        env=environment(**(env or {})),
        cwd=cwd,
        timeout=EXIT_TIMEOUT,
        check=False,
    )

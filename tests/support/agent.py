"""``overture demo-agent`` as a real process, for tests that call it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTUP = 20.0
"""Seconds the agent may take to answer (within pytest's 60 s per test)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class AgentProcess:
    """``overture demo-agent --port PORT``; its output goes to a file (a pipe could fill up)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "demo-agent.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OVERTURE_")}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "overture", "demo-agent", "--port", str(self.port)],
                cwd=directory,
                env={**env, "PYTHONPATH": str(ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def wait_until_answering(self) -> None:
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"demo-agent exited early:\n{self.output()}")
            try:
                self.get("/")
            except httpx.TransportError:
                time.sleep(0.1)
            else:
                return
        raise AssertionError(f"demo-agent did not answer within {STARTUP}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    started = AgentProcess(tmp_path)
    try:
        started.wait_until_answering()
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait()

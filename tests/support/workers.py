"""``overture worker`` processes for tests: started with a short lease, killed at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEASE = 1.0


class WorkerProcess:
    """``overture worker`` in a subprocess, its log in a file (a pipe could fill and block it)."""

    def __init__(self, url: str, log: Path, *args: str) -> None:
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OVERTURE_LOG_LEVEL": "INFO"}
        command = [
            sys.executable,
            "-m",
            "overture",
            "worker",
            "--database-url",
            url,
            "--app",
            "tests.apps.handlers:registry",
            "--lease",
            str(LEASE),
            "--poll",
            "0.05",
            *args,
        ]
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        self.pid = self.process.pid

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_worker(
    started: list[WorkerProcess], url: str, tmp_path: Path, *args: str
) -> WorkerProcess:
    worker = WorkerProcess(url, tmp_path / f"worker-{len(started)}.log", *args)
    started.append(worker)
    return worker

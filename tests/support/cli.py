"""The ``overture`` command as a user runs it, in a process of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.server import environment

OVERTURE = [sys.executable, "-m", "overture"]
"""Run as a module, so that coverage follows it into the process."""


def run_overture(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``overture ARGS`` in ``cwd``, without the caller's ``OVERTURE_*`` settings (a developer's
    own database or server must not leak in), with ``env`` added."""
    return subprocess.run(
        [*OVERTURE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=environment(**(env or {})),
        check=False,
    )

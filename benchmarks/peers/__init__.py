"""The peers, each measured by its own driver inside ``benchmarks/.peers-venv``.

The virtualenv is created (and the peers installed into it with pip) on first use; a peer that
cannot be installed or run gets a row saying why, and the suite goes on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

from benchmarks.common import (
    CHAIN,
    DRAIN,
    FAN_OUT,
    LATENCY,
    NAMES,
    ROOT,
    Measurement,
    failed,
    log,
    read_measurements,
)

VENV = str(ROOT / "benchmarks" / ".peers-venv")
PYTHON = f"{VENV}/bin/python"
PEERS = {
    # system: (requirement, module it imports, driver, its store)
    "Celery": ("celery[redis]==5.*", "celery", "benchmarks.peers.celery_app", "Redis"),
    "Procrastinate": (
        "procrastinate==3.*",
        "procrastinate",
        "benchmarks.peers.procrastinate_app",
        "PostgreSQL",
    ),
}
SCENARIOS = (DRAIN, LATENCY, CHAIN, FAN_OUT)


def install(requirement: str, module: str) -> str | None:
    """Make ``module`` importable in the peers' virtualenv; the reason if it cannot be."""
    try:
        if not os.path.exists(PYTHON):
            log(f"creating {VENV}")
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True, capture_output=True)
        probe = subprocess.run([PYTHON, "-c", f"import {module}"], check=False, capture_output=True)
        if probe.returncode != 0:
            log(f"installing {requirement} into {VENV}")
            pip = [PYTHON, "-m", "pip", "install", "--quiet", requirement]
            subprocess.run(pip, check=True, capture_output=True, text=True, timeout=900)
    except subprocess.CalledProcessError as error:
        output = (error.stderr or error.stdout or str(error)).strip()
        return f"could not install {requirement}: {output.splitlines()[-1] if output else error}"
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not install {requirement}: {error}"
    return None


def run(
    *, quick: bool, repeat: int, postgres: str, redis: str, logs: Path, only: Collection[str]
) -> list[Measurement]:
    """Scenarios 1–4 (those in ``only``) with each peer."""
    results: list[Measurement] = []
    scenarios = [s for s in SCENARIOS if s in only]
    if not scenarios:
        return results
    for system, (requirement, module, driver, store) in PEERS.items():
        if (problem := install(requirement, module)) is not None:
            log(problem)
            results += failed(system, store, scenarios, problem)
            continue
        out = logs / f"{system.lower()}.json"
        args = [PYTHON, "-m", driver, f"--out={out}", f"--logs={logs}", f"--repeat={repeat}"]
        args += [f"--postgres={postgres}", *(["--quick"] if quick else [])]
        args += [f"--scenario={name}" for name, long in NAMES.items() if long in scenarios]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_REDIS": redis}
        done = subprocess.run(args, check=False, cwd=ROOT, env=env)
        if done.returncode != 0 or not out.exists():
            results += failed(system, store, scenarios, f"its driver exited with {done.returncode}")
        else:
            results += read_measurements(out)
    return results

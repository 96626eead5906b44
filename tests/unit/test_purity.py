"""The core is pure: importing it pulls in no database driver, HTTP client or event loop."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "src" / "overture" / "core"
FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "sqlite3",
    "asyncpg",
    "psycopg",
    "psycopg2",
    "aiosqlite",
    "sqlalchemy",
    "httpx",
    "aiohttp",
    "requests",
    "urllib3",
    "http.client",
    "urllib.request",
    "redis",
    "subprocess",
}


def test_core_modules_import_no_io_library_directly() -> None:
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if _forbidden(n)]
    assert offenders == []


def test_importing_the_core_loads_no_io_library_at_all() -> None:
    modules = [f"overture.core.{p.stem}" for p in sorted(CORE.glob("*.py")) if p.stem != "__init__"]
    script = (
        "import sys, json\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(json.dumps(sorted(sys.modules)))"
    )
    # Without coverage's variables: its tracer stores data in sqlite3, which is not ours.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    output = subprocess.check_output([sys.executable, "-c", script], text=True, env=env)
    loaded = json.loads(output)
    # The stdlib's email package (read by importlib.metadata, which pydantic uses to find its
    # plugins) imports socket for a host-name helper; that is not I/O, so only the libraries
    # that do networking or storage are checked transitively.
    transitive = FORBIDDEN - {"socket", "selectors", "ssl", "subprocess"}
    assert sorted(n for n in loaded if _forbidden(n, transitive)) == []


def _forbidden(name: str, names: set[str] = FORBIDDEN) -> bool:
    return any(name == f or name.startswith(f + ".") for f in names)

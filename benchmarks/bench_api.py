"""How many runs the HTTP API accepts per second, and how fast it answers at a steady 500/s.

One `overture serve` process on embedded SQLite (``--workers 0``: this measures accepting runs;
the drain benchmarks measure working them), with an API key, so authentication is paid for.
The load comes from one client process speaking raw HTTP/1.1 over keep-alive connections, cheap
enough to leave the server the bottleneck:

- **throughput**: 32 connections each posting back to back for a fixed time (closed loop);
- **latency at 500/s**: requests sent on a fixed schedule (open loop) and timed from when they
  were due, so a slow server cannot hide its queueing delay (no coordinated omission).

The latency run starts with one uncounted second of warm-up. Takes the median of repeated
samples and writes ``benchmarks/results/api.md``.

    python -m benchmarks.bench_api [--repeat 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import ROOT, log, percentile

RESULTS = Path(__file__).resolve().parent / "results" / "api.md"
WORKFLOW = "name: bench\nsteps:\n  - id: only\n    uses: noop\n"
CONNECTIONS = 32
RATE = 500.0
WARM_UP = 1.0
TARGET_RATE, TARGET_P99_MS = 1_500.0, 20.0
LISTENING = re.compile(r"Overture API on http://([\d.]+):(\d+)")


class Connection:
    """One keep-alive HTTP/1.1 connection that posts a prepared request and reads the answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def post(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        await self.reader.readexactly(int(length.group(1)) if length else 0)
        return status

    def close(self) -> None:
        self.writer.close()


def request(host: str, key: str, n: int) -> bytes:
    body = json.dumps({"workflow": "bench", "input": {"n": n}}).encode()
    head = (
        f"POST /v1/runs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def throughput(host: str, port: int, key: str, seconds: float) -> float:
    """Runs accepted per second by CONNECTIONS clients posting back to back."""
    connections = [await Connection.open(host, port) for _ in range(CONNECTIONS)]
    accepted = 0
    deadline = time.perf_counter() + seconds

    async def client(c: Connection, offset: int) -> None:
        nonlocal accepted
        n = offset
        while time.perf_counter() < deadline:
            if await c.post(request(host, key, n)) == 201:
                accepted += 1
            n += CONNECTIONS

    started = time.perf_counter()
    await asyncio.gather(*(client(c, i) for i, c in enumerate(connections)))
    elapsed = time.perf_counter() - started
    for c in connections:
        c.close()
    return accepted / elapsed


async def latency(host: str, port: int, key: str, seconds: float) -> tuple[float, float, int]:
    """p50 and p99 in ms of requests due every 1/RATE s, and how many were not 201.

    The first WARM_UP seconds run at the same rate but are not counted: they open the
    connections and warm caches, which a long-running server has done long before.
    """
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(CONNECTIONS * 2):
        idle.put_nowait(await Connection.open(host, port))
    timings: list[float] = []
    failures = 0
    start = time.perf_counter() + 0.1
    counted_from = start + WARM_UP

    async def one(due: float, n: int) -> None:
        nonlocal failures
        c = await idle.get()
        status = await c.post(request(host, key, n))
        if due >= counted_from:
            timings.append((time.perf_counter() - due) * 1000)
            failures += status != 201
        idle.put_nowait(c)

    tasks = []
    for n in range(int(RATE * (seconds + WARM_UP))):
        due = start + n / RATE
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(due, n)))
    await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait().close()
    return percentile(timings, 50), percentile(timings, 99), failures


def overture(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "overture", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout


def start_server(workdir: Path) -> tuple[subprocess.Popen[str], str, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERTURE_")}
    env["OVERTURE_DATABASE_URL"] = f"sqlite:///{workdir / 'overture.db'}"
    (workdir / "workflows").mkdir()
    (workdir / "workflows" / "bench.yml").write_text(WORKFLOW)
    created = json.loads(
        overture("keys", "create", "--tenant", "default", "--scopes", "write", "--json", env=env)
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "overture",
            "serve",
            "--port",
            "0",
            "--workers",
            "0",
            "--workflows",
            str(workdir / "workflows"),
        ],
        env={**env, "OVERTURE_LOG_LEVEL": "INFO"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workdir,
    )
    assert server.stdout is not None
    for line in server.stdout:
        found = LISTENING.search(line)
        if found:
            # Keep reading what it logs, so a full pipe never blocks the server.
            threading.Thread(target=server.stdout.read, daemon=True).start()
            return server, found.group(1), int(found.group(2)), created["key"]
    raise RuntimeError("overture serve exited before listening")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_api")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    rates, p50s, p99s, failed = [], [], [], 0
    for sample in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="overture-bench-api-") as tmp:
            server, host, port, key = start_server(Path(tmp))
            try:
                rate = asyncio.run(throughput(host, port, key, args.seconds))
                p50, p99, failures = asyncio.run(latency(host, port, key, args.seconds))
            finally:
                server.terminate()
                server.wait(30)
        log(
            f"sample {sample + 1}: {rate:,.0f} runs/s accepted; at {RATE:.0f}/s p50 "
            f"{p50:.2f} ms, p99 {p99:.2f} ms, {failures} not accepted"
        )
        rates.append(rate)
        p50s.append(p50)
        p99s.append(p99)
        failed += failures
    write(statistics.median(rates), statistics.median(p50s), statistics.median(p99s), failed, args)


def table(rate: float, p50: float, p99: float, failed: int) -> str:
    def verdict(ok: bool) -> str:
        return "✅" if ok else "❌"

    rows = [
        ("metric", "result", "target", ""),
        ("---", "---", "---", "---"),
        (
            f"runs accepted per second ({CONNECTIONS} connections, closed loop)",
            f"{rate:,.0f}",
            f"≥ {TARGET_RATE:,.0f}",
            verdict(rate >= TARGET_RATE),
        ),
        (f"p50 latency at {RATE:.0f} runs/s (open loop)", f"{p50:.2f} ms", "", ""),
        (
            f"p99 latency at {RATE:.0f} runs/s (open loop)",
            f"{p99:.2f} ms",
            f"≤ {TARGET_P99_MS:g} ms",
            verdict(p99 <= TARGET_P99_MS),
        ),
        ("requests not answered 201", str(failed), "0", verdict(failed == 0)),
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def write(rate: float, p50: float, p99: float, failed: int, args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    RESULTS.write_text(
        f"""# HTTP API: POST /v1/runs on embedded SQLite

One `overture serve --workers 0` process (SQLite, `synchronous=FULL`, group commit), bearer key
auth on every request; load from one raw HTTP/1.1 client process on the same machine
({platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python
{platform.python_version()}, load average {load} after the run). Medians of {args.repeat}
samples of {args.seconds:g} s each. Produced by `python -m benchmarks.bench_api`.

{table(rate, p50, p99, failed)}
""",
        encoding="utf-8",
    )
    log(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

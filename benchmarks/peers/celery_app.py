"""Celery 5 with Redis as broker and result backend: the app its worker loads, and the driver.

    BENCH_REDIS=redis://host:6379 python -m benchmarks.peers.celery_app --out FILE --logs DIR

(run by ``python -m benchmarks --peers`` inside ``benchmarks/.peers-venv``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial

import celery
import redis
from celery import Celery, chain, chord

from benchmarks.common import (
    CHAIN,
    DRAIN,
    FAN_OUT,
    LATENCY,
    REDIS,
    Measurement,
    Sizes,
    failed,
    measure,
    peer_main,
    percentile,
    spawn,
    stop,
    wait_until,
)

SERVER = os.environ.get("BENCH_REDIS", REDIS)
"""The server (``python -m benchmarks --redis``); the worker inherits it."""
QUEUE = "bench"
TIMEOUT = 300.0
WORKER = ["-P", "prefork", "-c", "8"]

app = Celery("bench", broker=f"{SERVER}/14", backend=f"{SERVER}/15")
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop() -> None:
    """Do nothing (the result, None, is still stored)."""


@app.task(name="stamp")
def stamp() -> float:
    """When the task ran, by the host clock."""
    return time.time()


# --- scenarios (in the driver) ---------------------------------------------------------------
def results() -> redis.Redis:
    return redis.Redis.from_url(f"{SERVER}/15")


def flush() -> None:
    """Empty the broker's and the backend's databases."""
    redis.Redis.from_url(f"{SERVER}/14").flushdb()
    results().flushdb()


def drain(sizes: Sizes) -> dict[str, float]:
    n, backend = sizes.drain_runs, results()
    backend.flushdb()
    app.control.cancel_consumer(QUEUE, reply=True, limit=1)
    started = time.perf_counter()
    for _ in range(n):
        noop.apply_async()
    enqueue = n / (time.perf_counter() - started)
    started = time.perf_counter()
    app.control.add_consumer(QUEUE)
    wait_until(lambda: backend.dbsize() >= n, TIMEOUT, "drain")
    return {"enqueue rate": enqueue, "drain rate": n / (time.perf_counter() - started)}


def latency(sizes: Sizes) -> dict[str, float]:
    n = int(sizes.latency_rate * sizes.latency_seconds)
    for _ in range(10):
        stamp.delay().get(timeout=TIMEOUT)
    sent, pending = [], []
    began = time.perf_counter()
    for i in range(n):
        time.sleep(max(0.0, began + i / sizes.latency_rate - time.perf_counter()))
        sent.append(time.time())
        pending.append(stamp.apply_async())
    gaps = [(r.get(timeout=TIMEOUT) - s) * 1000 for s, r in zip(sent, pending, strict=True)]
    return {"p50": percentile(gaps, 50), "p99": percentile(gaps, 99)}


def chains(sizes: Sizes) -> dict[str, float]:
    steps, backend = sizes.chain_runs * sizes.chain_length, results()
    backend.flushdb()
    started = time.perf_counter()
    for _ in range(sizes.chain_runs):
        chain(*(noop.si() for _ in range(sizes.chain_length))).apply_async()
    wait_until(lambda: backend.dbsize() >= steps, TIMEOUT, "chains")
    return {"steps/s": steps / (time.perf_counter() - started)}


def fan_outs(sizes: Sizes) -> dict[str, float]:
    walls = []
    for _ in range(sizes.fan_runs + 1):  # the first warms up
        started = time.time()
        result = chain(
            noop.si(), chord([noop.si() for _ in range(sizes.fan_width)], stamp.si())
        ).apply_async()
        walls.append((result.get(timeout=TIMEOUT) - started) * 1000)
    return {"wall time": statistics.median(walls[1:])}


SCENARIOS = {DRAIN: drain, LATENCY: latency, CHAIN: chains, FAN_OUT: fan_outs}


def main(args: argparse.Namespace) -> list[Measurement]:
    system = f"Celery {celery.__version__}"
    try:
        flush()
    except redis.RedisError as error:
        return failed(system, "Redis", args.only, f"Redis not reachable at {SERVER}: {error}")
    command = [sys.executable, "-m", "celery", "-A", "benchmarks.peers.celery_app", "worker"]
    command += [*WORKER, "-Q", QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat"]
    worker = spawn(command, args.logs / "celery-worker.log")
    try:
        wait_until(lambda: bool(app.control.ping(timeout=0.5)), 60, "celery worker start")
        samples = {name: partial(sample, args.sizes) for name, sample in SCENARIOS.items()}
        return measure(system, "Redis", samples, args.repeat, args.only)
    finally:
        stop(worker)
        flush()


if __name__ == "__main__":
    peer_main(main)

"""The worker process of the RSS scenario: only the handler ``nap``, which sleeps.

    python -m benchmarks.sleep_worker DATABASE_URL CONCURRENCY

Runs until SIGTERM, then stops at once (the sleeping steps are given back to the queue).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import StepContext
from overture.runtime.worker import Worker
from overture.store import create_store

registry = HandlerRegistry()


@registry.handler()
async def nap(ctx: StepContext, *, seconds: float) -> None:
    await asyncio.sleep(seconds)


async def main(url: str, concurrency: int) -> None:
    store = create_store(url)
    await store.open()
    worker = Worker(store, registry, concurrency=concurrency, poll=0.05)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: worker.stop(grace=0))
    try:
        await worker.run()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

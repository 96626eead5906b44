"""``overture worker``: claim and run steps until told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

import click

from overture.cli.common import reports_errors, setting_option
from overture.handlers.loading import ProcessHandlers, process_handlers
from overture.runtime.scheduler import Scheduler
from overture.runtime.secrets import secrets_from_env
from overture.runtime.worker import Worker, new_worker_id
from overture.settings import Settings, load_settings, tenant_limits
from overture.store import create_store, redact_url
from overture.telemetry.metrics import serve_metrics
from overture.telemetry.setup import configure_process, instruments

logger = logging.getLogger("overture.worker")


@click.command()
@setting_option("database_url", metavar="URL")
@setting_option("app", metavar="MODULE:ATTR")
@setting_option("concurrency", "-c", metavar="N")
@setting_option("lease", metavar="SECONDS")
@setting_option("grace", metavar="SECONDS")
@setting_option("log_level", metavar="LEVEL")
@setting_option("log_format", metavar="FORMAT")
@setting_option("http_base_url", metavar="URL")
@setting_option("http_allowed_networks", metavar="NETWORKS")
@setting_option("http_max_response_bytes", metavar="BYTES")
@setting_option("tenant_rate_limit", metavar="RATE")
@setting_option("tenant_max_in_flight", metavar="N")
@setting_option("enable_shell")
@setting_option("shell_tenants", metavar="TENANTS")
@setting_option("scheduler")
@setting_option("metrics_port", metavar="PORT", type=click.IntRange(0, 65535))
@setting_option("metrics_host", metavar="ADDRESS")
@click.option(
    "--poll",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between polls when no wake-up arrives.",
)
@click.option("--worker-id", help="Defaults to host-pid-random.")
@click.option("--config", type=click.Path(dir_okay=False), help="Settings file (overture.toml).")
@reports_errors
def worker(poll: float, worker_id: str | None, config: str | None, **flags: Any) -> None:
    """Run steps from the database until SIGTERM or SIGINT.

    The first signal stops claiming and lets running steps finish within --grace seconds (the
    rest go back to the queue); a second signal gives them back at once. Exits 0 after a clean
    shutdown. Secrets come from OVERTURE_SECRET_<NAME> environment variables. Unless
    --no-scheduler, the process also fires cron schedules (each tick fires once, however many
    processes do).
    """
    settings = load_settings(flags, config=config)
    configure_process(settings)
    handlers = process_handlers(settings)
    asyncio.run(_serve(settings, handlers, poll, worker_id))


async def _serve(
    settings: Settings, handlers: ProcessHandlers, poll: float, worker_id: str | None
) -> None:
    worker_id = worker_id or new_worker_id()
    observed = instruments(worker_id)
    store = create_store(settings.database_url)
    observed.observe(store)
    await store.open()
    stop_metrics: Callable[[], None] | None = None
    try:
        if settings.metrics_port:
            host, port = settings.metrics_host, settings.metrics_port
            stop_metrics = serve_metrics(observed.metrics, host=host, port=port)
            logger.info("metrics on http://%s:%d/metrics", host, port)
        runner = Worker(
            store,
            handlers.registry,
            concurrency=settings.concurrency,
            lease=settings.lease,
            grace=settings.grace,
            poll=poll,
            worker_id=worker_id,
            secrets=secrets_from_env(os.environ),
            limits=tenant_limits(settings),
            metrics=observed.metrics,
            tracing=observed.tracing,
        )
        loop = asyncio.get_running_loop()

        scheduler = Scheduler(store) if settings.scheduler else None

        def on_signal(signum: int) -> None:
            if scheduler is not None:
                scheduler.stop()  # no tick fires while the worker drains
            if runner.stopping:
                logger.warning(
                    "second %s: giving running steps back now", signal.Signals(signum).name
                )
                runner.stop(grace=0)
            else:
                logger.info(
                    "%s: finishing running steps, then stopping", signal.Signals(signum).name
                )
                runner.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        logger.info("worker %s on %s", runner.id, redact_url(settings.database_url))
        scheduling = asyncio.create_task(scheduler.run()) if scheduler else None
        try:
            await runner.run()
        finally:
            if scheduler is not None and scheduling is not None:
                scheduler.stop()
                await scheduling
    finally:
        try:
            if stop_metrics is not None:
                await asyncio.to_thread(stop_metrics)  # waits for a scrape in flight
            await handlers.aclose()
            await store.close()
        finally:
            observed.close()

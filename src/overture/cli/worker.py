"""``overture worker``: claim and run steps until told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import click

from overture.cli.common import database_url_option, reports_errors
from overture.cli.secrets import secrets_from_env
from overture.handlers.basic import basic_registry
from overture.handlers.registry import HandlerRegistry, load_registry
from overture.runtime.worker import Worker
from overture.store import DEFAULT_LEASE, create_store, redact_url

logger = logging.getLogger("overture.worker")


@click.command()
@database_url_option
@click.option(
    "--app",
    metavar="MODULE:ATTR",
    envvar="OVERTURE_APP",
    show_envvar=True,
    help="Your HandlerRegistry; noop, echo and fail are always there.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    envvar="OVERTURE_WORKER_CONCURRENCY",
    show_envvar=True,
    help="Steps run at once.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_LEASE,
    show_default=True,
    envvar="OVERTURE_LEASE_SECONDS",
    show_envvar=True,
    help="Seconds a claim lasts without a heartbeat; a crashed worker's steps rerun after it.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    envvar="OVERTURE_SHUTDOWN_GRACE",
    show_envvar=True,
    help="On SIGTERM/SIGINT, seconds running steps get to finish before being given back.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between polls when no wake-up arrives.",
)
@click.option("--worker-id", help="Defaults to host-pid-random.")
@reports_errors
def worker(
    database_url: str,
    app: str | None,
    concurrency: int,
    lease: float,
    grace: float,
    poll: float,
    worker_id: str | None,
) -> None:
    """Run steps from the database until SIGTERM or SIGINT.

    The first signal stops claiming and lets running steps finish within --grace seconds (the
    rest go back to the queue); a second signal gives them back at once. Exits 0 after a clean
    shutdown. Secrets come from OVERTURE_SECRET_<NAME> environment variables.
    """
    logging.basicConfig(
        level=os.environ.get("OVERTURE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    registry = _registry(app)
    asyncio.run(_serve(database_url, registry, concurrency, lease, grace, poll, worker_id))


def _registry(app: str | None) -> HandlerRegistry:
    if app is None:
        return basic_registry()
    try:
        return load_registry(app).include(basic_registry())
    except (ImportError, ValueError) as error:
        raise click.BadParameter(str(error), param_hint="--app") from None


async def _serve(
    url: str,
    registry: HandlerRegistry,
    concurrency: int,
    lease: float,
    grace: float,
    poll: float,
    worker_id: str | None,
) -> None:
    store = create_store(url)
    await store.open()
    try:
        runner = Worker(
            store,
            registry,
            concurrency=concurrency,
            lease=lease,
            grace=grace,
            poll=poll,
            worker_id=worker_id,
            secrets=secrets_from_env(os.environ),
        )
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
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
        logger.info("worker %s on %s", runner.id, redact_url(url))
        await runner.run()
    finally:
        await store.close()

"""``overture serve``: the API, workers and workflows in one process."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import click

from overture.api.server import Server
from overture.cli.common import reports_errors, setting_option
from overture.handlers.loading import process_handlers
from overture.settings import load_settings
from overture.telemetry.setup import configure_process

try:
    import uvloop
except ImportError:  # e.g. on Windows: the standard loop serves, more slowly
    uvloop = None  # type: ignore[assignment]


@click.command()
@setting_option("host")
@setting_option("port")
@setting_option("database_url", metavar="URL")
@setting_option("workflows", metavar="DIR")
@setting_option("workers", metavar="N")
@setting_option("app", metavar="MODULE:ATTR")
@setting_option("lease", metavar="SECONDS")
@setting_option("grace", metavar="SECONDS")
@setting_option("max_body_bytes", metavar="BYTES")
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
@setting_option("operator_tenant", metavar="TENANT")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="Settings file [env: OVERTURE_CONFIG; default: ./overture.toml if it exists]",
)
@reports_errors
def serve(config: str | None, **flags: Any) -> None:
    """Serve the HTTP API, run steps and register workflows, in one process.

    On the embedded default (SQLite in ./overture.db) this is all Overture needs. With
    PostgreSQL, run any number of `overture serve --workers 0` and `overture worker` processes
    against the same database. Every workflow file under --workflows is validated and
    registered at start; an invalid one stops the server with every problem listed.

    Without any API key in the database the server runs in development mode (every request
    acts as tenant 'default') and listens only on a loopback address.
    """
    settings = load_settings(flags, config=config)
    configure_process(settings)
    handlers = process_handlers(settings)

    async def main() -> None:
        try:
            await Server(settings, handlers.registry).run()
        finally:
            await handlers.aclose()

    quieter_garbage_collection()
    with asyncio.Runner(loop_factory=fast_event_loop()) as runner:
        runner.run(main())


GC_THRESHOLDS = (50_000, 20, 100)
"""Python's defaults (2,000 / 10 / 10) run a full collection every few seconds under load, and
one pass over a server's heap of cached run states stalled every request for ~100 ms (measured
by benchmarks/bench_api.py's p99); collecting young objects less often keeps the pauses rare."""


def quieter_garbage_collection() -> None:
    gc.freeze()  # what start-up imported and built lives as long as the process: never scan it
    gc.set_threshold(*GC_THRESHOLDS)


def fast_event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (it comes with uvicorn[standard])."""
    return None if uvloop is None else uvloop.new_event_loop

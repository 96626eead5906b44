"""``overture demo-agent``: serve the demo agent the examples call."""

from __future__ import annotations

import signal
from types import FrameType

import click
import uvicorn

from overture.demo.agent import create_app

DEFAULT_PORT = 8765


@click.command("demo-agent")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def demo_agent(host: str, port: int, log_level: str) -> None:
    """Serve the demo agent that examples/ calls, until SIGTERM or SIGINT.

    Point the http handler at it with OVERTURE_HTTP_BASE_URL=http://HOST:PORT (for `call:`
    steps) and OVERTURE_HTTP_ALLOWED_NETWORKS=HOST (for steps with a full `url` on a private
    address).
    GET /calls lists the calls it received, with their idempotency keys.
    """
    netloc = f"[{host}]" if ":" in host else host
    click.echo(f"demo agent on http://{netloc}:{port} (calls received: GET /calls)", err=True)
    click.echo(f"  export OVERTURE_HTTP_BASE_URL=http://{netloc}:{port}", err=True)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler
    # that was there before it: make that one a clean exit (status 0), as `overture worker` does.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _exit_cleanly)
    uvicorn.run(create_app(), host=host, port=port, log_level=log_level, lifespan="off")


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)

"""The ``overture`` command."""

from __future__ import annotations

import click

from overture import __version__
from overture.cli.circuits import circuits
from overture.cli.db import db
from overture.cli.demo import demo_agent
from overture.cli.keys import keys
from overture.cli.run import run
from overture.cli.runs import dlq, runs, workers
from overture.cli.serve import serve
from overture.cli.status import status
from overture.cli.triggers import events, schedules
from overture.cli.webhooks import webhooks
from overture.cli.worker import worker
from overture.cli.workflows import workflows


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="overture")
def main() -> None:
    """Overture: a durable orchestrator for AI-agent workflows."""


for command in (
    serve,
    workflows,
    run,
    worker,
    runs,
    dlq,
    workers,
    status,
    events,
    schedules,
    webhooks,
    circuits,
    db,
    keys,
    demo_agent,
):
    main.add_command(command)

"""The ``overture`` command."""

from __future__ import annotations

import click

from overture import __version__
from overture.cli.run import run
from overture.cli.workflows import workflows


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="overture")
def main() -> None:
    """Overture: a durable orchestrator for AI-agent workflows."""


main.add_command(workflows)
main.add_command(run)

"""A demo agent to run the examples against: ``overture demo-agent`` or ``create_app()``."""

from overture.demo.agent import create_app

__all__ = ["create_app"]

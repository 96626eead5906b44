"""Overture: a durable orchestrator for AI-agent workflows."""

__version__ = "0.1.0"

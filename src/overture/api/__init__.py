"""The HTTP API (FastAPI): ``create_app`` builds it, ``overture serve`` runs it."""

from overture.api.app import create_app
from overture.api.services import Services

__all__ = ["Services", "create_app"]

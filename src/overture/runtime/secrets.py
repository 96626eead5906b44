"""Secrets for steps this process runs: ``OVERTURE_SECRET_<NAME>`` environment variables."""

from __future__ import annotations

from collections.abc import Mapping

SECRET_PREFIX = "OVERTURE_SECRET_"


def secrets_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``OVERTURE_SECRET_API_KEY=x`` becomes the secret ``API_KEY``."""
    return {
        k.removeprefix(SECRET_PREFIX): v for k, v in environ.items() if k.startswith(SECRET_PREFIX)
    }

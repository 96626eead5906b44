"""Error reports to Sentry: on when ``SENTRY_DSN`` is set and the ``sentry`` extra is installed
(``pip install 'overture[sentry]'``).

Every line logged at ``ERROR`` or above (``logger.exception`` in the worker and the API among
them) becomes an event; lower lines ride along as breadcrumbs. Before an event leaves the
process it is masked as log lines are (``runtime.redaction``: every ``OVERTURE_SECRET_*`` value,
API keys, ``Authorization`` tokens) wherever it says it, and ``Authorization`` headers are
dropped: an exception message quoting a failed request must not carry the key to a third party.
Request bodies and frame locals are never sent: they hold users' data, which no mask recognises.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from overture import __version__
from overture.runtime.redaction import Masker, masker
from overture.runtime.secrets import secrets_from_env

logger = logging.getLogger("overture.sentry")

EXTRA_HINT = "pip install 'overture[sentry]'"
DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization"})

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint


def configure_sentry(environ: Mapping[str, str]) -> bool:
    """Start reporting errors to ``SENTRY_DSN`` (``SENTRY_ENVIRONMENT`` names the environment);
    whether it did. Call it once, at process start, after logging is configured."""
    dsn = environ.get("SENTRY_DSN", "").strip()
    if not dsn:
        return False
    try:
        import sentry_sdk  # noqa: PLC0415 - an optional extra
        from sentry_sdk.integrations.logging import LoggingIntegration  # noqa: PLC0415
    except ImportError:
        logger.warning("SENTRY_DSN is set, but sentry-sdk is not installed: %s", EXTRA_HINT)
        return False
    secrets = secrets_from_env(environ)

    def before_send(event: Event, hint: Hint) -> Event:
        return cast("Event", scrub(cast(dict[str, Any], event), secrets))

    sentry_sdk.init(
        dsn=dsn,
        environment=environ.get("SENTRY_ENVIRONMENT") or None,
        release=f"overture@{__version__}",
        send_default_pii=False,
        # Frame locals hold steps' inputs and outputs, request bodies runs' inputs (the
        # Starlette and FastAPI integrations attach them whatever send_default_pii says): user
        # data that masking cannot recognise.
        include_local_variables=False,
        max_request_body_size="never",
        # No sentry-trace or baggage header on the handlers' and RemoteClient's requests: they
        # would tell third parties about this process's Sentry, and carry its trace instead of
        # the run's (OpenTelemetry's traceparent, when tracing is on, is the one to follow).
        trace_propagation_targets=[],
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        before_send=before_send,
    )
    return True


def scrub(event: dict[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """``event`` with ``secrets``, API keys and ``Authorization`` tokens masked in every string,
    and ``Authorization`` headers and the command line gone."""
    request = event.get("request")
    if isinstance(request, dict):
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if not _dropped(k)}
        elif isinstance(headers, list):  # Sentry also takes [[name, value], ...]
            request["headers"] = [h for h in headers if not (h and _dropped(h[0]))]
    extra = event.get("extra")
    if isinstance(extra, dict):
        # The command line (Sentry's argv integration) may hold a database URL's password.
        extra.pop("sys.argv", None)
    masked: dict[str, Any] = _masked(event, masker(secrets, credentials=True))
    return masked


def _dropped(header: object) -> bool:
    return str(header).lower() in DROPPED_HEADERS


def _masked(value: Any, mask: Masker) -> Any:
    # Not ``Masker.json``: it turns what JSON cannot hold (the event's datetimes) into text,
    # which Sentry's serializer would then send in the wrong format.
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {_masked(k, mask): _masked(v, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(item, mask) for item in value]
    if isinstance(value, tuple):
        return tuple(_masked(item, mask) for item in value)
    return value

"""Webhook sources: how they are checked, read from the config file, and what a verified
delivery becomes.

Pure: ``config_sources`` reads the ``[webhooks.<name>]`` tables (and the environment, for
``env:VAR`` secrets); ``delivery_event`` turns a delivery that ``signatures.verify`` accepted
into the event the store records, with an id that makes a redelivery a replay.

A source's options are its scheme's (``signatures.check_options``) plus ``event_prefix``, the
first part of the event types its deliveries become.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from overture import serde
from overture.serde import JSON
from overture.settings import SettingsInvalid
from overture.store.records import DEFAULT_TENANT, NewEvent, WebhookSecret, WebhookSource
from overture.triggers.signatures import SCHEMES, Delivery, OptionsInvalid, check_options, sign

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A source's name is the last segment of its URL, ``/v1/webhooks/<name>``."""
EVENT_PREFIX = "event_prefix"
NAMED_BY_SCHEME = frozenset({"github", "stripe", "clickup", "make"})
"""Schemes whose event types start with the scheme's name (``github.pull_request``); the
others' start with the source's name, since what they carry depends on who sends them."""
CONFIG_KEYS = ("scheme", "secrets", "options", "tenant")
ENV = "env:"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_SECRET = 1000
"""Characters a secret may have: real ones have fewer than 100."""


def check_name(name: object) -> str:
    """``name`` if it can be a source's name (``OptionsInvalid`` if not)."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise OptionsInvalid(
            f"a webhook source's name is 1 to 64 letters, digits, '_', '.' or '-', starting "
            f"with a letter or digit (it is the URL /v1/webhooks/<name>), not {name!r}"
        )
    return name


def source_options(scheme: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A source's options checked for ``scheme``, with its defaults filled in."""
    given = dict(options or {})
    # check_options knows only the scheme's own options: the prefix is ours.
    prefix = given.pop(EVENT_PREFIX, None)
    checked = check_options(scheme, given)
    if prefix is not None:
        if not isinstance(prefix, str) or not re.fullmatch(NAME_PATTERN, prefix):
            raise OptionsInvalid(
                f"option {EVENT_PREFIX!r} must be 1 to 64 letters, digits, '_', '.' or '-', "
                f"not {prefix!r}"
            )
        checked[EVENT_PREFIX] = prefix
    return checked


def scheme_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A source's options as ``signatures.verify`` and ``sign`` take them."""
    return {k: v for k, v in options.items() if k != EVENT_PREFIX}


def check_secrets(scheme: str, options: Mapping[str, Any], secrets: Sequence[object]) -> None:
    """``OptionsInvalid`` unless every secret can sign with ``scheme`` (never quoting one)."""
    if not secrets:
        raise OptionsInvalid("a webhook source needs at least one secret")
    for number, secret in enumerate(secrets, 1):
        if not isinstance(secret, str) or not 1 <= len(secret) <= MAX_SECRET:
            raise OptionsInvalid(f"secret #{number} must be 1 to {MAX_SECRET} characters")
        try:
            sign(scheme, body=b"", secret=secret, options=scheme_options(options), now=0)
        except ValueError:
            hint = " (Standard Webhooks secrets are whsec_<base64>)" if scheme == "standard" else ""
            raise OptionsInvalid(
                f"secret #{number} cannot sign {scheme} deliveries{hint}"
            ) from None


def config_sources(
    tables: Mapping[str, Any], environ: Mapping[str, str], *, now: datetime | None = None
) -> dict[str, WebhookSource]:
    """The sources the config file's ``[webhooks.<name>]`` tables declare, by name.

    ``SettingsInvalid`` names the table and what is wrong with it: an unknown key, a bad scheme,
    options or secret, or an ``env:VAR`` secret whose variable is not set.
    """
    loaded_at = now or datetime.now(UTC)
    found = {}
    for name, table in tables.items():
        try:
            found[name] = _config_source(name, table, environ, loaded_at)
        except OptionsInvalid as error:
            raise SettingsInvalid(f"webhooks.{name}: {error}") from None
    return found


def _config_source(
    name: str, table: Any, environ: Mapping[str, str], loaded_at: datetime
) -> WebhookSource:
    check_name(name)
    if not isinstance(table, dict):
        raise OptionsInvalid("must be a table with scheme and secrets")
    if unknown := sorted(set(table) - set(CONFIG_KEYS)):
        raise OptionsInvalid(
            f"unknown key(s) {', '.join(map(repr, unknown))}; expected {', '.join(CONFIG_KEYS)}"
        )
    scheme = table.get("scheme")
    if scheme not in SCHEMES:
        raise OptionsInvalid(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    raw_options = table.get("options", {})
    if not isinstance(raw_options, dict):
        raise OptionsInvalid("options must be a table")
    options = source_options(scheme, raw_options)
    raw_secrets = table.get("secrets")
    if not isinstance(raw_secrets, list) or not raw_secrets:
        raise OptionsInvalid('secrets must be a list of one or more strings, e.g. ["env:VAR"]')
    secrets = [_secret(entry, number, environ) for number, entry in enumerate(raw_secrets, 1)]
    check_secrets(scheme, options, secrets)
    tenant = table.get("tenant", DEFAULT_TENANT)
    if not isinstance(tenant, str) or not tenant:
        raise OptionsInvalid(f"tenant must be a tenant's name, not {tenant!r}")
    return WebhookSource(
        name=name,
        scheme=scheme,
        secrets=tuple(WebhookSecret(value=s, added_at=loaded_at) for s in secrets),
        options=options,
        tenant=tenant,
        origin="config",
    )


def _secret(entry: object, number: int, environ: Mapping[str, str]) -> str:
    """A secret as written, or the variable an ``env:VAR`` entry names."""
    if not isinstance(entry, str):
        raise OptionsInvalid(f"secret #{number} must be a string, not a {type(entry).__name__}")
    if not entry.startswith(ENV):
        return entry
    variable = entry.removeprefix(ENV)
    value = environ.get(variable)
    if not value:
        raise OptionsInvalid(f"secret #{number} is read from ${variable}, which is not set")
    return value


def event_prefix(source: WebhookSource) -> str:
    """The first part of the event types the source's deliveries become."""
    prefix = source.options.get(EVENT_PREFIX)
    if isinstance(prefix, str):
        return prefix
    return source.scheme if source.scheme in NAMED_BY_SCHEME else source.name


def delivery_event(source: WebhookSource, delivery: Delivery, body: bytes) -> NewEvent:
    """The event a verified delivery becomes: one per (source, delivery id), so a delivery
    sent again is recognised and starts nothing."""
    delivery_id = storable(delivery.delivery_id)
    return NewEvent(
        type=f"{event_prefix(source)}.{storable(delivery.event_type or 'delivery')}",
        payload=payload(body),
        id=f"{source.name}:{delivery_id}",
        tenant=source.tenant,
        source=f"webhook:{source.name}",
        meta={"webhook": {"source": source.name, "delivery_id": delivery_id}},
    )


def storable(text: str) -> str:
    """``text`` with what the stores cannot keep in a text column replaced: NUL (PostgreSQL)
    and half surrogate pairs (not UTF-8), which a sender's JSON may hold as escapes."""
    return _UNSTORABLE.sub("\ufffd", text)


def payload(body: bytes) -> JSON:
    """The body as JSON, or ``{"raw": text}`` when it is not JSON."""
    try:
        data: JSON = serde.loads(body)
    except ValueError:  # not JSON, not UTF-8, nested too deeply, or an integer orjson refuses
        return {"raw": body.decode("utf-8", "replace")}
    return data

"""Webhook sources: how they are checked, read from the config file, and what a verified
delivery becomes.

Pure: ``config_sources`` reads the ``[webhooks.<name>]`` tables (and the environment, for
``env:VAR`` secrets); ``delivery_event`` turns a delivery that ``signatures.verify`` accepted
into the event the store records, with an id that makes a redelivery a replay. One check
reads the store: ``check_shadowing``, when the server starts.

A source's options are its scheme's (``signatures.check_options``) plus ``event_prefix``, the
first part of the event types its deliveries become.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from overture import serde
from overture.errors import NotFound
from overture.serde import JSON, UNSTORABLE_TEXT
from overture.settings import SettingsInvalid
from overture.store.records import DEFAULT_TENANT, NewEvent, WebhookSecret, WebhookSource
from overture.triggers.events import WEBHOOK_SOURCE
from overture.triggers.signatures import SCHEMES, Delivery, OptionsInvalid, check_options, sign

if TYPE_CHECKING:
    from overture.store import Store

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A source's name is the last segment of its URL, ``/v1/webhooks/<name>``."""
EVENT_PREFIX = "event_prefix"
NAMED_BY_SCHEME = frozenset({"github", "stripe", "clickup", "make"})
"""Schemes whose event types start with the scheme's name (``github.pull_request``); the
others' start with the source's name, since what they carry depends on who sends them."""
UNSIGNED_ID = frozenset({"github", "hmac"})
"""Schemes whose delivery id comes from a header the signature does not cover
(``X-GitHub-Delivery``, ``hmac``'s ``id_header``): their deliveries are recognised by their body
too, so that a captured delivery sent again under a new id starts nothing."""
CONFIG_KEYS = ("scheme", "secrets", "options", "tenant")
ENV = "env:"
HEADER_TEXT = re.compile("[\x21-\x7e]+")
"""What a value sent as a header may hold: visible ASCII (no space, no line break)."""
_PLAIN_ID = re.compile("[A-Za-z0-9._:~+=-]+")
"""Delivery ids kept as they are (GitHub's GUIDs, Stripe's evt_..., Standard Webhooks' msg_...);
any other is replaced by its hash, so that ``GET /v1/events/{id}`` can always name it."""
MOST_META = 1000
"""Characters of a sender's delivery id kept in the event's ``meta``."""
LONGEST_PART = 150
"""Characters of a delivery's id or type kept as they are: a longer id is replaced by its hash
and a longer type cut, so that both fit the events table's keys."""
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
        if problem := secret_problem(scheme, options, secret):
            raise OptionsInvalid(f"secret #{number} {problem}")


def secret_problem(scheme: str, options: Mapping[str, Any], secret: object) -> str | None:
    """Why ``secret`` cannot sign with ``scheme``, never quoting it ("must be..."); None if it
    can. ``OptionsInvalid`` if the options are what cannot."""
    if not isinstance(secret, str) or not 1 <= len(secret) <= MAX_SECRET:
        return f"must be 1 to {MAX_SECRET} characters"
    if scheme == "make" and not HEADER_TEXT.fullmatch(secret):
        return "must be visible ASCII: Make sends it as a header value"
    try:
        sign(scheme, body=b"", secret=secret, options=scheme_options(options), now=0)
    except OptionsInvalid:
        raise
    except ValueError:
        hint = " (Standard Webhooks secrets are whsec_<base64>)" if scheme == "standard" else ""
        return f"cannot sign {scheme} deliveries{hint}"
    return None


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
    sent again is recognised and starts nothing. Its id starts with ``webhook:``, which events
    sent through the API cannot use: nobody can take a delivery's place before it arrives.

    Where the id is not signed (``UNSIGNED_ID``), one per (source, body) as well: the store
    answers a second event with the same idempotency key as a repeat of the first."""
    sent_id = storable(delivery.delivery_id)
    delivery_id = sent_id
    if len(delivery_id) > LONGEST_PART or not _PLAIN_ID.fullmatch(delivery_id):
        delivery_id = "sha256:" + hashlib.sha256(delivery_id.encode()).hexdigest()
    kind = re.sub(r"\s+", "_", storable(delivery.event_type or "delivery"))[:LONGEST_PART]
    body_key = f"{WEBHOOK_SOURCE}{source.name}:sha256:{hashlib.sha256(body).hexdigest()}"
    return NewEvent(
        type=f"{event_prefix(source)}.{kind}",
        payload=payload(body),
        id=f"{WEBHOOK_SOURCE}{source.name}:{delivery_id}",
        tenant=source.tenant,
        idempotency_key=body_key if source.scheme in UNSIGNED_ID else None,
        source=f"{WEBHOOK_SOURCE}{source.name}",
        # The id as the sender wrote it (the event's id may hold its hash instead).
        meta={"webhook": {"source": source.name, "delivery_id": sent_id[:MOST_META]}},
    )


async def check_shadowing(store: Store, sources: Mapping[str, WebhookSource]) -> None:
    """``SettingsInvalid`` when a ``[webhooks.<name>]`` table names a source made through the
    API, by any tenant: the table would silently take that source's deliveries."""
    made = []
    for name in sources:
        try:
            made.append(await store.webhook_source(name))
        except NotFound:
            continue
    if made:
        raise SettingsInvalid(
            "; ".join(
                f"webhooks.{m.name}: a webhook source named {m.name!r} was made through the API "
                f"(tenant {m.tenant!r}), and the table would take its deliveries: rename the "
                f"table, or delete that source first (overture webhooks rm {m.name}, with an "
                f"admin key of tenant {m.tenant!r}, while the table is out of the config file)"
                for m in made
            )
        )


def storable(text: str) -> str:
    """``text`` with what the stores cannot keep in a text column replaced: NUL (PostgreSQL)
    and half surrogate pairs (not UTF-8), which a sender's JSON may hold as escapes."""
    return UNSTORABLE_TEXT.sub("\ufffd", text)


def payload(body: bytes) -> JSON:
    """The body as JSON, or ``{"raw": text}`` when it is not JSON."""
    try:
        data: JSON = serde.loads(body)
    except ValueError:  # not JSON, not UTF-8, nested too deeply, or an integer orjson refuses
        return {"raw": body.decode("utf-8", "replace")}
    return data

"""Secret values out of text and data before they leave the process's memory.

    mask = masker(secrets)              # built once per set of values, then cached
    mask("sent abcdef")                 # 'sent ***'
    masker(secrets, credentials=True)   # also API keys and Authorization tokens (logs, Sentry)

Every place that masks (stored log lines, step errors, spans, the process log, Sentry) uses this
one mask, so a value is hidden the same way everywhere.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from overture.serde import JSON

REDACTED = "***"

SHORT_SECRET = 4
"""A secret value shorter than this masks those few characters wherever they appear (ids,
timestamps...): ``logs.configure_logging`` warns about it."""

# Overture API keys (``ovt_<id>_<secret>``, see ``overture.apikeys``), anywhere (``key=ovt_...``,
# ``Xovt_...``); the token after ``Bearer``; the value of an ``Authorization`` header, in a
# header line, a dict's repr or a query string, past its scheme (``Basic``...). Group 1, 2 or 3
# is what stays: the key's id says which key it was.
_AUTH_SCHEMES = r"(?:basic|bearer|digest|negotiate|token|apikey)\s+"
_TOKEN = r"[\w\-.~+/:=]+"  # RFC 6750's token characters, and ':' (user:password)
_CREDENTIALS = re.compile(
    r"(ovt_[A-Za-z0-9]{8}_)[A-Za-z0-9_-]+"
    rf"|(?i:(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:{_AUTH_SCHEMES})?)){_TOKEN}"
    rf"|(?i:(\bbearer\s+)){_TOKEN}"
)


class Masker:
    """Replaces secret values in text with ``***`` (and, with ``credentials``, API keys and
    ``Authorization`` tokens). Every occurrence of every value is hidden, nested or overlapping
    ones as one ``***``: no part of a longer secret is left beside a shorter one, whatever the
    order the secrets came in."""

    __slots__ = ("_credentials", "_secrets")

    def __init__(self, values: frozenset[str], *, credentials: bool = False) -> None:
        longest_first = sorted((v for v in values if v), key=len, reverse=True)
        # A lookahead matches at every position a secret starts, the longest there first, so
        # overlapping occurrences are all found in one pass.
        alternatives = "|".join(re.escape(v) for v in longest_first)
        self._secrets = re.compile(f"(?=({alternatives}))") if longest_first else None
        self._credentials = credentials

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._masked_secrets(text)
        if self._credentials:
            text = _CREDENTIALS.sub(_kept_prefix, text)
        return text

    def json(self, value: object) -> JSON:
        """``value`` as JSON with every string in it masked, at any depth; what JSON cannot
        hold becomes its text (so a stray ``datetime`` cannot fail a write)."""
        if isinstance(value, str):
            return self(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {self(str(k)): self.json(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.json(item) for item in value]
        return self(str(value))

    def _masked_secrets(self, text: str) -> str:
        assert self._secrets is not None
        spans: list[tuple[int, int]] = []
        for found in self._secrets.finditer(text):
            start, end = found.start(), found.end(1)
            if spans and start < spans[-1][1]:  # inside or across the previous one: join them
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
        if not spans:
            return text
        parts, at = [], 0
        for start, end in spans:
            parts += [text[at:start], REDACTED]
            at = end
        parts.append(text[at:])
        return "".join(parts)


def _kept_prefix(found: re.Match[str]) -> str:
    return (found.group(1) or found.group(2) or found.group(3)) + REDACTED


def masker(secrets: Mapping[str, str], *, credentials: bool = False) -> Masker:
    """The mask for ``secrets``' values: built once per set of values (callers ask per line)."""
    return _masker(frozenset(secrets.values()), credentials)


@functools.lru_cache(maxsize=64)
def _masker(values: frozenset[str], credentials: bool) -> Masker:
    return Masker(values, credentials=credentials)


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """Remove secret values from text headed for events and logs."""
    return masker(secrets)(text)


def redact_json(value: object, secrets: Mapping[str, str]) -> JSON:
    """``value`` as JSON with secret values removed from every string in it, at any depth;
    what JSON cannot hold becomes its text (so a stray ``datetime`` cannot fail a write)."""
    return masker(secrets).json(value)


def short_secrets(secrets: Mapping[str, str]) -> list[str]:
    """The names of the secrets whose (non-empty) value is shorter than ``SHORT_SECRET``."""
    return sorted(name for name, value in secrets.items() if 0 < len(value) < SHORT_SECRET)

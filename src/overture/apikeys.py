"""API keys: how they look, how they are stored, what their scopes allow. Pure: no I/O.

A key is ``ovt_<id>_<secret>``: ``id`` is 8 letters and digits, public (listings show it and
``overture keys revoke ID`` takes it); ``secret`` is 32 random bytes, url-safe base64. Only
``hash_key(plaintext)`` is stored, so the plaintext exists only where its creator put it.

Scopes form a ladder: ``admin`` includes ``write``, which includes ``read``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Iterable

PREFIX = "ovt"
SCOPES = ("read", "write", "admin")
"""Every scope, weakest first: each includes those before it."""

_ID_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 8
_SECRET_BYTES = 32
_SEPARATORS = re.compile(r"[\s,]+")


def new_key() -> tuple[str, str, str]:
    """A fresh key: ``(plaintext, key_id, secret_hash)``. Show the plaintext once; store the rest.

    The id has no ``_`` (the secret may), so ``plaintext.split("_", 2)`` always finds it.
    """
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
    plaintext = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return plaintext, key_id, hash_key(plaintext)


def hash_key(plaintext: str) -> str:
    """What the store keeps of a key, and looks it up by: the SHA-256 of all of it, in hex.

    A comparison in constant time is not needed: no secret is ever compared. The store finds a
    key by this hash in an index, so what a caller could learn from timing is how a hash of its
    own guess sorts, which says nothing about any stored key (SHA-256 has no usable preimages).
    A fast hash is enough because the secret is 256 random bits, not a password to brute-force.
    """
    return hashlib.sha256(plaintext.encode()).hexdigest()


def parse_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """Scopes from ``"read,write"`` (commas or spaces) or a list: known, deduplicated, weakest
    first. ``ValueError`` names an unknown scope, and says so when none is given."""
    names = _SEPARATORS.split(scopes) if isinstance(scopes, str) else list(scopes)
    given = {name.strip() for name in names} - {""}
    unknown = sorted(given - set(SCOPES))
    if unknown:
        raise ValueError(
            f"unknown scope{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"choose from {', '.join(SCOPES)}"
        )
    if not given:
        raise ValueError(f"no scope given: choose from {', '.join(SCOPES)}")
    return tuple(scope for scope in SCOPES if scope in given)


def granted(scopes: Iterable[str], needed: str) -> bool:
    """Whether a key holding ``scopes`` may do what needs ``needed`` (admin > write > read).

    Held names that are not scopes grant nothing; an unknown ``needed`` is a ``ValueError``
    (a bug in the caller, not a reason to refuse or allow a request quietly).
    """
    if needed not in SCOPES:
        raise ValueError(f"unknown scope {needed!r}: choose from {', '.join(SCOPES)}")
    rank = SCOPES.index(needed)
    return any(scope in SCOPES and SCOPES.index(scope) >= rank for scope in scopes)

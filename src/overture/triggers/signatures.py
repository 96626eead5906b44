"""Verify and produce webhook signatures, one small function per sender's scheme.

Pure: the caller passes the raw body, the headers, the source's active secrets and the clock.
``verify`` returns what a genuine delivery says about itself (``Delivery``) or raises
``SignatureInvalid``; ``sign`` returns the headers a sender would attach, for tests and for
``overture webhooks test``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from overture.core.durations import parse_duration
from overture.errors import OvertureError

SCHEMES: tuple[str, ...] = ("github", "standard", "stripe", "clickup", "hmac", "make")
TOLERANCE = 300
"""Seconds a signed timestamp may be off from our clock, in either direction, by default."""
TYPE_FIELDS: dict[str, str] = {
    "standard": "type",
    "stripe": "type",
    "clickup": "event",
    "hmac": "type",
    "make": "type",
}
"""The body's field that names the event type, by scheme; github sends it in a header, and
``hmac``'s ``event_header`` and ``make``'s ``event_type`` option come first where set."""


class SignatureInvalid(OvertureError):
    """A delivery failed verification; ``reason`` is a stable snake_case code.

    Reasons: ``missing_header``, ``malformed_header``, ``bad_signature``, ``stale_timestamp``,
    ``future_timestamp``, ``no_secret``. The message names the header but never a secret, a
    computed signature or a received header value.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class OptionsInvalid(OvertureError, ValueError):
    """A scheme name or a source's options cannot be used; the message names the option."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivery:
    """What a verified delivery says about itself."""

    delivery_id: str
    """The sender's delivery id, or ``"sha256:"`` + the body's hex SHA-256 when it sends none."""
    event_type: str | None
    """The event type as the sender names it, e.g. ``pull_request``; None when unknown."""


@dataclass(frozen=True, kw_only=True, slots=True)
class _Claim:
    """What a delivery's headers claim, before any secret is tried."""

    header: str
    candidates: tuple[bytes, ...]  # the decoded signatures found in the header
    expected: Callable[[bytes], bytes]  # key -> what a sender holding that key would send
    delivery_id: str
    event_type: str | None
    timestamp: int | None = None
    timestamp_header: str = ""


_Parse = Callable[[dict[str, str], bytes, dict[str, Any]], _Claim]


def _body_id(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _json_field(body: bytes, field: str) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or absurdly nested
        return None
    value = data.get(field) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _mac(algorithm: str, message: bytes) -> Callable[[bytes], bytes]:
    return lambda key: hmac.new(key, message, algorithm).digest()


def _require(headers: dict[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if value is None:
        raise SignatureInvalid("missing_header", f"the {name!r} header is missing")
    return value.strip()


def _malformed(name: str, why: str) -> SignatureInvalid:
    return SignatureInvalid("malformed_header", f"the {name!r} header {why}")


def _decode(value: str, encoding: str) -> bytes | None:
    try:
        raw = (
            binascii.a2b_hex(value) if encoding == "hex" else base64.b64decode(value, validate=True)
        )
    except (ValueError, binascii.Error):
        return None
    return raw or None


def _signatures(name: str, values: Sequence[str], encoding: str) -> tuple[bytes, ...]:
    decoded = tuple(raw for v in values if (raw := _decode(v, encoding)) is not None)
    if not decoded:
        raise _malformed(name, f"holds no {encoding} signature")
    return decoded


def _timestamp(name: str, value: str) -> str:
    # Returned as sent: the sender signed these characters, not our rendering of the number.
    if not re.fullmatch(r"[0-9]{1,12}", value):
        raise _malformed(name, "is not a timestamp in whole unix seconds")
    return value


def _github(headers: dict[str, str], body: bytes, options: dict[str, Any]) -> _Claim:
    # Only the SHA-256 header: the legacy sha1 X-Hub-Signature is too weak to accept alone.
    name = "X-Hub-Signature-256"
    value = _require(headers, name)
    if not value.startswith("sha256="):
        raise _malformed(name, "does not start with 'sha256='")
    return _Claim(
        header=name,
        candidates=_signatures(name, [value.removeprefix("sha256=")], "hex"),
        expected=_mac("sha256", body),
        delivery_id=headers.get("x-github-delivery") or _body_id(body),
        event_type=headers.get("x-github-event") or None,
    )


def _standard(headers: dict[str, str], body: bytes, options: dict[str, Any]) -> _Claim:
    msg_id, name = _require(headers, "webhook-id"), "webhook-signature"
    timestamp = _timestamp("webhook-timestamp", _require(headers, "webhook-timestamp"))
    # Other versions (e.g. v1a, asymmetric) may sit alongside; they are not ours to check.
    entries = [e[3:] for e in _require(headers, name).split() if e.startswith("v1,")]
    return _Claim(
        header=name,
        candidates=_signatures(name, entries, "base64"),
        expected=_mac("sha256", f"{msg_id}.{timestamp}.".encode() + body),
        delivery_id=msg_id,
        event_type=_json_field(body, TYPE_FIELDS["standard"]),
        timestamp=int(timestamp),
        timestamp_header="webhook-timestamp",
    )


def _stripe(headers: dict[str, str], body: bytes, options: dict[str, Any]) -> _Claim:
    name = options["header"]
    pairs = [item.strip().partition("=") for item in _require(headers, name).split(",")]
    stamps = [v for k, _, v in pairs if k == "t"]
    if not stamps:
        raise _malformed(name, "has no t=<unix seconds> element")
    timestamp = _timestamp(name, stamps[0])
    return _Claim(
        header=name,
        candidates=_signatures(name, [v for k, _, v in pairs if k == "v1"], "hex"),
        expected=_mac("sha256", f"{timestamp}.".encode() + body),
        delivery_id=_json_field(body, "id") or _body_id(body),
        event_type=_json_field(body, TYPE_FIELDS["stripe"]),
        timestamp=int(timestamp),
        timestamp_header=name,
    )


def _clickup(headers: dict[str, str], body: bytes, options: dict[str, Any]) -> _Claim:
    name = "X-Signature"
    return _Claim(
        header=name,
        candidates=_signatures(name, [_require(headers, name)], "hex"),
        expected=_mac("sha256", body),
        # ClickUp sends no delivery id (its body's webhook_id names the subscription, not the
        # delivery), so a retried delivery is recognised by its identical body.
        delivery_id=_body_id(body),
        event_type=_json_field(body, TYPE_FIELDS["clickup"]),
    )


def _generic(headers: dict[str, str], body: bytes, options: dict[str, Any]) -> _Claim:
    name, prefix, stamp_name = options["header"], options["prefix"], options["timestamp_header"]
    value = _require(headers, name)
    if not value.startswith(prefix):
        raise _malformed(name, f"does not start with {prefix!r}")
    timestamp = _timestamp(stamp_name, _require(headers, stamp_name)) if stamp_name else None
    message = body if timestamp is None else f"{timestamp}.".encode() + body
    id_header, event_header = options["id_header"], options["event_header"]
    return _Claim(
        header=name,
        candidates=_signatures(name, [value.removeprefix(prefix)], options["encoding"]),
        expected=_mac(options["algorithm"], message),
        delivery_id=(id_header and headers.get(id_header.lower())) or _body_id(body),
        event_type=(headers.get(event_header.lower()) if event_header else None)
        or _json_field(body, TYPE_FIELDS["hmac"]),
        timestamp=None if timestamp is None else int(timestamp),
        timestamp_header=stamp_name or "",
    )


def _make(headers: dict[str, str], body: bytes, options: dict[str, Any]) -> _Claim:
    name = options["header"]
    # The key itself travels; comparing digests keeps compare_digest's time independent of
    # the key's length too.
    return _Claim(
        header=name,
        candidates=(hashlib.sha256(_require(headers, name).encode()).digest(),),
        expected=lambda key: hashlib.sha256(key).digest(),
        delivery_id=_body_id(body),
        event_type=options["event_type"] or _json_field(body, TYPE_FIELDS["make"]),
    )


def _standard_key(secret: str) -> bytes | None:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional, as in the spec)."""
    return _decode(secret.removeprefix("whsec_"), "base64")


def _encode(digest: bytes, encoding: str) -> str:
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def _sign(
    scheme: str,
    key: bytes,
    body: bytes,
    o: dict[str, Any],
    ts: int,
    delivery_id: str | None,
    event_type: str | None,
) -> dict[str, str]:
    optional: dict[str | None, str | None] = {}
    if scheme == "github":
        headers = {"X-Hub-Signature-256": "sha256=" + _mac("sha256", body)(key).hex()}
        optional = {"X-GitHub-Delivery": delivery_id, "X-GitHub-Event": event_type}
    elif scheme == "standard":
        msg_id = delivery_id or _body_id(body)
        sig = _mac("sha256", f"{msg_id}.{ts}.".encode() + body)(key)
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts)}
        headers["webhook-signature"] = "v1," + _encode(sig, "base64")
    elif scheme == "stripe":
        headers = {o["header"]: f"t={ts},v1={_mac('sha256', f'{ts}.'.encode() + body)(key).hex()}"}
    elif scheme == "clickup":
        headers = {"X-Signature": _mac("sha256", body)(key).hex()}
    elif scheme == "hmac":
        message = f"{ts}.".encode() + body if o["timestamp_header"] else body
        headers = {
            o["header"]: o["prefix"] + _encode(_mac(o["algorithm"], message)(key), o["encoding"])
        }
        optional = {o["timestamp_header"]: str(ts), o["id_header"]: delivery_id}
        optional[o["event_header"]] = event_type
    else:  # make: the API key is the whole credential
        headers = {o["header"]: key.decode()}
    return headers | {k: v for k, v in optional.items() if k and v is not None}


_PARSERS: dict[str, _Parse] = {
    "github": _github,
    "standard": _standard,
    "stripe": _stripe,
    "clickup": _clickup,
    "hmac": _generic,
    "make": _make,
}

# Each scheme's options and their defaults; _REQUIRED marks an option without one.
_REQUIRED = object()
_OPTIONS: dict[str, dict[str, object]] = {
    "github": {},
    "standard": {"tolerance": TOLERANCE},
    "stripe": {"header": "Stripe-Signature", "tolerance": TOLERANCE},
    "clickup": {},
    "hmac": {
        "header": _REQUIRED,
        "algorithm": "sha256",
        "encoding": "hex",
        "prefix": "",
        "timestamp_header": None,
        "tolerance": TOLERANCE,
        "id_header": None,
        "event_header": None,
    },
    "make": {"header": "x-make-apikey", "event_type": None},
}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # what RFC 9110 allows in a header name
_CHOICES = {"algorithm": ("sha1", "sha256", "sha512"), "encoding": ("hex", "base64")}


def _check_value(scheme: str, name: str, value: Any) -> Any:
    where = f"option {name!r} of the {scheme!r} webhook scheme"
    if value is None and _OPTIONS[scheme][name] is None:
        return None
    if name == "tolerance":
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise OptionsInvalid(f"{where} must be a duration such as 300 or '5m'") from None
        if seconds <= 0:
            raise OptionsInvalid(f"{where} must be more than zero seconds")
        return int(seconds) if seconds == int(seconds) else seconds
    if name in _CHOICES and value not in _CHOICES[name]:
        raise OptionsInvalid(f"{where} must be one of {', '.join(_CHOICES[name])}, not {value!r}")
    if name.endswith("header") and not (isinstance(value, str) and _TOKEN.fullmatch(value)):
        raise OptionsInvalid(f"{where} must be a header name, not {value!r}")
    if not isinstance(value, str) or (name == "event_type" and not value):
        raise OptionsInvalid(f"{where} must be a non-empty string, not {value!r}")
    return value


def check_options(scheme: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a source's options for ``scheme`` and return them with defaults filled in."""
    if scheme not in _OPTIONS:
        raise OptionsInvalid(f"unknown webhook scheme {scheme!r}; expected one of {SCHEMES}")
    given = dict(options or {})
    allowed = _OPTIONS[scheme]
    if unknown := sorted(map(str, set(given) - set(allowed))):
        expected = ", ".join(allowed) or "none"
        raise OptionsInvalid(
            f"unknown option(s) {', '.join(map(repr, unknown))} for the {scheme!r} webhook"
            f" scheme; it takes: {expected}"
        )
    for name, default in allowed.items():
        if name not in given and default is _REQUIRED:
            raise OptionsInvalid(f"the {scheme!r} webhook scheme needs option {name!r}")
    if scheme == "hmac" and "tolerance" in given and not given.get("timestamp_header"):
        # Without a signed timestamp there is nothing to be tolerant about: refuse rather than
        # let someone believe they are protected from replays.
        raise OptionsInvalid("option 'tolerance' needs option 'timestamp_header' to be set")
    checked = {
        n: _check_value(scheme, n, given[n]) if n in given else d for n, d in allowed.items()
    }
    if scheme == "hmac" and not checked["timestamp_header"]:
        del checked["tolerance"]  # so that the checked options pass this check again
    return checked


def _keys(scheme: str, secrets: Sequence[str]) -> list[bytes]:
    if scheme != "standard":
        return [s.encode() for s in secrets if s]
    return [key for s in secrets if (key := _standard_key(s)) is not None]


def verify(
    scheme: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    options: Mapping[str, Any] | None = None,
    now: float,
) -> Delivery:
    """Check a delivery's raw body and headers against every active secret of its source.

    Returns what the delivery says about itself; raises ``SignatureInvalid`` when it is not
    genuine. Header names are matched case-insensitively; ``now`` is unix seconds.
    """
    checked = check_options(scheme, options)
    keys = _keys(scheme, secrets)
    if not keys:
        raise SignatureInvalid("no_secret", f"the webhook source has no usable {scheme} secret")
    claim = _PARSERS[scheme]({k.lower(): v for k, v in headers.items()}, body, checked)
    expected = [claim.expected(key) for key in keys]
    if not any(hmac.compare_digest(e, c) for e in expected for c in claim.candidates):
        raise SignatureInvalid(
            "bad_signature", f"the {claim.header!r} header matches none of the source's secrets"
        )
    # Checked after the signature so that only genuine deliveries learn about clock skew.
    if claim.timestamp is not None:
        skew, tolerance = now - claim.timestamp, checked["tolerance"]
        if abs(skew) > tolerance:
            reason, how = ("stale_timestamp", "old") if skew > 0 else ("future_timestamp", "ahead")
            where = f"the {claim.timestamp_header!r} header"
            raise SignatureInvalid(
                reason, f"{where} is {abs(skew):.0f}s {how} (tolerance {tolerance}s)"
            )
    return Delivery(delivery_id=claim.delivery_id, event_type=claim.event_type)


def sign(
    scheme: str,
    *,
    body: bytes,
    secret: str,
    options: Mapping[str, Any] | None = None,
    now: float,
    delivery_id: str | None = None,
    event_type: str | None = None,
) -> dict[str, str]:
    """The headers a sender using ``scheme`` would attach to ``body``.

    ``delivery_id`` and ``event_type`` go into headers for schemes that carry them there
    (github, standard's id, hmac with ``id_header``/``event_header``); elsewhere they belong in
    the body and are ignored.
    """
    checked = check_options(scheme, options)
    keys = _keys(scheme, [secret])
    if not keys:
        raise ValueError(f"the secret is not usable for the {scheme!r} webhook scheme")
    return _sign(scheme, keys[0], body, checked, int(now), delivery_id, event_type)

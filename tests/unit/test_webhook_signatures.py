"""Webhook signatures: what each sender's scheme accepts, refuses and reports."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import pytest
from starlette.datastructures import Headers

from overture.triggers.signatures import (
    SCHEMES,
    TOLERANCE,
    Delivery,
    OptionsInvalid,
    SignatureInvalid,
    check_options,
    sign,
    verify,
)

NOW = 1_700_000_000
BODY = b'{"id": "evt_1", "type": "order.paid", "event": "taskCreated"}'
BODY_ID = "sha256:" + hashlib.sha256(BODY).hexdigest()
# Valid as a Standard Webhooks key and as a plain shared secret, so every scheme can use them.
SECRET = "whsec_" + base64.b64encode(b"first secret key, 24 b.").decode()
OTHER = "whsec_" + base64.b64encode(b"second secret key 24 b.").decode()
HMAC_TS = {
    "header": "X-Sig",
    "algorithm": "sha512",
    "encoding": "base64",
    "prefix": "sha512=",
    "timestamp_header": "X-Sig-Time",
}

# (scheme, options, the header that carries the signature or key)
CASES = [
    pytest.param("github", None, "X-Hub-Signature-256", id="github"),
    pytest.param("standard", None, "webhook-signature", id="standard"),
    pytest.param("stripe", None, "Stripe-Signature", id="stripe"),
    pytest.param("clickup", None, "X-Signature", id="clickup"),
    pytest.param("hmac", {"header": "X-Signature-Sha256"}, "X-Signature-Sha256", id="hmac"),
    pytest.param("hmac", HMAC_TS, "X-Sig", id="hmac-timestamp"),
    pytest.param("make", None, "x-make-apikey", id="make"),
]
# Make's API key authenticates the sender but does not sign the body.
BODY_SIGNING = [c for c in CASES if c.id != "make"]
TIMESTAMPED = [
    pytest.param("standard", None, "webhook-timestamp", id="standard"),
    pytest.param("stripe", None, "Stripe-Signature", id="stripe"),
    pytest.param("hmac", HMAC_TS, "X-Sig-Time", id="hmac-timestamp"),
]


def check(
    scheme: str,
    headers: Mapping[str, str],
    *,
    body: bytes = BODY,
    secrets: tuple[str, ...] = (SECRET,),
    options: Mapping[str, Any] | None = None,
    now: float = NOW,
) -> Delivery:
    return verify(scheme, headers=headers, body=body, secrets=secrets, options=options, now=now)


def rejected(reason: str, scheme: str, headers: Mapping[str, str], **kwargs: Any) -> str:
    """Assert verification fails for ``reason``; return the message, checked to leak nothing."""
    with pytest.raises(SignatureInvalid) as caught:
        check(scheme, headers, **kwargs)
    error = caught.value
    assert error.reason == reason
    assert str(error) == error.message
    for secret in filter(None, (SECRET, OTHER, *kwargs.get("secrets", ()))):
        assert secret not in error.message
        assert secret.removeprefix("whsec_") not in error.message
    for value in headers.values():
        if len(value) > 20:  # signatures, keys, ids: nothing the sender sent is echoed
            assert value not in error.message
    return error.message


def test_the_schemes_are_the_documented_six() -> None:
    assert SCHEMES == ("github", "standard", "stripe", "clickup", "hmac", "make")
    assert TOLERANCE == 300


@pytest.mark.parametrize(("scheme", "options", "header"), CASES)
def test_a_signed_delivery_verifies(scheme: str, options: Any, header: str) -> None:
    headers = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW)
    assert header in headers
    assert isinstance(check(scheme, headers, options=options), Delivery)


@pytest.mark.parametrize(("scheme", "options", "header"), BODY_SIGNING)
@pytest.mark.parametrize(
    "tampered",
    [BODY.replace(b"evt_1", b"evt_2"), BODY + b"\n", BODY[:-1], b" " + BODY],
    ids=["changed", "appended", "truncated", "prepended"],
)
def test_changing_one_byte_of_the_body_is_rejected(
    scheme: str, options: Any, header: str, tampered: bytes
) -> None:
    headers = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW)
    message = rejected("bad_signature", scheme, headers, body=tampered, options=options)
    assert header in message


def test_re_serialised_json_is_not_the_signed_body() -> None:
    headers = sign("github", body=BODY, secret=SECRET, now=NOW)
    rejected("bad_signature", "github", headers, body=BODY.replace(b": ", b":"))


def test_make_authenticates_the_sender_but_not_the_body() -> None:
    headers = sign("make", body=BODY, secret=SECRET, now=NOW)
    assert headers == {"x-make-apikey": SECRET}
    assert check("make", headers, body=b"anything else")


@pytest.mark.parametrize(("scheme", "options", "header"), CASES)
def test_a_wrong_secret_is_rejected(scheme: str, options: Any, header: str) -> None:
    headers = sign(scheme, body=BODY, secret=OTHER, options=options, now=NOW)
    message = rejected("bad_signature", scheme, headers, options=options)
    assert header in message


@pytest.mark.parametrize(("scheme", "options", "header"), CASES)
def test_a_second_active_secret_is_accepted(scheme: str, options: Any, header: str) -> None:
    headers = sign(scheme, body=BODY, secret=OTHER, options=options, now=NOW)
    assert check(scheme, headers, secrets=(SECRET, OTHER), options=options)
    assert check(scheme, headers, secrets=(OTHER, SECRET), options=options)


@pytest.mark.parametrize(("scheme", "options", "header"), CASES)
def test_a_missing_header_is_named(scheme: str, options: Any, header: str) -> None:
    headers = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW)
    del headers[header]
    assert repr(header) in rejected("missing_header", scheme, headers, options=options)


@pytest.mark.parametrize(("scheme", "options", "header"), CASES)
def test_no_active_secret_is_refused(scheme: str, options: Any, header: str) -> None:
    headers = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW)
    rejected("no_secret", scheme, headers, secrets=(), options=options)


def test_an_empty_secret_never_matches_an_empty_api_key() -> None:
    rejected("no_secret", "make", {"x-make-apikey": ""}, secrets=("",))
    rejected("bad_signature", "make", {"x-make-apikey": ""}, secrets=("", SECRET))


def test_a_secret_that_is_not_base64_cannot_verify_standard_webhooks() -> None:
    headers = sign("standard", body=BODY, secret=SECRET, now=NOW)
    rejected("no_secret", "standard", headers, secrets=("whsec_not base64!",))
    with pytest.raises(ValueError, match="secret"):
        sign("standard", body=BODY, secret="whsec_not base64!", now=NOW)


@pytest.mark.parametrize(("scheme", "options", "header"), CASES)
def test_a_body_that_is_not_json_still_verifies(scheme: str, options: Any, header: str) -> None:
    body = b"\xff\xfe not json at all"
    headers = sign(scheme, body=body, secret=SECRET, options=options, now=NOW)
    delivery = check(scheme, headers, body=body, options=options)
    assert delivery.event_type is None


@pytest.mark.parametrize(("scheme", "options", "header"), CASES)
def test_header_names_are_case_insensitive(scheme: str, options: Any, header: str) -> None:
    headers = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW)
    for variant in (
        {k.upper(): v for k, v in headers.items()},
        {k.lower(): v for k, v in headers.items()},
        Headers(headers={k.title(): v for k, v in headers.items()}),
    ):
        assert check(scheme, variant, options=options) == check(scheme, headers, options=options)


@pytest.mark.parametrize(("scheme", "options", "header"), TIMESTAMPED)
@pytest.mark.parametrize("age", [-299, -1, 0, 1, 299, 300])
def test_a_timestamp_within_the_tolerance_is_accepted(
    scheme: str, options: Any, header: str, age: int
) -> None:
    headers = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW - age)
    assert check(scheme, headers, options=options)


@pytest.mark.parametrize(("scheme", "options", "header"), TIMESTAMPED)
@pytest.mark.parametrize(("age", "reason"), [(301, "stale_timestamp"), (-301, "future_timestamp")])
def test_a_timestamp_outside_the_tolerance_is_rejected(
    scheme: str, options: Any, header: str, age: int, reason: str
) -> None:
    headers = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW - age)
    assert repr(header) in rejected(reason, scheme, headers, options=options)


@pytest.mark.parametrize(("scheme", "options", "header"), TIMESTAMPED)
def test_the_tolerance_is_an_option(scheme: str, options: Any, header: str) -> None:
    options = {**(options or {}), "tolerance": "10m"}
    headers = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW - 599)
    assert check(scheme, headers, options=options)
    rejected("stale_timestamp", scheme, headers, options={**options, "tolerance": 598})


@pytest.mark.parametrize(("scheme", "options", "header"), TIMESTAMPED)
def test_a_forged_timestamp_breaks_the_signature(scheme: str, options: Any, header: str) -> None:
    headers = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW - 3600)
    forged = {k: v.replace(str(NOW - 3600), str(NOW)) for k, v in headers.items()}
    assert forged != headers
    rejected("bad_signature", scheme, forged, options=options)


@pytest.mark.parametrize(("scheme", "options", "header"), TIMESTAMPED)
def test_a_timestamp_that_is_not_whole_seconds_is_malformed(
    scheme: str, options: Any, header: str
) -> None:
    headers = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW)
    broken = {k: v.replace(str(NOW), "2023-11-14T22:13:20Z") for k, v in headers.items()}
    assert repr(header) in rejected("malformed_header", scheme, broken, options=options)


def test_the_timestamp_is_verified_as_the_sender_wrote_it() -> None:
    # The sender signed these characters, not our rendering of the number.
    options = {"header": "X-S", "timestamp_header": "X-T"}
    padded = f"0{NOW}"
    digest = hmac.new(SECRET.encode(), f"{padded}.".encode() + BODY, "sha256").hexdigest()
    assert check("hmac", {"X-S": digest, "X-T": padded}, options=options)


# The Standard Webhooks reference libraries' test vector (svix and standard-webhooks, every
# language): a receiver that reproduces it interoperates with every conforming sender.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_HEADERS = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
VECTOR_BODY = b'{"test": 2432232314}'


def test_the_standard_webhooks_vector_is_what_the_spec_says() -> None:
    # Computed from the spec's definition, independently of the module under test.
    key = base64.b64decode(VECTOR_SECRET.removeprefix("whsec_"))
    content = b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330." + VECTOR_BODY
    digest = hmac.new(key, content, "sha256").digest()
    assert "v1," + base64.b64encode(digest).decode() == VECTOR_HEADERS["webhook-signature"]


def test_signing_reproduces_the_standard_webhooks_vector() -> None:
    headers = sign(
        "standard",
        body=VECTOR_BODY,
        secret=VECTOR_SECRET,
        now=1614265330,
        delivery_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
    )
    assert headers == VECTOR_HEADERS


@pytest.mark.parametrize("secret", [VECTOR_SECRET, VECTOR_SECRET.removeprefix("whsec_")])
def test_the_standard_webhooks_vector_verifies(secret: str) -> None:
    delivery = check(
        "standard", VECTOR_HEADERS, body=VECTOR_BODY, secrets=(secret,), now=1614265330
    )
    assert delivery == Delivery(delivery_id="msg_p5jXN8AQM9LWM0D4loKWxJek", event_type=None)


def test_the_standard_webhooks_vector_with_another_id_is_rejected() -> None:
    headers = {**VECTOR_HEADERS, "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJeK"}
    rejected("bad_signature", "standard", headers, body=VECTOR_BODY, secrets=(VECTOR_SECRET,))


def test_standard_accepts_any_valid_entry_of_the_signature_list() -> None:
    good = VECTOR_HEADERS["webhook-signature"]
    for signatures in (
        f"v1,Zm9yZ2VkIHNpZ25hdHVyZSBvZiAzMiBieXRlcyEhISE= {good}",
        f"v1a,c29tZXRoaW5nIGVsc2U= {good} v1,bm9wZQ==",
    ):
        headers = {**VECTOR_HEADERS, "webhook-signature": signatures}
        assert check(
            "standard", headers, body=VECTOR_BODY, secrets=(VECTOR_SECRET,), now=1614265330
        )


def test_standard_ignores_signatures_of_other_versions() -> None:
    headers = {
        **VECTOR_HEADERS,
        "webhook-signature": "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    message = rejected(
        "malformed_header",
        "standard",
        headers,
        body=VECTOR_BODY,
        secrets=(VECTOR_SECRET,),
        now=1614265330,
    )
    assert "'webhook-signature'" in message


def test_stripe_accepts_any_v1_signature_and_ignores_other_keys() -> None:
    headers = sign("stripe", body=BODY, secret=SECRET, now=NOW)
    t, v1 = headers["Stripe-Signature"].split(",")
    wrong = "v1=" + "ab" * 32
    for value in (f"{t},{wrong},{v1}", f"{t}, v0={'cd' * 32}, {v1}", f"{v1},{t}"):
        assert check("stripe", {"Stripe-Signature": value})
    rejected("bad_signature", "stripe", {"Stripe-Signature": f"{t},{wrong},v0={v1[3:]}"})


@pytest.mark.parametrize(
    "value", ["v1=" + "ab" * 32, "t=,v1=" + "ab" * 32, "t=1700000000", "garbage"]
)
def test_stripe_headers_without_a_timestamp_or_signature_are_malformed(value: str) -> None:
    message = rejected("malformed_header", "stripe", {"Stripe-Signature": value})
    assert "'Stripe-Signature'" in message


def test_stripe_reads_its_header_from_the_options() -> None:
    options = {"header": "X-Connect-Signature"}
    headers = sign("stripe", body=BODY, secret=SECRET, options=options, now=NOW)
    assert list(headers) == ["X-Connect-Signature"]
    assert check("stripe", headers, options=options)


def test_github_does_not_accept_the_legacy_sha1_header_alone() -> None:
    sha1 = hmac.new(SECRET.encode(), BODY, "sha1").hexdigest()
    message = rejected("missing_header", "github", {"X-Hub-Signature": f"sha1={sha1}"})
    assert "'X-Hub-Signature-256'" in message


@pytest.mark.parametrize("value", ["sha1=" + "ab" * 20, "sha256=", "sha256=not-hex", "ab" * 32])
def test_github_signatures_in_another_form_are_malformed(value: str) -> None:
    rejected("malformed_header", "github", {"X-Hub-Signature-256": value})


def test_hex_signatures_are_compared_as_bytes() -> None:
    headers = sign("github", body=BODY, secret=SECRET, now=NOW)
    upper = {"X-Hub-Signature-256": "sha256=" + headers["X-Hub-Signature-256"][7:].upper()}
    assert check("github", upper)


@pytest.mark.parametrize(
    ("scheme", "options", "headers", "delivery"),
    [
        ("github", None, {"X-GitHub-Delivery": "72d3162e", "X-GitHub-Event": "pull_request"},
         Delivery(delivery_id="72d3162e", event_type="pull_request")),
        ("github", None, {}, Delivery(delivery_id=BODY_ID, event_type=None)),
        ("standard", None, {}, Delivery(delivery_id=BODY_ID, event_type="order.paid")),
        ("stripe", None, {}, Delivery(delivery_id="evt_1", event_type="order.paid")),
        ("clickup", None, {}, Delivery(delivery_id=BODY_ID, event_type="taskCreated")),
        ("hmac", {"header": "X-S"}, {}, Delivery(delivery_id=BODY_ID, event_type="order.paid")),
        ("hmac", {"header": "X-S", "id_header": "X-Id", "event_header": "X-Event"},
         {"X-Id": "d-1", "X-Event": "ping"}, Delivery(delivery_id="d-1", event_type="ping")),
        ("make", None, {}, Delivery(delivery_id=BODY_ID, event_type="order.paid")),
        ("make", {"event_type": "scenario.done"}, {},
         Delivery(delivery_id=BODY_ID, event_type="scenario.done")),
    ],
)  # fmt: skip
def test_what_a_delivery_says_about_itself(
    scheme: str, options: Any, headers: dict[str, str], delivery: Delivery
) -> None:
    signed = sign(scheme, body=BODY, secret=SECRET, options=options, now=NOW) | headers
    assert check(scheme, signed, options=options) == delivery


def test_sign_puts_ids_and_types_in_headers_where_the_scheme_carries_them() -> None:
    github = sign("github", body=BODY, secret=SECRET, now=NOW, delivery_id="d", event_type="push")
    assert check("github", github) == Delivery(delivery_id="d", event_type="push")
    standard = sign("standard", body=BODY, secret=SECRET, now=NOW, delivery_id="msg_1")
    assert standard["webhook-id"] == "msg_1"
    options = {"header": "X-S", "id_header": "X-Id", "event_header": "X-Event"}
    generic = sign(
        "hmac", body=BODY, secret=SECRET, options=options, now=NOW, delivery_id="d", event_type="e"
    )
    assert check("hmac", generic, options=options) == Delivery(delivery_id="d", event_type="e")


@pytest.mark.parametrize(
    ("algorithm", "encoding"), [("sha1", "hex"), ("sha256", "base64"), ("sha512", "hex")]
)
def test_the_generic_scheme_computes_what_its_options_say(algorithm: str, encoding: str) -> None:
    options = {"header": "X-S", "algorithm": algorithm, "encoding": encoding, "prefix": "sig="}
    digest = hmac.new(SECRET.encode(), BODY, algorithm).digest()
    text = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    assert sign("hmac", body=BODY, secret=SECRET, options=options, now=NOW) == {
        "X-S": "sig=" + text
    }
    assert check("hmac", {"X-S": "sig=" + text}, options=options)
    rejected("malformed_header", "hmac", {"X-S": text}, options=options)


def test_the_generic_scheme_signs_the_timestamp_before_the_body() -> None:
    options = {"header": "X-S", "timestamp_header": "X-T"}
    digest = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, "sha256").hexdigest()
    assert sign("hmac", body=BODY, secret=SECRET, options=options, now=NOW) == {
        "X-S": digest,
        "X-T": str(NOW),
    }


def test_check_options_fills_in_defaults() -> None:
    assert check_options("github", None) == {}
    assert check_options("standard", {}) == {"tolerance": 300}
    assert check_options("stripe", {"tolerance": "2m"}) == {
        "header": "Stripe-Signature",
        "tolerance": 120,
    }
    assert check_options("hmac", {"header": "X-S"}) == {
        "header": "X-S",
        "algorithm": "sha256",
        "encoding": "hex",
        "prefix": "",
        "timestamp_header": None,
        "id_header": None,
        "event_header": None,
    }
    # The checked options check again (a source's are checked when made and when used).
    once = check_options("hmac", {"header": "X-S"})
    assert check_options("hmac", once) == once
    assert check_options("hmac", {"header": "X-S", "timestamp_header": "X-T"})["tolerance"] == 300
    assert check_options("hmac", {"header": "X-S", "id_header": None})["id_header"] is None
    assert check_options("make", {}) == {"header": "x-make-apikey", "event_type": None}


@pytest.mark.parametrize(
    ("scheme", "options", "words"),
    [
        ("gitlab", None, ["'gitlab'", "github"]),
        ("github", {"secret_header": "X"}, ["'secret_header'", "none"]),
        ("clickup", {"tolerance": 300}, ["'tolerance'"]),
        ("stripe", {"algorithm": "sha1", "prefix": ""}, ["'algorithm'", "'prefix'"]),
        ("hmac", {}, ["'header'"]),
        ("hmac", {"header": "X-S", "algorithm": "md5"}, ["'algorithm'", "sha256", "'md5'"]),
        ("hmac", {"header": "X-S", "encoding": "base32"}, ["'encoding'", "base64"]),
        ("hmac", {"header": "X-S", "tolerance": 60}, ["'tolerance'", "'timestamp_header'"]),
        ("hmac", {"header": "X S"}, ["'header'", "header name"]),
        ("hmac", {"header": "X-S", "prefix": 1}, ["'prefix'"]),
        ("standard", {"tolerance": -5}, ["'tolerance'"]),
        ("standard", {"tolerance": 0}, ["'tolerance'", "more than zero"]),
        ("standard", {"tolerance": "soon"}, ["'tolerance'", "duration"]),
        ("make", {"event_type": ""}, ["'event_type'"]),
    ],
)
def test_check_options_says_which_option_is_wrong(
    scheme: str, options: Any, words: list[str]
) -> None:
    with pytest.raises(OptionsInvalid) as caught:
        check_options(scheme, options)
    assert isinstance(caught.value, ValueError)
    for word in words:
        assert word in str(caught.value)


def test_verify_and_sign_check_their_options() -> None:
    with pytest.raises(OptionsInvalid, match="'algo'"):
        check("hmac", {}, options={"header": "X-S", "algo": "sha1"})
    with pytest.raises(OptionsInvalid, match="'gitlab'"):
        sign("gitlab", body=BODY, secret=SECRET, now=NOW)

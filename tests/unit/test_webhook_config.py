"""Webhook sources from the config file, and the events verified deliveries become."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any, get_args

import pytest

from overture.api.schemas import RETIRE_AFTER, RotateSecretIn, WebhookScheme
from overture.cli.webhooks import _delivery_body, rotate_secret
from overture.settings import SettingsInvalid
from overture.store.records import WebhookSecret, WebhookSource
from overture.triggers.signatures import (
    SCHEMES,
    TYPE_FIELDS,
    Delivery,
    OptionsInvalid,
    sign,
    verify,
)
from overture.triggers.webhooks import (
    check_secrets,
    config_sources,
    delivery_event,
    scheme_options,
    source_options,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
WHSEC = "whsec_" + base64.b64encode(b"a standard webhooks key!").decode()


def sources(tables: dict[str, Any], **environ: str) -> dict[str, WebhookSource]:
    return config_sources(tables, environ, now=NOW)


def refusal(tables: dict[str, Any], **environ: str) -> str:
    with pytest.raises(SettingsInvalid) as caught:
        sources(tables, **environ)
    return str(caught.value)


def source(scheme: str, options: dict[str, Any] | None = None, name: str = "src") -> WebhookSource:
    return WebhookSource(
        name=name,
        scheme=scheme,
        secrets=(WebhookSecret(value="s", added_at=NOW),),
        options=source_options(scheme, options),
        tenant="acme",
    )


# --- config_sources --------------------------------------------------------------------------


def test_a_table_becomes_a_source_with_its_secrets_read_from_the_environment() -> None:
    tables = {
        "github": {"scheme": "github", "secrets": ["env:GH_SECRET", "plain"]},
        "billing": {
            "scheme": "stripe",
            "secrets": ["sk"],
            "options": {"tolerance": "10m", "event_prefix": "pay"},
            "tenant": "acme",
        },
    }

    found = sources(tables, GH_SECRET="from-env")

    assert set(found) == {"github", "billing"}
    github, billing = found["github"], found["billing"]
    assert (github.name, github.scheme, github.tenant, github.origin) == (
        "github",
        "github",
        "default",
        "config",
    )
    assert github.active_secrets(NOW) == ["from-env", "plain"]
    assert all(s.added_at == NOW and s.expires_at is None for s in github.secrets)
    assert billing.tenant == "acme"
    assert billing.options == {
        "header": "Stripe-Signature",
        "tolerance": 600,
        "event_prefix": "pay",
    }


def test_no_tables_no_sources() -> None:
    assert sources({}) == {}


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"scheme": "github", "secrets": ["x"], "secret": "y"}, "unknown key(s) 'secret'"),
        ({"secrets": ["x"]}, "scheme must be one of github, standard"),
        ({"scheme": "gitlab", "secrets": ["x"]}, "not 'gitlab'"),
        ({"scheme": "github"}, "secrets must be a list of one or more strings"),
        ({"scheme": "github", "secrets": []}, "secrets must be a list of one or more strings"),
        ({"scheme": "github", "secrets": "x"}, "secrets must be a list"),
        ({"scheme": "github", "secrets": [3]}, "secret #1 must be a string"),
        ({"scheme": "github", "secrets": [""]}, "secret #1 must be 1 to"),
        ({"scheme": "standard", "secrets": ["not base64!"]}, "whsec_<base64>"),
        ({"scheme": "hmac", "secrets": ["x"]}, "needs option 'header'"),
        ({"scheme": "stripe", "secrets": ["x"], "options": {"tolerance": -1}}, "'tolerance'"),
        ({"scheme": "github", "secrets": ["x"], "options": {"colour": 1}}, "'colour'"),
        ({"scheme": "github", "secrets": ["x"], "options": "x"}, "options must be a table"),
        ({"scheme": "github", "secrets": ["x"], "tenant": ""}, "tenant must be"),
        ({"scheme": "github", "secrets": ["x"], "options": {"event_prefix": "a b"}}, "prefix"),
        ("github", "must be a table"),
    ],
)
def test_a_bad_table_is_refused_naming_the_table_and_the_problem(table: Any, expected: str) -> None:
    message = refusal({"hooks": table})

    assert message.startswith("webhooks.hooks: ")
    assert expected in message


def test_a_secret_from_an_unset_variable_names_the_variable() -> None:
    message = refusal({"gh": {"scheme": "github", "secrets": ["env:GH_WEBHOOK_SECRET"]}})

    assert message == "webhooks.gh: secret #1 is read from $GH_WEBHOOK_SECRET, which is not set"


def test_an_empty_variable_is_as_good_as_unset() -> None:
    message = refusal({"gh": {"scheme": "github", "secrets": ["env:EMPTY"]}}, EMPTY="")

    assert "$EMPTY, which is not set" in message


def test_a_refusal_never_quotes_a_secret() -> None:
    message = refusal({"std": {"scheme": "standard", "secrets": ["env:KEY"]}}, KEY="hunter2!!")

    assert "hunter2" not in message


def test_a_name_that_cannot_be_a_url_segment_is_refused() -> None:
    message = refusal({"my hooks": {"scheme": "github", "secrets": ["x"]}})

    assert message.startswith("webhooks.my hooks: ")
    assert "/v1/webhooks/<name>" in message


# --- options and secrets ---------------------------------------------------------------------


def test_event_prefix_is_kept_beside_the_schemes_options_and_left_out_for_verifying() -> None:
    options = source_options("standard", {"event_prefix": "billing", "tolerance": 60})

    assert options == {"tolerance": 60, "event_prefix": "billing"}
    assert scheme_options(options) == {"tolerance": 60}


def test_source_options_refuses_what_check_options_refuses() -> None:
    with pytest.raises(OptionsInvalid, match="unknown webhook scheme"):
        source_options("gitlab", {})


def test_check_secrets_accepts_usable_secrets_and_refuses_none() -> None:
    check_secrets("standard", source_options("standard", {}), [WHSEC])
    with pytest.raises(OptionsInvalid, match="at least one secret"):
        check_secrets("github", {}, [])


def test_the_api_offers_every_scheme() -> None:
    assert get_args(WebhookScheme) == SCHEMES


# --- delivery_event --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "options", "expected"),
    [
        ("github", None, "github.pull_request"),
        ("stripe", None, "stripe.pull_request"),
        ("clickup", None, "clickup.pull_request"),
        ("make", None, "make.pull_request"),
        ("standard", None, "src.pull_request"),
        ("hmac", {"header": "X-Sig"}, "src.pull_request"),
        ("github", {"event_prefix": "gh"}, "gh.pull_request"),
        ("hmac", {"header": "X-Sig", "event_prefix": "shop"}, "shop.pull_request"),
    ],
)
def test_the_event_type_is_the_prefix_then_the_senders_type(
    scheme: str, options: dict[str, Any] | None, expected: str
) -> None:
    delivery = Delivery(delivery_id="d1", event_type="pull_request")

    assert delivery_event(source(scheme, options), delivery, b"{}").type == expected


def test_a_delivery_without_a_type_is_a_delivery() -> None:
    delivery = Delivery(delivery_id="d1", event_type=None)

    assert delivery_event(source("github"), delivery, b"{}").type == "github.delivery"


def test_the_event_is_the_sources_tenants_with_an_id_per_source_and_delivery() -> None:
    body = b'{"action": "opened", "number": 7}'
    delivery = Delivery(delivery_id="72d3162e", event_type="pull_request")

    event = delivery_event(source("github", name="gh-main"), delivery, body)

    assert event.id == "webhook:gh-main:72d3162e"
    assert event.tenant == "acme"
    assert event.source == "webhook:gh-main"
    assert event.payload == {"action": "opened", "number": 7}
    assert event.meta == {"webhook": {"source": "gh-main", "delivery_id": "72d3162e"}}
    other = delivery_event(source("github", name="gh-other"), delivery, body)
    assert other.id != event.id  # two sources may send one delivery id


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        (b"action=opened&n=1", {"raw": "action=opened&n=1"}),
        (b"", {"raw": ""}),
        (b"\xff\xfe{}", {"raw": "\ufffd\ufffd{}"}),
        (b"[1, 2]", [1, 2]),
        (b'"text"', "text"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_kept(body: bytes, payload: Any) -> None:
    delivery = Delivery(delivery_id="d", event_type=None)

    assert delivery_event(source("clickup"), delivery, body).payload == payload


def test_a_config_source_verifies_what_its_sender_signs() -> None:
    found = sources({"std": {"scheme": "standard", "secrets": ["env:KEY"]}}, KEY=WHSEC)["std"]
    body = b'{"type": "invoice.paid"}'
    options = scheme_options(found.options)
    headers = sign("standard", body=body, secret=WHSEC, options=options, now=1000, delivery_id="m1")

    delivery = verify(
        "standard",
        headers=headers,
        body=body,
        secrets=found.active_secrets(NOW),
        options=options,
        now=1000,
    )

    assert delivery_event(found, delivery, body).type == "std.invoice.paid"


def test_what_a_store_cannot_keep_is_replaced_in_the_type_and_id() -> None:
    delivery = Delivery(delivery_id="id\x00\ud800", event_type="order\x00paid\udfff")

    event = delivery_event(source("stripe"), delivery, b"{}")

    # Kept as text the store can hold, then hashed like any id that is not plain.
    hashed = "sha256:" + hashlib.sha256("id\ufffd\ufffd".encode()).hexdigest()
    assert event.type == "stripe.order\ufffdpaid\ufffd"
    assert event.id == f"webhook:src:{hashed}"
    assert event.meta == {"webhook": {"source": "src", "delivery_id": "id\ufffd\ufffd"}}


def test_a_long_delivery_id_is_hashed_and_an_odd_type_made_safe() -> None:
    source = WebhookSource(
        name="src", scheme="github", secrets=(), options={}, tenant="t", origin="config"
    )
    delivery = Delivery(delivery_id="d" * 4000, event_type="pull request " + "x" * 4000)

    event = delivery_event(source, delivery, b"{}")

    assert event.id.startswith("webhook:src:sha256:") and len(event.id) < 100
    assert event.type.startswith("github.pull_request_x") and len(event.type) <= 200
    assert " " not in event.type


def test_an_hmac_source_needs_no_timestamp_header() -> None:
    options = source_options("hmac", {"header": "X-Sig", "prefix": "sha256="})

    check_secrets("hmac", options, ["s3cret"])

    assert "tolerance" not in options


def test_a_make_secret_must_fit_in_a_header() -> None:
    with pytest.raises(OptionsInvalid, match="visible ASCII"):
        check_secrets("make", source_options("make", {}), ["sécret\n"])


@pytest.mark.parametrize(
    ("scheme", "options"),
    [
        ("github", None),
        ("hmac", {"header": "X-Sig", "id_header": "X-Id"}),
        ("hmac", {"header": "X-Sig", "timestamp_header": "X-Time", "id_header": "X-Id"}),
    ],
)
def test_a_delivery_whose_id_is_not_signed_is_also_known_by_its_body(
    scheme: str, options: dict[str, Any] | None
) -> None:
    body = b'{"action": "opened"}'

    first, resent = (
        delivery_event(source(scheme, options), Delivery(delivery_id=d, event_type="x"), body)
        for d in ("d1", "d2")
    )

    assert first.idempotency_key == f"webhook:src:sha256:{hashlib.sha256(body).hexdigest()}"
    assert resent.idempotency_key == first.idempotency_key and resent.id != first.id


@pytest.mark.parametrize("scheme", ["standard", "stripe", "clickup", "make"])
def test_a_delivery_whose_id_is_signed_or_its_bodys_hash_has_no_idempotency_key(
    scheme: str,
) -> None:
    delivery = Delivery(delivery_id="d1", event_type="x")

    assert delivery_event(source(scheme), delivery, b"{}").idempotency_key is None


@pytest.mark.parametrize("scheme", sorted(TYPE_FIELDS))
def test_the_event_type_is_read_from_the_body_field_type_fields_names(scheme: str) -> None:
    options = {"header": "X-Sig"} if scheme == "hmac" else None
    data = _delivery_body(scheme, source_options(scheme, options), "it.happened", "evt_1", {})
    body = json.dumps(data).encode()
    headers = sign(scheme, body=body, secret=WHSEC, options=options, now=1000)

    delivery = verify(
        scheme, headers=headers, body=body, secrets=[WHSEC], options=options, now=1000
    )

    assert data[TYPE_FIELDS[scheme]] == "it.happened"  # type: ignore[index,call-overload]
    assert delivery.event_type == "it.happened"


def test_the_cli_rotates_with_the_apis_default_overlap() -> None:
    [default] = [p.default for p in rotate_secret.params if p.name == "retire_after"]

    assert default == RETIRE_AFTER == RotateSecretIn(secret="s").retire_after == "24h"

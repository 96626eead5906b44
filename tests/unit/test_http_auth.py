"""The ``http`` handler's ``auth``: a bearer token as it is, a service JWT signed with HMAC and
stamped with the step's clock."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from overture.errors import NonRetryable
from overture.handlers.http_auth import credentials, sign_jwt

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IAT = int(NOW.timestamp())


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWT."""
    header, claims, _ = token.split(".")
    return _decoded(header), _decoded(claims)


def _decoded(part: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def test_the_signature_is_the_one_every_jwt_library_makes() -> None:
    # The example on jwt.io, which PyJWT, jose and the rest reproduce.
    claims = {"sub": "1234567890", "name": "John Doe", "iat": 1516239022}
    assert sign_jwt(claims, "your-256-bit-secret") == (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
        ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
        ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )


def test_a_bearer_token_is_sent_as_it_is() -> None:
    given = credentials({"bearer": "t0ken"}, NOW)
    assert (given.authorization, given.values) == ("Bearer t0ken", ("t0ken",))


@pytest.mark.parametrize("value", ["Bearer t0ken", "bearer t0ken", "BEARER  t0ken"])
def test_a_bearer_value_that_names_the_scheme_is_not_sent_as_bearer_bearer(value: str) -> None:
    given = credentials({"bearer": value}, NOW)
    assert (given.authorization, given.values) == ("Bearer t0ken", ("t0ken",))


def test_a_bearer_value_with_no_token_is_refused() -> None:
    with pytest.raises(NonRetryable, match="no token") as raised:
        credentials({"bearer": "Bearer "}, NOW)
    assert raised.value.code == "bad_input"


def test_a_jwt_carries_the_claims_and_expires_after_ttl() -> None:
    spec = {"secret": "k3y", "claims": {"sub": "overture", "iss": "wisely", "role": "service_role"}}
    given = credentials({"jwt": {**spec, "ttl": 60}}, NOW)
    token = given.authorization.removeprefix("Bearer ")
    header, claims = parts(token)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims == {
        "sub": "overture",
        "iss": "wisely",
        "role": "service_role",
        "iat": IAT,
        "exp": IAT + 60,
    }
    assert given.values == (token, "k3y")  # both kept out of outputs and messages


def test_the_default_ttl_is_five_minutes_and_claims_are_optional() -> None:
    token = credentials({"jwt": {"secret": "k3y"}}, NOW).authorization.removeprefix("Bearer ")
    assert parts(token)[1] == {"iat": IAT, "exp": IAT + 300}


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_hmac_algorithms(algorithm: str) -> None:
    spec = {"secret": "k3y", "algorithm": algorithm}
    token = credentials({"jwt": spec}, NOW).authorization.removeprefix("Bearer ")
    assert parts(token)[0]["alg"] == algorithm
    assert token == sign_jwt({"iat": IAT, "exp": IAT + 300}, "k3y", algorithm)


@pytest.mark.parametrize("claim", ["iat", "exp"])
def test_claims_may_not_set_the_times(claim: str) -> None:
    with pytest.raises(NonRetryable, match=f"may not set {claim}") as raised:
        credentials({"jwt": {"secret": "k3y", "claims": {claim: 1}}}, NOW)
    assert raised.value.code == "bad_input"

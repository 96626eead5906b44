"""API key helpers: the key format, its hash, and what scopes allow."""

from __future__ import annotations

import hashlib
import re

import pytest

from overture.apikeys import SCOPES, granted, hash_key, new_key, parse_scopes

KEY = re.compile(r"^ovt_(?P<id>[A-Za-z0-9]{8})_(?P<secret>[A-Za-z0-9_-]{43,})$")


def test_a_new_key_is_ovt_id_secret_and_comes_with_its_id_and_hash() -> None:
    plaintext, key_id, secret_hash = new_key()

    match = KEY.match(plaintext)
    assert match, plaintext
    assert match["id"] == key_id
    assert secret_hash == hash_key(plaintext)
    assert plaintext.split("_", 2)[1] == key_id  # the secret may hold "_", the id never does


def test_new_keys_do_not_repeat() -> None:
    made = [new_key() for _ in range(200)]

    assert len({plaintext for plaintext, _, _ in made}) == 200
    assert len({key_id for _, key_id, _ in made}) == 200


def test_the_hash_is_the_sha256_of_the_whole_key_in_hex() -> None:
    assert hash_key("ovt_abcdefgh_secret") == hashlib.sha256(b"ovt_abcdefgh_secret").hexdigest()
    assert hash_key("ovt_abcdefgh_secret") != hash_key("ovt_abcdefgh_secreT")


@pytest.mark.parametrize(
    ("given", "scopes"),
    [
        ("read", ("read",)),
        ("write,read", ("read", "write")),
        (" admin , read ", ("read", "admin")),
        ("read write", ("read", "write")),
        ("read,read,", ("read",)),
        (["admin", "write"], ("write", "admin")),
        (("read",), ("read",)),
    ],
)
def test_scopes_are_parsed_deduplicated_and_ordered_weakest_first(
    given: str | list[str], scopes: tuple[str, ...]
) -> None:
    assert parse_scopes(given) == scopes


def test_an_unknown_scope_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown scope 'root': choose from read, write, admin"):
        parse_scopes("read,root")
    with pytest.raises(ValueError, match="unknown scopes 'Read', 'x'"):
        parse_scopes(["x", "Read"])


@pytest.mark.parametrize("given", ["", " , ", []])
def test_no_scope_at_all_is_refused(given: str | list[str]) -> None:
    with pytest.raises(ValueError, match="no scope given"):
        parse_scopes(given)


@pytest.mark.parametrize(
    ("held", "allowed"),
    [
        (("read",), {"read"}),
        (("write",), {"read", "write"}),
        (("admin",), {"read", "write", "admin"}),
        (("read", "write"), {"read", "write"}),
        ((), set()),
        (("superuser",), set()),
    ],
)
def test_each_scope_grants_itself_and_those_below_it(
    held: tuple[str, ...], allowed: set[str]
) -> None:
    assert {needed for needed in SCOPES if granted(held, needed)} == allowed


def test_asking_for_an_unknown_scope_is_a_bug_not_a_refusal() -> None:
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        granted(("admin",), "root")

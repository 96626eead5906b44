"""Run input: schema defaults filled in, then validated."""

from __future__ import annotations

import pytest

from overture.core.inputs import prepare_input
from overture.errors import InputInvalid

SCHEMA = {
    "type": "object",
    "required": ["user"],
    "properties": {
        "user": {"type": "string"},
        "nights": {"type": "integer", "default": 2},
        "prefs": {
            "type": "object",
            "default": {},
            "properties": {"seat": {"type": "string", "default": "aisle"}},
        },
    },
}


def test_defaults_are_filled_at_every_depth() -> None:
    assert prepare_input("wf", SCHEMA, {"user": "ana"}) == {
        "user": "ana",
        "nights": 2,
        "prefs": {"seat": "aisle"},
    }


def test_given_values_win_and_the_callers_data_is_not_mutated() -> None:
    data = {"user": "ana", "nights": 5, "prefs": {"seat": "window"}}
    assert prepare_input("wf", SCHEMA, data) == data
    original = {"user": "ana"}
    prepare_input("wf", SCHEMA, original)
    assert original == {"user": "ana"}


def test_invalid_input_lists_every_error() -> None:
    with pytest.raises(InputInvalid) as raised:
        prepare_input("wf", SCHEMA, {"nights": "two"})
    assert raised.value.errors == (
        "(top): 'user' is a required property",
        "nights: 'two' is not of type 'integer'",
    )


def test_no_schema_accepts_anything() -> None:
    assert prepare_input("wf", None, [1, 2]) == [1, 2]

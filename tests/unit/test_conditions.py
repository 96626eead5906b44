"""``when:`` conditions: parsing, errors with positions, JSON semantics of evaluation."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overture.core.conditions import MAX_DEPTH, MAX_LENGTH, evaluate, parse_condition
from overture.core.references import Scope, parse_reference
from overture.errors import TemplateResolutionError, TemplateSyntaxError
from overture.serde import JSON

INPUT: dict[str, JSON] = {
    "tier": "pro",
    "count": 3,
    "ratio": 0.5,
    "name": "ada lovelace",
    "tags": ["a", "b", 1],
    "meta": {"k": 1, "flag": True},
    "empty": "",
    "none": None,
    "yes": True,
}
STEPS: dict[str, JSON] = {"check": {"score": 0.75, "ok": True}, "blank": None}
SCOPE = Scope(input=INPUT, steps=STEPS, run={"id": "r1", "tenant": "acme"})


def check(text: str | bool, scope: Scope = SCOPE) -> bool:
    return evaluate(parse_condition(text), scope)


# ---- parsing ----


def test_bare_wrapped_and_whole_wrapped_references_agree() -> None:
    bare = "input.tier == 'pro' and steps.check.output.score >= 0.5"
    wrapped = "${input.tier} == 'pro' and ${ steps.check.output.score } >= 0.5"
    whole = "${ input.tier == 'pro' and steps.check.output.score >= 0.5 }"
    for text in (bare, wrapped, whole):
        condition = parse_condition(text)
        assert condition.source == text
        assert [r.text for r in condition.references] == [
            "input.tier",
            "steps.check.output.score",
        ]
        assert evaluate(condition, SCOPE) is True


def test_references_are_listed_once_in_order() -> None:
    condition = parse_condition(
        "steps.b.output.x or (input.a in ['x', 1] and steps.b.output.x != run.id) or not true"
    )
    assert condition.references == (
        parse_reference("steps.b.output.x"),
        parse_reference("input.a"),
        parse_reference("run.id"),
    )
    assert [r.step for r in condition.references] == ["b", None, None]


@pytest.mark.parametrize("value", [True, False])
def test_a_yaml_bool_is_a_constant(value: bool) -> None:
    condition = parse_condition(value)
    assert condition.source is value
    assert condition.references == ()
    assert evaluate(condition, SCOPE) is value


def test_conditions_are_hashable_values() -> None:
    text = "input.a in [1, 'x', null] and not input.b"
    assert parse_condition(text).node == parse_condition(f" {text} ").node
    assert hash(parse_condition(text)) == hash(parse_condition(text))


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("secrets.TOKEN == 'x'", "secrets cannot be used in conditions", 0),
        ("input.a == ${secrets.TOKEN}", "secrets cannot be used in conditions", 13),
        ("", "empty condition", 0),
        ("   ", "empty condition", 0),
        ("inputs.tier == 'pro'", "did you mean 'input'?", 0),
        ("env.X", "input, steps, run or secrets", 0),
        ("steps.check.score > 1", "write steps.check.output", 12),
        ("input.a == 1 == 2", "comparisons cannot be chained; join them with 'and'", 13),
        ("(input.a < 1 < 2)", "comparisons cannot be chained", 13),
        ("input.a = 1", "use '==' to compare", 8),
        ("input.a & input.b", "use 'and'", 8),
        ("input.a | input.b", "use 'or'", 8),
        ("input.a == True", "write 'true' in lower case", 11),
        ("NOT input.a", "write 'not' in lower case", 0),
        ("(input.a or input.b", "'(' is never closed", 0),
        ("${input.a == 1", "'${' is never closed", 0),
        ("[1, 2", "'[' is never closed", 0),
        ("(input.a ]", "expected ')', found ']'", 9),
        ("input.a in [input.b]", "a list holds only strings, numbers, true, false or null", 12),
        ("input.a in [1 2]", "expected ']', found '2'", 14),
        ("input.a input.b", "unexpected 'input.b'", 8),
        ("input.a ==", "expected a value, a reference or '(', found 'end of condition'", 10),
        ("and input.a", "expected a value", 0),
        ("not in input.a", "found 'in'", 4),
        ("input.a == 'open", "unterminated string", 11),
        (r"input.a == 'a\tb'", "unknown escape", 13),
        ("input.a == $x", "unexpected '$'", 11),
        ("input.a }", "unexpected '}'", 8),
        ("input.a == -", "unexpected '-'", 11),
    ],
)
def test_syntax_errors_have_positions_and_hints(text: str, message: str, position: int) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_condition(text)
    assert message in str(caught.value)
    assert caught.value.position == position
    assert caught.value.text == text


def test_nesting_is_limited() -> None:
    deep = "(" * MAX_DEPTH + "true" + ")" * MAX_DEPTH
    assert check(deep) is True
    assert check("!" * MAX_DEPTH + "true") is True
    with pytest.raises(TemplateSyntaxError, match="nested more than 50 levels"):
        parse_condition("(" + deep + ")")
    with pytest.raises(TemplateSyntaxError, match="nested more than 50 levels") as caught:
        parse_condition("not " * (MAX_DEPTH + 1) + "true")
    assert caught.value.position == 4 * MAX_DEPTH


def test_length_is_limited() -> None:
    with pytest.raises(TemplateSyntaxError, match="longer than 4096 characters"):
        parse_condition("true" + " " * MAX_LENGTH)


def test_a_long_flat_chain_is_fine() -> None:
    chain = "||".join(["0"] * 1300) + "||input.yes"
    assert len(chain) <= MAX_LENGTH
    assert check(chain) is True


# ---- evaluation ----


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null", False),
        ("false", False),
        ("0", False),
        ("0.0", False),
        ("''", False),
        ("[]", False),
        ("input.empty", False),
        ("input.none", False),
        ("steps.blank.output", False),
        ("true", True),
        ("1", True),
        ("-0.5", True),
        ("'0'", True),
        ("' '", True),
        ("[0]", True),
        ("input.meta", True),
        ("input.tags", True),
    ],
)
def test_truthiness_is_json_truthiness(text: str, expected: bool) -> None:
    assert check(text) is expected
    assert check(f"!{text}") is not expected


def test_an_empty_object_is_false() -> None:
    assert check("input.o", Scope(input={"o": {}}, steps={}, run={})) is False


@pytest.mark.parametrize(
    "text",
    [
        "input.missing == null",
        "input.meta.nope == null",
        "input.tags[7] == null",
        "input.name.first == null",
        "steps.never.output == null",
        "steps.never.output.x == null",
        "not steps.never.output",
        "run.workflow == null",
    ],
)
def test_missing_data_reads_as_null(text: str) -> None:
    assert check(text) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == 1.0", True),
        ("input.count == 3.0", True),
        ("true == 1", False),
        ("false == 0", False),
        ("true != 1", True),
        ("input.yes == true", True),
        ("input.meta.flag == 1", False),
        ("null == false", False),
        ("null == null", True),
        ("'1' == 1", False),
        ("[1, 2.0] == [1.0, 2]", True),
        ("[true] == [1]", False),
        ("input.tags == ['a', 'b', 1]", True),
        ("input.tags == ['a', 'b']", False),
        ("input.meta == input.meta", True),
        ("steps.check.output != input.meta", True),
        ("'it\\'s' == \"it's\"", True),
        ("'a\\nb' == 'a\\\\nb'", False),
        ("1e2 == 100", True),
        ("-2 == -2.0", True),
    ],
)
def test_equality_is_json_equality(text: str, expected: bool) -> None:
    assert check(text) is expected


def test_object_equality_ignores_key_order_and_bools_stay_bools() -> None:
    scope = Scope(
        input={"a": {"x": 1, "y": [True]}, "b": {"y": [True], "x": 1.0}, "c": {"x": 1, "y": [1]}},
        steps={},
        run={},
    )
    assert check("input.a == input.b", scope) is True
    assert check("input.a == input.c", scope) is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input.count > 2", True),
        ("input.count >= 3", True),
        ("input.count < 3", False),
        ("input.ratio <= 0.5", True),
        ("steps.check.output.score > input.ratio", True),
        ("'abc' < 'abd'", True),
        ("'B' < 'a'", True),
        ("input.tier >= 'pro'", True),
    ],
)
def test_ordering(text: str, expected: bool) -> None:
    assert check(text) is expected


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("input.tier < 3", "string with number"),
        ("3 > input.tier", "number with string"),
        ("input.missing > 1", "null with number"),
        ("input.yes > 0", "boolean with number"),
        ("input.tags < [1]", "list with list"),
        ("input.meta >= input.meta", "object with object"),
    ],
)
def test_ordering_other_types_is_an_error(text: str, kinds: str) -> None:
    with pytest.raises(TemplateResolutionError, match=f"cannot compare {kinds} in") as caught:
        check(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'a' in input.tags", True),
        ("1.0 in input.tags", True),
        ("true in [1, 2]", False),
        ("'c' in input.tags", False),
        ("'c' not in input.tags", True),
        ("'love' in input.name", True),
        ("'Love' in input.name", False),
        ("'' in input.name", True),
        ("'k' in input.meta", True),
        ("'z' in input.meta", False),
        ("'z' not in input.meta", True),
        ("input.tier in ['free', 'pro']", True),
        ("input.missing in [null]", True),
        ("not 'a' in input.tags", False),
    ],
)
def test_membership(text: str, expected: bool) -> None:
    assert check(text) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 in input.name", "cannot look for number in string"),
        ("null in input.meta", "cannot look for null in object"),
        ("'a' in input.count", "cannot look for a value in number"),
        ("'a' not in input.missing", "cannot look for a value in null"),
        ("'a' in true", "cannot look for a value in boolean"),
    ],
)
def test_membership_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateResolutionError, match=message):
        check(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true and false", False),
        ("true && true", True),
        ("false or true", True),
        ("false || false", False),
        ("not false and false", False),
        ("not (false and false)", True),
        ("true or false and false", True),
        ("(true or false) and false", False),
        ("not input.count == 4", True),
        ("!input.none && input.yes", True),
        ("input.tier == 'pro' and 'a' in input.tags or false", True),
    ],
)
def test_boolean_operators_and_precedence(text: str, expected: bool) -> None:
    assert check(text) is expected


def test_and_or_short_circuit() -> None:
    assert check("false and input.tier < 3") is False
    assert check("input.yes or input.tier < 3") is True
    assert check("input.count == 4 and 'a' in input.missing") is False
    with pytest.raises(TemplateResolutionError):
        check("true and input.tier < 3")


def test_a_step_that_has_not_succeeded_has_null_output() -> None:
    scope = Scope(input={}, steps={}, run={})
    assert check("steps.check.output.ok", scope) is False
    assert check("steps.check.output.ok", SCOPE) is True


# ---- properties ----


def quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


literals = st.sampled_from(
    ["true", "false", "null", "0", "1", "-2.5", "''", "'x'", "[]", "[1, 'a']", "input.yes"]
)
expressions: st.SearchStrategy[str] = st.recursive(
    literals,
    lambda inner: st.one_of(
        st.builds(lambda e: f"not {e}", inner),
        st.builds(lambda e: f"({e})", inner),
        st.builds(lambda a, b: f"{a} and {b}", inner, inner),
        st.builds(lambda a, b: f"{a} || {b}", inner, inner),
        st.builds(lambda a, b: f"({a}) == ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) != ({b})", inner, inner),
    ),
    max_leaves=12,
)


@settings(deadline=None)
@given(expressions)
def test_property_double_negation(text: str) -> None:
    assert check(f"not not ({text})") is check(text)
    assert check(f"!!({text})") is check(text)


@given(literals.filter(lambda s: "input" not in s), literals.filter(lambda s: "input" not in s))
def test_property_and_or_commute_for_literals(a: str, b: str) -> None:
    assert check(f"{a} and {b}") is check(f"{b} and {a}")
    assert check(f"{a} or {b}") is check(f"{b} or {a}")


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
same_kind_pairs = st.one_of(
    st.tuples(st.integers(-(2**53), 2**53), st.integers(-(2**53), 2**53)),
    st.tuples(st.text(), st.text()),
)


@given(same_kind_pairs, st.sampled_from(sorted(OPERATORS)))
def test_property_comparisons_agree_with_python(pair: tuple[Any, Any], op: str) -> None:
    left, right = pair
    expected = OPERATORS[op](left, right)
    spell = quote if isinstance(left, str) else str
    assert check(f"{spell(left)} {op} {spell(right)}") is expected
    scope = Scope(input={"l": left, "r": right}, steps={}, run={})
    assert check(f"input.l {op} input.r", scope) is expected

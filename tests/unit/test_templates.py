"""References and ``${...}`` templates: parsing, lookup, rendering, sealed secrets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overture.core.references import Reference, Scope, lookup, parse_reference
from overture.core.templates import (
    parse_template,
    references,
    render,
    reveal,
    template_problems,
)
from overture.errors import SecretMissing, TemplateResolutionError, TemplateSyntaxError
from overture.serde import JSON, dumps_text, loads


def scope(input: JSON = None, steps: dict[str, JSON] | None = None) -> Scope:
    run: dict[str, JSON] = {
        "id": "run-1",
        "workflow": "wf",
        "version": 3,
        "tenant": "acme",
        "correlation_id": None,
    }
    return Scope(input=input, steps=steps or {}, run=run)


# ---- references ----


@pytest.mark.parametrize(
    ("text", "root", "path"),
    [
        ("input", "input", ()),
        ("input.user.id", "input", ("user", "id")),
        ("input.items[0]['a key']", "input", ("items", 0, "a key")),
        ('input["it\'s"]', "input", ("it's",)),
        (r"input['a\'b\\c\nd']", "input", ("a'b\\c\nd",)),
        ("input.x-y_z", "input", ("x-y_z",)),
        ("steps.fetch.output", "steps", ("fetch", "output")),
        ("steps.fetch-2.output.items[3].name", "steps", ("fetch-2", "output", "items", 3, "name")),
        ("run.id", "run", ("id",)),
        ("run.correlation_id", "run", ("correlation_id",)),
        ("secrets.API_TOKEN", "secrets", ("API_TOKEN",)),
    ],
)
def test_parse_reference(text: str, root: str, path: tuple[str | int, ...]) -> None:
    ref = parse_reference(f"  {text} ")
    assert (ref.root, ref.path, ref.text) == (root, path, text)


def test_reference_step() -> None:
    assert parse_reference("steps.fetch.output.x").step == "fetch"
    assert parse_reference("input.steps").step is None
    assert str(parse_reference("run.id")) == "run.id"


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("inputs.x", "did you mean 'input'?", 0),
        ("step.a.output", "did you mean 'steps'?", 0),
        ("env.HOME", "input, steps, run or secrets", 0),
        ("steps.x", "write steps.x.output", 7),
        ("steps.x.result", "write steps.x.output", 8),
        ("steps", "expected a step id", 5),
        ("steps[0].output", "expected a step id", 5),
        ("run", "expected a field after 'run'", 3),
        ("run.started", "not a run field; use one of run.correlation_id, run.id", 4),
        ("run.id.x", "not a run field", 4),
        ("secrets", "one identifier", 7),
        ("secrets.A.B", "one identifier", 8),
        ("secrets[0]", "one identifier", 7),
        ("input.", "expected a name after '.'", 6),
        ("input.a[", "expected an index", 8),
        ("input.a[x]", "expected an index", 8),
        ("input.a[-1]", "expected an index", 8),
        ("input.a[0", "expected ']'", 9),
        ("input['a", "unterminated string", 6),
        (r"input['\t']", "unknown escape", 7),
        ("input.x y", "unexpected 'y'", 8),
        ("", "expected a reference", 0),
        ("1abc", "expected a reference", 0),
    ],
)
def test_parse_reference_errors(text: str, message: str, position: int) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_reference(text)
    assert message in str(caught.value)
    assert caught.value.position == position
    assert caught.value.text == text


DATA: dict[str, JSON] = {"user": {"id": 7, "tags": ["a", "b"]}, "name": "ada", "n": 2.5}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input", DATA),
        ("input.user", {"id": 7, "tags": ["a", "b"]}),
        ("input.user.tags[1]", "b"),
        ("steps.fetch.output", {"items": [1, 2]}),
        ("steps.fetch.output.items[0]", 1),
        ("steps.empty.output", None),
        ("run.tenant", "acme"),
        ("run.correlation_id", None),
    ],
)
def test_lookup(text: str, expected: JSON) -> None:
    found = lookup(scope(DATA, {"fetch": {"items": [1, 2]}, "empty": None}), parse_reference(text))
    assert found == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input.user_id", "input has no key 'user_id' in input.user_id"),
        ("input.user.email", "input.user has no key 'email'"),
        ("steps.other.output", "step 'other' has no output (it has not succeeded)"),
        ("steps.fetch.output.items[3]", "index 3 is out of range (length 2) in "),
        ("input.name[0]", "cannot index input.name (string) with 0"),
        ("input.name.first", "cannot index input.name (string)"),
        ("input.n.x", "cannot index input.n (number)"),
        ("input.user.tags.x", "cannot index input.user.tags (a list) with 'x'"),
        ("input.user[0]", "cannot index input.user (an object) with [0]"),
        ("steps.fetch.output['items'][9]", "index 9 is out of range"),
        ("secrets.TOKEN", "secrets cannot be looked up"),
    ],
)
def test_lookup_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateResolutionError) as caught:
        lookup(scope(DATA, {"fetch": {"items": [1, 2]}}), parse_reference(text))
    assert message in str(caught.value)


def test_lookup_never_treats_a_bool_as_an_index() -> None:
    ref = Reference(root="input", path=(True,), text="input[true]")
    with pytest.raises(TemplateResolutionError, match="a list"):
        lookup(scope(["first", "second"]), ref)


def test_lookup_missing_run_field() -> None:
    bare = Scope(input=None, steps={}, run={})
    with pytest.raises(TemplateResolutionError, match="run has no field 'id'"):
        lookup(bare, parse_reference("run.id"))


# ---- parsing templates ----


def test_parse_template_parts() -> None:
    template = parse_template("Hello ${ input.name }, see ${steps.a.output.url}!")
    assert template.source == "Hello ${ input.name }, see ${steps.a.output.url}!"
    assert template.parts == (
        "Hello ",
        parse_reference("input.name"),
        ", see ",
        parse_reference("steps.a.output.url"),
        "!",
    )
    assert not template.whole


@pytest.mark.parametrize("text", ["${input.a}", "${  input.a  }", "${input.a }"])
def test_whole_template(text: str) -> None:
    template = parse_template(text)
    assert template.whole
    assert template.parts == (parse_reference("input.a"),)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("$${input.a}", ("${input.a}",)),
        ("cost: $5 and $${x} ${input.a}", ("cost: $5 and ${x} ", parse_reference("input.a"))),
        ("$$${input.a}", ("$${input.a}",)),
        ("a } b $ c {", ("a } b $ c {",)),
        ("", ()),
    ],
)
def test_escapes_and_stray_characters(text: str, parts: tuple[object, ...]) -> None:
    assert parse_template(text).parts == parts


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("${input.a", "unterminated '${'", 0),
        ("abc ${", "unterminated '${'", 4),
        ("x ${}", "empty '${}'", 2),
        ("x ${   }", "empty '${}'", 2),
        ("hi ${inputs.name}", "did you mean 'input'?", 5),
        ("${input.a + 1}", "expected '}' after 'input.a', found '+'", 10),
        ("${input.a | upper}", "filters are not supported", 10),
        ("${steps.a.result}", "steps.a.output", 10),
        ("${input['}'}", "expected ']'", 11),
        ("ok ${input.a} then ${run.nope}", "not a run field", 25),
    ],
)
def test_template_syntax_errors(text: str, message: str, position: int) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_template(text)
    assert message in str(caught.value)
    assert caught.value.position == position
    assert f"column {position + 1}" in str(caught.value)


def test_template_problems_locates_each_bad_string() -> None:
    value: JSON = {
        "url": "${input.url}",
        "headers": {"${not a template": "${inputs.token}"},
        "items": ["fine", "${", {"deep": ["${}"]}],
        "count": 3,
    }
    problems = template_problems(value)
    assert [path for path, _ in problems] == [
        ("headers", "${not a template"),
        ("items", 1),
        ("items", 2, "deep", 0),
    ]
    assert all(isinstance(error, TemplateSyntaxError) for _, error in problems)
    assert template_problems({"a": "${input.a}", "b": [1, None, True]}) == []


def test_references_finds_step_dependencies() -> None:
    value: JSON = {
        "prompt": "Summarise ${steps.fetch.output.body} for ${input.user}",
        "opts": [{"model": "${steps.pick.output}"}, "${secrets.KEY}"],
        "${steps.ignored.output}": "keys are never templates",
    }
    refs = list(references(value))
    assert [r.text for r in refs] == [
        "steps.fetch.output.body",
        "input.user",
        "steps.pick.output",
        "secrets.KEY",
    ]
    assert {r.step for r in refs} - {None} == {"fetch", "pick"}


def test_references_raises_on_a_bad_template() -> None:
    with pytest.raises(TemplateSyntaxError):
        list(references(["${input.a}", "${oops"]))


# ---- rendering ----


@pytest.mark.parametrize(
    "value",
    [{"a": [1, {"b": None}]}, [1, "two", 3.0], 42, 2.5, True, False, None, "text", [], {}],
)
def test_whole_reference_keeps_the_json_type(value: JSON) -> None:
    rendered = render("${input.v}", scope({"v": value}))
    assert rendered == value
    assert type(rendered) is type(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "[plain]"),
        (None, "[null]"),
        (True, "[true]"),
        (False, "[false]"),
        (3, "[3]"),
        (2.5, "[2.5]"),
        ({"a": 1, "b": [True, None]}, '[{"a":1,"b":[true,null]}]'),
        ([1, "x"], '[[1,"x"]]'),
        ("", "[]"),
    ],
)
def test_interpolation_formats_compact_json(value: JSON, text: str) -> None:
    assert render("[${input.v}]", scope({"v": value})) == text


def test_render_walks_nested_values_and_leaves_keys_alone() -> None:
    value: JSON = {
        "url": "https://api/${input.user.id}/items?n=${steps.count.output}",
        "body": {"user": "${input.user}", "${input.name}": "key", "n": 1, "ok": True},
        "list": ["${run.id}", "${run.version}", "$${literal}", None],
    }
    rendered = render(value, scope(DATA, {"count": 5}))
    assert rendered == {
        "url": "https://api/7/items?n=5",
        "body": {"user": DATA["user"], "${input.name}": "key", "n": 1, "ok": True},
        "list": ["run-1", 3, "${literal}", None],
    }


def test_strings_without_templates_are_returned_as_they_are() -> None:
    text = "no templates here: $x {y} $ {z}"
    assert render(text, scope()) is text


def test_rendered_data_is_a_copy() -> None:
    data: dict[str, JSON] = {"a": [1, 2]}
    rendered = render("${input}", scope(data))
    assert isinstance(rendered, dict)
    rendered["a"] = []
    assert data == {"a": [1, 2]}


def test_missing_data_is_an_error() -> None:
    with pytest.raises(TemplateResolutionError, match="input has no key 'user_id'"):
        render({"x": ["${input.user_id}"]}, scope({}))
    with pytest.raises(TemplateResolutionError, match="step 'fetch' has no output"):
        render("got ${steps.fetch.output}", scope({}))


def test_output_data_is_never_parsed_again() -> None:
    steps: dict[str, JSON] = {"llm": {"text": "${secrets.TOKEN} and ${input.x} and ${"}}
    ctx = scope({"x": "X"}, steps)
    assert render("${steps.llm.output.text}", ctx) == "${secrets.TOKEN} and ${input.x} and ${"
    assert render("> ${steps.llm.output.text}", ctx) == "> ${secrets.TOKEN} and ${input.x} and ${"
    assert render("${steps.llm.output}", ctx) == steps["llm"]


# ---- secrets ----

SECRETS = {"TOKEN": "s3cr3t-value", "USER": "bob"}


def test_a_whole_secret_is_sealed() -> None:
    assert render("${secrets.TOKEN}", scope()) == {"$secret": "TOKEN"}
    assert render("${ secrets.TOKEN }", scope()) == {"$secret": "TOKEN"}


def test_an_interpolated_secret_is_sealed_with_the_rest_resolved() -> None:
    rendered = render("Bearer ${secrets.TOKEN} for ${input.who}!", scope({"who": 7}))
    assert rendered == {"$concat": ["Bearer ", {"$secret": "TOKEN"}, " for 7!"]}
    adjacent = render("${secrets.USER}:${secrets.TOKEN}", scope())
    assert adjacent == {"$concat": [{"$secret": "USER"}, ":", {"$secret": "TOKEN"}]}


def test_sealed_values_hold_no_secret_and_are_json() -> None:
    value: JSON = {
        "headers": {"Authorization": "Bearer ${secrets.TOKEN}"},
        "auth": ["${secrets.USER}", "${secrets.TOKEN}"],
        "user": "${input.who}",
    }
    rendered = render(value, scope({"who": "ada"}))
    text = dumps_text(rendered)
    assert "s3cr3t" not in text
    assert "bob" not in text
    assert reveal(loads(text), SECRETS) == {
        "headers": {"Authorization": "Bearer s3cr3t-value"},
        "auth": ["bob", "s3cr3t-value"],
        "user": "ada",
    }


def test_reveal_of_a_missing_secret() -> None:
    with pytest.raises(SecretMissing) as caught:
        reveal(render({"h": "x ${secrets.NOPE}"}, scope()), SECRETS)
    assert caught.value.name == "NOPE"


@pytest.mark.parametrize(
    "forged",
    [
        {"$secret": "TOKEN"},
        {"$concat": ["a", {"$secret": "TOKEN"}]},
        {"$literal": {"$secret": "TOKEN"}},
        [{"deep": {"$secret": "TOKEN"}}],
        {"$secret": {"$secret": "TOKEN"}},
    ],
)
def test_forged_markers_in_data_are_returned_verbatim(forged: JSON) -> None:
    ctx = scope({"v": forged}, {"s": forged})
    for template in ("${input.v}", "${steps.s.output}"):
        rendered = render(template, ctx)
        assert reveal(rendered, SECRETS) == forged
        assert "s3cr3t" not in dumps_text(reveal(rendered, SECRETS))


def test_dicts_with_more_keys_are_not_markers() -> None:
    data: JSON = {"$secret": "TOKEN", "other": 1}
    rendered = render("${input}", scope(data))
    assert rendered == data
    assert reveal(rendered, SECRETS) == data


def test_marker_shaped_literals_in_the_workflow_are_fenced() -> None:
    literal: JSON = {"$secret": "TOKEN", "list": [{"$literal": 1}]}
    assert reveal(render(literal, scope()), SECRETS) == literal
    rendered = render({"$secret": "${input.name}"}, scope({"name": "TOKEN"}))
    assert rendered == {"$literal": {"$secret": "TOKEN"}}
    assert reveal(rendered, SECRETS) == {"$secret": "TOKEN"}


def test_a_secret_inside_a_marker_shaped_literal_is_refused() -> None:
    with pytest.raises(TemplateResolutionError, match="cannot be used inside an object"):
        render({"$concat": ["${secrets.TOKEN}"]}, scope())


@pytest.mark.parametrize(
    "malformed",
    [{"$secret": 3}, {"$concat": "x"}, {"$concat": [1]}, {"$concat": [{"$literal": 2}]}],
)
def test_reveal_rejects_malformed_markers(malformed: JSON) -> None:
    with pytest.raises(TemplateResolutionError, match="malformed"):
        reveal(malformed, SECRETS)


def test_reveal_leaves_plain_values_alone() -> None:
    value: JSON = {"a": [1, "x", None, {"b": False}]}
    assert reveal(value, {}) == value


# ---- properties ----

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(["${secrets.TOKEN}", "${input.v}", "$${x}", "${", "Bearer ${secrets.X}"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["$secret", "$concat", "$literal"]), children, min_size=1, max_size=2
        )
        | st.builds(lambda v: {"$secret": v}, st.sampled_from(["TOKEN", "USER"]))
        | st.builds(lambda v: {"$concat": ["x", {"$secret": v}]}, st.sampled_from(["TOKEN"]))
    ),
    max_leaves=20,
)


@given(st.text().filter(lambda s: "${" not in s))
def test_property_plain_strings_render_to_themselves(text: str) -> None:
    assert render(text, scope()) == text


@settings(deadline=None)
@given(json_values)
def test_property_data_round_trips_through_render_and_reveal(data: JSON) -> None:
    ctx = scope({"v": data}, {"s": data})
    assert reveal(render("${input.v}", ctx), {}) == data
    assert reveal(render("${steps.s.output}", ctx), SECRETS) == data
    dumps_text(render({"x": ["${input.v}"]}, ctx))  # always serialisable

"""The safe YAML/JSON loader: what it accepts, what it refuses, and where it says things are."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from overture.core import document
from overture.core.document import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    Document,
    Position,
    load_document,
    read_document,
)
from overture.errors import DocumentInvalid, Problem


@pytest.fixture(autouse=True, params=["libyaml", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test with both PyYAML parsers: libyaml is optional at install time."""
    if request.param == "pure-python":
        monkeypatch.setattr(document, "_LOADER", yaml.SafeLoader)


def refused(
    content: str | bytes,
    code: str,
    *,
    source: str | None = None,
    max_bytes: int = MAX_DOCUMENT_BYTES,
) -> Problem:
    """Load `content`, expect a refusal with `code`, and return its problem."""
    with pytest.raises(DocumentInvalid) as info:
        load_document(content, source=source, max_bytes=max_bytes)
    assert info.value.problem.code == code, str(info.value)
    return info.value.problem


WORKFLOW = """\
# A workflow as people write it.
name: fetch-and-summarise
on: push
steps:
  - id: fetch
    uses: http
    with:
      url: https://example.com
      retries: 3
  - id: summarise
    uses: llm
    with:
      prompt: |
        Summarise this.
      temperature: 0.2
"""


# --- data and positions ------------------------------------------------------------------------


def test_workflow_data_is_plain_json() -> None:
    doc = load_document(WORKFLOW, source="wf.yaml")
    assert doc.source == "wf.yaml"
    assert doc.data == {
        "name": "fetch-and-summarise",
        "on": "push",
        "steps": [
            {
                "id": "fetch",
                "uses": "http",
                "with": {"url": "https://example.com", "retries": 3},
            },
            {
                "id": "summarise",
                "uses": "llm",
                "with": {"prompt": "Summarise this.\n", "temperature": 0.2},
            },
        ],
    }


def test_positions_point_at_keys_and_items() -> None:
    doc = load_document(WORKFLOW)
    assert doc.positions[()] == Position(2, 1)
    assert doc.positions[("on",)] == Position(3, 1)
    assert doc.positions[("steps",)] == Position(4, 1)
    assert doc.positions[("steps", 0)] == Position(5, 5)
    assert doc.positions[("steps", 0, "uses")] == Position(6, 5)
    assert doc.positions[("steps", 0, "with", "retries")] == Position(9, 7)
    assert doc.positions[("steps", 1)] == Position(10, 5)
    assert doc.positions[("steps", 1, "uses")] == Position(11, 5)
    assert doc.positions[("steps", 1, "with", "temperature")] == Position(15, 7)


def test_locate_falls_back_to_the_longest_known_prefix() -> None:
    doc = load_document(WORKFLOW)
    assert doc.locate(("steps", 1, "uses")) == Position(11, 5)
    assert doc.locate(("steps", 1, "with", "missing", 0)) == Position(12, 5)
    assert doc.locate(("nope",)) == doc.positions[()]
    assert Document(data=None, positions={}, source=None).locate(("a",)) is None


def test_positions_in_flow_style_and_json() -> None:
    doc = load_document('{"a": [10, {"b": null}],\n "c": "x"}')
    assert doc.data == {"a": [10, {"b": None}], "c": "x"}
    assert doc.positions[("a",)] == Position(1, 2)
    assert doc.positions[("a", 1)] == Position(1, 12)
    assert doc.positions[("a", 1, "b")] == Position(1, 13)
    assert doc.positions[("c",)] == Position(2, 2)


def test_columns_count_characters_not_bytes() -> None:
    doc = load_document("é: 1\nß: {ü: 2}")
    assert doc.positions[("ß", "ü")] == Position(2, 5)


# --- scalars: the YAML 1.2 core schema ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("~", None),
        ("", None),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ("0", 0),
        ("-12", -12),
        ("+7", 7),
        ("007", 7),
        ("0o17", 15),
        ("0x1F", 31),
        ("1.5", 1.5),
        ("-2.0e3", -2000.0),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("1.", 1.0),
        # YAML 1.1 would read these as booleans, sexagesimals, octals, dates or floats.
        ("on", "on"),
        ("off", "off"),
        ("yes", "yes"),
        ("no", "no"),
        ("y", "y"),
        ("n", "n"),
        ("NO", "NO"),
        ("1:30", "1:30"),
        ("017_0", "017_0"),
        ("1_000", "1_000"),
        ("2024-01-01", "2024-01-01"),
        ("-0x1F", "-0x1F"),
        ("nulll", "nulll"),
        ("hello world", "hello world"),
    ],
)
def test_plain_scalars_resolve_with_the_core_schema(text: str, expected: object) -> None:
    data = load_document(f"v: {text}\n").data
    assert isinstance(data, dict)
    assert data["v"] == expected
    assert type(data["v"]) is type(expected)


def test_norway_problem() -> None:
    doc = load_document("on: push\ncountry: NO\nflags: [yes, no, on, off, y, n]\n")
    assert doc.data == {
        "on": "push",
        "country": "NO",
        "flags": ["yes", "no", "on", "off", "y", "n"],
    }


def test_quoted_and_block_scalars_are_strings() -> None:
    doc = load_document("a: '1'\nb: \"true\"\nc: 'null'\nd: |\n  42\ne: >-\n  3.5\n")
    assert doc.data == {"a": "1", "b": "true", "c": "null", "d": "42\n", "e": "3.5"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!!str 123", "123"),
        ("!!str true", "true"),
        ("!!str .inf", ".inf"),
        ('!!int "7"', 7),
        ("!!int 0x10", 16),
        ("!!float 1", 1.0),
        ("!!bool 'false'", False),
        ("!!null ''", None),
        ("!!null", None),
        ("!!map {a: 1}", {"a": 1}),
        ("!!seq [1]", [1]),
        ("!<tag:yaml.org,2002:str> 5", "5"),
    ],
)
def test_standard_tags_apply(text: str, expected: object) -> None:
    data = load_document(f"v: {text}\n").data
    assert isinstance(data, dict)
    assert data["v"] == expected
    assert type(data["v"]) is type(expected)


@pytest.mark.parametrize(
    "text", ["!!int abc", "!!int 1.5", "!!bool yes", "!!null x", "!!float 0x1"]
)
def test_value_that_does_not_fit_its_tag(text: str) -> None:
    problem = refused(f"a: 1\nv: {text}\n", "bad_scalar")
    assert (problem.line, problem.column) == (2, 4)


def test_integer_too_long_for_python() -> None:
    assert refused("v: " + "9" * 5000, "bad_scalar").line == 1


@pytest.mark.parametrize(
    "text", [".inf", "-.Inf", "+.INF", ".nan", ".NaN", "1e999", "!!float .nan"]
)
def test_non_finite_numbers_are_not_json(text: str) -> None:
    assert refused(f"a: 1\nb: [{text}]\n", "not_json").line == 2


# --- keys --------------------------------------------------------------------------------------


def test_keys_are_the_scalar_text() -> None:
    doc = load_document("1: a\nnull: b\ntrue: c\n~: d\n0x1F: e\n'q': f\n")
    assert doc.data == {"1": "a", "null": "b", "true": "c", "~": "d", "0x1F": "e", "q": "f"}
    assert doc.positions[("0x1F",)] == Position(5, 1)


@pytest.mark.parametrize(
    ("text", "line"),
    [("a: 1\n? [1, 2]\n: x\n", 2), ("a: 1\n? {b: 1}\n: x\n", 2), ("{a: 1, [1]: 2}", 1)],
)
def test_collection_keys_are_refused(text: str, line: int) -> None:
    assert refused(text, "bad_key").line == line


def test_duplicate_key_names_both_lines() -> None:
    problem = refused("name: a\nsteps: []\nname: b\n", "duplicate_key", source="wf.yaml")
    assert (problem.file, problem.line, problem.column) == ("wf.yaml", 3, 1)
    assert "'name'" in problem.message
    assert "line 1" in problem.message


def test_duplicate_nested_key() -> None:
    text = "steps:\n  - id: a\n    with:\n      url: x\n\n      url: y\n"
    problem = refused(text, "duplicate_key")
    assert (problem.line, problem.column) == (6, 7)
    assert "'url'" in problem.message
    assert "line 4" in problem.message


def test_keys_that_differ_only_in_yaml_spelling_are_duplicates() -> None:
    assert refused("1: a\n'1': b\n", "duplicate_key").line == 2


def test_same_key_in_different_mappings_is_fine() -> None:
    assert load_document("- id: a\n- id: b\n").data == [{"id": "a"}, {"id": "b"}]


# --- tags, anchors and aliases -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('!!python/object/apply:os.system ["echo hi"]', "!!python/object/apply:os.system"),
        ("!!python/name:os.system ''", "!!python/name:os.system"),
        ("!Ref other", "!Ref"),
        ("!!binary aGk=", "!!binary"),
        ("!!timestamp 2024-01-01", "!!timestamp"),
        ("!!set {a: null}", "!!set"),
        ("!!omap [a: 1]", "!!omap"),
        ("! x", "!"),
        ("!!seq {a: 1}", "!!seq"),
        ("!!map [1]", "!!map"),
        ("!!str [1]", "!!str"),
    ],
)
def test_non_standard_tags_are_refused(text: str, shown: str) -> None:
    problem = refused(f"a: 1\nb: {text}\n", "tag")
    assert problem.line == 2
    assert shown in problem.message


def test_tagged_key_is_refused() -> None:
    assert refused("a: 1\n!Ref b: 2\n", "tag").line == 2


def test_python_object_tag_executes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "system", calls.append)
    marker = tmp_path / "pwned"
    refused(f'!!python/object/apply:os.system ["touch {marker}"]', "tag")
    refused(f"x: !!python/object/apply:subprocess.call [[touch, '{marker}']]", "tag")
    assert calls == []
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: &anchor 2\n", 2),
        ("a: 1\nb: *anchor\n", 2),
        ("base: {x: 1}\nchild:\n  <<: *base\n", 3),
        ("- &a [1]\n", 1),
    ],
)
def test_anchors_and_aliases_are_refused(text: str, line: int) -> None:
    assert refused(text, "alias").line == line


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    started = time.perf_counter()
    problem = refused("\n".join(lines), "alias")
    assert time.perf_counter() - started < 1.0
    assert problem.line == 1


# --- structure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", ["", "   \n\n", "# only a comment\n# and another\n", "---\n", b"\xef\xbb\xbf"]
)
def test_empty_documents(content: str | bytes) -> None:
    refused(content, "empty")


def test_explicit_null_is_not_empty() -> None:
    assert load_document("null\n").data is None


def test_multiple_documents() -> None:
    assert refused("a: 1\n---\nb: 2\n", "multiple_documents").line == 2
    assert refused("--- 1\n--- 2\n", "multiple_documents").line == 2


def test_single_explicit_document_is_fine() -> None:
    assert load_document("---\na: 1\n...\n").data == {"a": 1}


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("a: 1\nb: c: d\n", 2, 5),
        ("a: [1, 2\nb: 3\n", 2, 2),
        ("a: 'unterminated\n", 2, 1),
        ("a: 1\n b: 2\n", 2, 3),
    ],
)
def test_syntax_errors_are_located(text: str, line: int, column: int) -> None:
    problem = refused(text, "syntax", source="wf.yaml")
    assert (problem.file, problem.line, problem.column) == ("wf.yaml", line, column)
    assert problem.message.startswith("invalid YAML: ")


def test_syntax_error_says_where_the_construct_began() -> None:
    problem = refused("a: [1, 2\nb: 3\n", "syntax")
    assert "flow sequence at line 1" in problem.message


def test_forbidden_character_is_located() -> None:
    problem = refused("a: 1\nb: é\x07\n", "syntax")
    assert (problem.line, problem.column) == (2, 5)
    assert "U+0007" in problem.message


def test_nesting_up_to_the_limit_is_fine() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    data = load_document(text).data
    for _ in range(MAX_DEPTH - 1):
        assert isinstance(data, list)
        data = data[0]
    assert data == []


def test_nesting_beyond_the_limit() -> None:
    deeper = MAX_DEPTH + 1
    refused("[" * deeper + "]" * deeper, "too_deep")
    block = "".join(f"{'  ' * level}k:\n" for level in range(deeper)) + "  " * deeper + "k: 1\n"
    assert refused(block, "too_deep").line == deeper


def test_ten_thousand_open_brackets() -> None:
    refused("[" * 10_000, "too_deep")
    refused("[" * 10_000 + "]" * 10_000, "too_deep", source="deep.json")
    refused('{"a": ' * 10_000, "too_deep")


# --- bytes, encodings and size -----------------------------------------------------------------


def test_bytes_with_and_without_bom() -> None:
    assert load_document(b"a: 1\n").data == {"a": 1}
    doc = load_document("\ufeffa: 1\n".encode())
    assert doc.data == {"a": 1}
    assert doc.positions[("a",)] == Position(1, 1)
    assert load_document("\ufeffa: 1\n").data == {"a": 1}


def test_not_utf8() -> None:
    problem = refused(b"a: 1\nb: caf\xe9\n", "not_utf8", source="wf.yaml")
    assert (problem.file, problem.line, problem.column) == ("wf.yaml", 2, 7)
    refused("\ufeffa: 1\n".encode("utf-16"), "not_utf8")
    problem = refused("a: 1\nb: é\ud800\n", "not_utf8")
    assert (problem.line, problem.column) == (2, 5)


def test_too_large_is_checked_before_decoding() -> None:
    problem = refused(b"\xff" * 101, "too_large", max_bytes=100)
    assert "101" in problem.message
    assert "100" in problem.message
    assert load_document(b"a: " + b"x" * 97, max_bytes=100).data == {"a": "x" * 97}


def test_too_large_counts_utf8_bytes_of_text() -> None:
    text = "a: " + "é" * 60  # 63 characters, 123 bytes
    refused(text, "too_large", max_bytes=100)


# --- files -------------------------------------------------------------------------------------


def test_read_document(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW, encoding="utf-8")
    doc = read_document(path)
    assert doc.source == str(path)
    assert doc.positions[("steps", 1, "uses")] == Position(11, 5)


def test_read_document_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("a: 1\na: 2\n", encoding="utf-8")
    with pytest.raises(DocumentInvalid) as info:
        read_document(str(path))
    assert info.value.problem.file == str(path)
    assert str(info.value).startswith(f"{path}:2:1: ")


def test_two_mebibyte_file_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: 1\n" * (2 * 1024 * 1024 // 5 + 1))

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened")

    # A module global shadows the builtin for the loader's module only.
    monkeypatch.setattr(document, "open", no_open, raising=False)
    with pytest.raises(DocumentInvalid) as info:
        read_document(path)
    assert info.value.problem.code == "too_large"
    assert info.value.problem.file == str(path)
    assert "2,097,155" in info.value.problem.message


def test_read_document_respects_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("a: 12345\n", encoding="utf-8")
    with pytest.raises(DocumentInvalid) as info:
        read_document(path, max_bytes=5)
    assert info.value.problem.code == "too_large"


@pytest.mark.parametrize("name", ["missing.yaml", "."])
def test_unreadable_paths(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(DocumentInvalid) as info:
        read_document(path)
    assert info.value.problem.code == "unreadable"
    assert str(path) in info.value.problem.message


# --- JSON --------------------------------------------------------------------------------------


def test_json_file_gets_positions(tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text(
        json.dumps({"name": "x", "steps": [{"id": "a", "uses": "http"}]}, indent=2),
        encoding="utf-8",
    )
    doc = read_document(path)
    assert doc.data == {"name": "x", "steps": [{"id": "a", "uses": "http"}]}
    assert doc.positions[("steps", 0)] == Position(4, 5)
    assert doc.positions[("steps", 0, "uses")] == Position(6, 7)


def test_json_duplicate_key_through_yaml_has_a_line() -> None:
    problem = refused('{\n  "a": 1,\n  "a": 2\n}', "duplicate_key")
    assert (problem.line, problem.column) == (3, 3)


# Both PyYAML parsers refuse a plain key longer than 1024 characters; JSON does not.
LONG = '"' + "k" * 1100 + '"'


def test_json_fallback_loads_what_yaml_cannot() -> None:
    doc = load_document(f'{{{LONG}: [1.5, null, true, "x"]}}')
    assert doc.data == {"k" * 1100: [1.5, None, True, "x"]}
    assert doc.positions == {(): Position(1, 1)}
    assert doc.locate(("k" * 1100, 0)) == Position(1, 1)


def test_escaped_emoji_loads() -> None:
    # Python's json.dumps writes this; libyaml refuses it, so it goes through the fallback.
    emoji = '"\\ud83d\\ude00"'
    assert load_document(f'{{"a": [{emoji}]}}').data == {"a": ["\U0001f600"]}
    assert load_document(emoji, source="v.json").data == "\U0001f600"


@pytest.mark.parametrize("content", ['["\\ud800"]', f'{{{LONG}: "\\udc00"}}'])
def test_lone_surrogate_escape_is_refused(content: str) -> None:
    refused(content, "not_utf8")


def test_json_fallback_refuses_duplicate_keys() -> None:
    problem = refused(f'{{{LONG}: 1, "a": 1, "a": 2}}', "duplicate_key", source="wf.json")
    assert problem.file == "wf.json"
    assert "'a'" in problem.message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_json_fallback_refuses_non_finite_numbers(constant: str) -> None:
    refused(f"{{{LONG}: {constant}}}", "not_json")


def test_json_fallback_syntax_error_has_json_position() -> None:
    problem = refused(f'{{{LONG}: 1,\n  "b" 1}}', "syntax", source="wf.json")
    assert problem.message.startswith("invalid JSON: ")
    assert (problem.line, problem.column) == (2, 7)


def test_json_fallback_refuses_deep_nesting() -> None:
    deeper = MAX_DEPTH + 1
    refused(f"{{{LONG}: " + "[" * deeper + "]" * deeper + "}", "too_deep")
    refused(f"{{{LONG}: " + "[" * 10_000 + "]" * 10_000 + "}", "too_deep")


def test_yaml_errors_are_not_reported_as_json() -> None:
    problem = refused("a: [1, 2\nb: 3\n", "syntax", source="wf.yaml")
    assert problem.message.startswith("invalid YAML: ")


# --- properties --------------------------------------------------------------------------------


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
        max_leaves=20,
    )


@given(json_values(st.text()))
def test_any_json_text_round_trips(value: object) -> None:
    # The .json name lets the few texts libyaml cannot read (escaped emoji) use the fallback,
    # even when the value is a bare string rather than an object or array.
    assert load_document(json.dumps(value), source="value.json").data == value


# PyYAML's emitter quotes strings by YAML 1.1 rules, so a string such as "0o17", "1e3" or
# "1.5e3" (a string in 1.1, a number in 1.2) is written plain and comes back as a number. That
# is the emitter's dialect, not the loader's; such strings are left out of this property.
_NUMBER_IN_YAML_1_2 = re.compile(r"[-+]?(0o[0-7]+|0x[0-9a-fA-F]+|[0-9.]+([eE][-+]?[0-9]+)?)")
yaml_safe_text = st.text().filter(lambda s: not _NUMBER_IN_YAML_1_2.fullmatch(s))


@given(json_values(yaml_safe_text))
def test_any_json_value_round_trips_through_safe_dump(value: object) -> None:
    assert load_document(yaml.safe_dump(value)).data == value

"""Safe loading of YAML and JSON documents into plain JSON data, remembering where each value sits.

Workflow files come from people and repositories, so loading one must hold no surprises: no
tags that build objects, no anchors or aliases (the "billion laughs" bomb), no YAML 1.1
readings (``on:`` becoming ``True``, ``2024-01-01`` a date), bounded size and depth. Every
refusal is a ``DocumentInvalid`` naming the file, line and column.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import yaml

from overture.errors import DocumentInvalid
from overture.serde import JSON

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_DEPTH = 64

Path: TypeAlias = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the source text, both numbers 1-based."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Document:
    """JSON data loaded from a document, with the source position of its values."""

    data: JSON
    positions: Mapping[Path, Position]
    """``()`` is the document; a mapping entry is at its key, a sequence item at its start."""
    source: str | None
    """The file name to show in messages, if the document came from a file."""

    def locate(self, path: Path) -> Position | None:
        """Position of the longest prefix of `path` that has one; None if none (JSON fallback)."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return None


def load_document(
    content: str | bytes, *, source: str | None = None, max_bytes: int = MAX_DOCUMENT_BYTES
) -> Document:
    """Parse YAML or JSON text into JSON data, refusing anything unsafe or ambiguous."""
    try:
        text = _decode(content, max_bytes)
        try:
            data, positions = _load_yaml(text)
        except _Refusal as refusal:
            # JSON that libyaml cannot read (e.g. an escaped emoji "\ud83d\ude00") still loads,
            # without positions; but a YAML mistake should not be reported as a JSON one.
            if refusal.code != "syntax" or not _looks_like_json(text, source):
                raise
            data, positions = _load_json(text), {(): Position(1, 1)}
    except _Refusal as refusal:
        raise refusal.invalid(source) from None
    return Document(data, positions, source)


def read_document(path: str | os.PathLike[str], *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Document:
    """Read one YAML or JSON file, refusing it unread when it is larger than `max_bytes`."""
    source = os.fspath(path)
    try:
        size = os.stat(source).st_size
        if size > max_bytes:
            raise _Refusal("too_large", _too_large(size, max_bytes))
        with open(source, "rb") as file:
            content = file.read(max_bytes + 1)  # it may have grown since stat
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DocumentInvalid(
            f"cannot read {source}: {reason}", code="unreadable", file=source
        ) from None
    except _Refusal as refusal:
        raise refusal.invalid(source) from None
    return load_document(content, source=source, max_bytes=max_bytes)


class _Refusal(Exception):
    """Why a document is refused; becomes a ``DocumentInvalid`` once the file name is known."""

    def __init__(self, code: str, message: str, at: Position | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.at = code, message, at

    def invalid(self, source: str | None) -> DocumentInvalid:
        line, column = (self.at.line, self.at.column) if self.at else (None, None)
        return DocumentInvalid(self.message, code=self.code, file=source, line=line, column=column)


class _Mark(Protocol):
    @property
    def line(self) -> int: ...
    @property
    def column(self) -> int: ...


def _position(mark: _Mark | None) -> Position | None:
    return Position(mark.line + 1, mark.column + 1) if mark is not None else None


def _too_large(size: int, max_bytes: int) -> str:
    return f"document is {size:,} bytes, more than the limit of {max_bytes:,} bytes"


def _decode(content: str | bytes, max_bytes: int) -> str:
    # Text goes through bytes too: one size rule, and lone surrogates refused like bad bytes.
    raw = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    if len(raw) > max_bytes:  # before any decoding or parsing, so a huge input costs no more
        raise _Refusal("too_large", _too_large(len(raw), max_bytes))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8", "replace")) + 1
        at = Position(raw.count(b"\n", 0, exc.start) + 1, column)
        raise _Refusal("not_utf8", f"document is not UTF-8 text: {exc.reason}", at) from None


# --- YAML -------------------------------------------------------------------------------------

_LOADER = yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader
_CORE_TAG = "tag:yaml.org,2002:"
_SCALAR_KINDS = frozenset({"str", "int", "float", "bool", "null"})

# The YAML 1.2 core schema; PyYAML's own resolver implements YAML 1.1 (yes/no/on/off, dates).
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_NOT_FINITE = re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")
_SURROGATE = re.compile("[\ud800-\udfff]")

_TOO_DEEP = f"nesting is deeper than {MAX_DEPTH} levels"


@dataclass(slots=True)
class _Open:
    """A mapping or sequence whose end event has not arrived yet."""

    value: dict[str, JSON] | list[JSON]
    path: Path
    key: str | None = None  # in a mapping: the key read, waiting for its value


class _Builder:
    """Builds JSON data from parser events on an explicit stack, so depth cannot overflow."""

    def __init__(self) -> None:
        self.stack: list[_Open] = []
        self.positions: dict[Path, Position] = {}
        self.data: JSON = None
        self.documents = 0

    def feed(self, event: yaml.Event) -> None:
        at = _position(event.start_mark)
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise _Refusal("multiple_documents", "expected one document, found another", at)
        elif isinstance(event, yaml.AliasEvent):
            raise _Refusal("alias", f"aliases (*{event.anchor}) are not allowed", at)
        elif isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            if event.anchor is not None:
                raise _Refusal("alias", f"anchors (&{event.anchor}) are not allowed", at)
            self._node(event, at)
        elif isinstance(event, yaml.CollectionEndEvent):
            self.stack.pop()

    def _node(
        self, event: yaml.ScalarEvent | yaml.CollectionStartEvent, at: Position | None
    ) -> None:
        parent = self.stack[-1] if self.stack else None
        if parent is not None and isinstance(parent.value, dict) and parent.key is None:
            self._key(parent, parent.value, event, at)
            return
        value: JSON
        if isinstance(event, yaml.ScalarEvent):
            if parent is None and event.tag is None and event.implicit[0] and not event.value:
                raise _Refusal("empty", "document is empty", at)
            value = _scalar(event, at)
        elif isinstance(event, yaml.MappingStartEvent):
            _tag_kind(event.tag, frozenset({"map"}), "mapping", at)
            value = {}
        else:
            _tag_kind(event.tag, frozenset({"seq"}), "sequence", at)
            value = []

        if parent is None:
            path: Path = ()
            self.data = value
            self.positions[path] = at or Position(1, 1)
        elif isinstance(parent.value, dict):
            assert parent.key is not None  # _key has just set it
            path = (*parent.path, parent.key)
            parent.value[parent.key] = value
            parent.key = None
        else:
            path = (*parent.path, len(parent.value))
            parent.value.append(value)
            if at is not None:
                self.positions[path] = at

        if isinstance(value, dict | list):
            if len(self.stack) >= MAX_DEPTH:
                raise _Refusal("too_deep", _TOO_DEEP, at)
            self.stack.append(_Open(value, path))

    def _key(
        self,
        parent: _Open,
        mapping: dict[str, JSON],
        event: yaml.ScalarEvent | yaml.CollectionStartEvent,
        at: Position | None,
    ) -> None:
        if not isinstance(event, yaml.ScalarEvent):
            raise _Refusal("bad_key", "a mapping key must be a plain value, not a collection", at)
        _tag_kind(event.tag, _SCALAR_KINDS, "scalar", at)
        key = _text(event, at)  # as written: `1:` and `null:` are the keys "1" and "null"
        path = (*parent.path, key)
        if key in mapping:
            first = self.positions.get(path)
            where = f" (first on line {first.line})" if first else ""
            raise _Refusal("duplicate_key", f"duplicate key {key!r}{where}", at)
        if at is not None:
            self.positions[path] = at
        parent.key = key


def _load_yaml(text: str) -> tuple[JSON, dict[Path, Position]]:
    builder = _Builder()
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            builder.feed(event)
    except yaml.MarkedYAMLError as exc:
        message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
        if exc.problem and exc.context:
            # e.g. "while parsing a flow sequence": say where that began, often far above
            started = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
            message += f" ({exc.context}{started})"
        raise _Refusal("syntax", message, _position(exc.problem_mark)) from None
    except yaml.reader.ReaderError as exc:
        # A character YAML forbids. The error's offset counts bytes or characters depending on
        # the parser, so find the character itself.
        code = int(exc.character)
        index = text.find(chr(code))
        at = None
        if index >= 0:
            at = Position(text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index))
        message = f"invalid YAML: character U+{code:04X} is not allowed ({exc.reason})"
        raise _Refusal("syntax", message, at) from None
    except yaml.YAMLError as exc:
        raise _Refusal("syntax", f"invalid YAML: {exc}") from None
    except UnicodeError:  # a lone surrogate in str input cannot be encoded for libyaml
        raise _Refusal(
            "not_utf8", "document contains characters that are not valid Unicode"
        ) from None
    except RecursionError:  # cannot happen with the explicit stack; kept as a last line of defence
        raise _Refusal("too_deep", _TOO_DEEP) from None
    if builder.documents == 0:
        raise _Refusal("empty", "document is empty")
    return builder.data, builder.positions


def _tag_kind(
    tag: str | None, allowed: frozenset[str], node: str, at: Position | None
) -> str | None:
    """The core-schema kind an explicit tag asks for, refusing every other tag."""
    if tag is None:
        return None
    kind = tag.removeprefix(_CORE_TAG) if tag.startswith(_CORE_TAG) else None
    if kind not in allowed:
        shown = f"!!{kind}" if kind is not None else tag
        raise _Refusal("tag", f"tag {shown} is not allowed on a {node}", at)
    return kind


def _scalar(event: yaml.ScalarEvent, at: Position | None) -> JSON:
    kind = _tag_kind(event.tag, _SCALAR_KINDS, "scalar", at)
    text = _text(event, at)
    if kind is not None:
        matched, value = _core(kind, text, at)
        if not matched:
            raise _Refusal("bad_scalar", f"{text!r} is not a valid !!{kind}", at)
        return value
    if not event.implicit[0]:  # quoted and block scalars are always strings
        return text
    for kind in ("null", "bool", "int", "float"):
        matched, value = _core(kind, text, at)
        if matched:
            return value
    return text


def _text(event: yaml.ScalarEvent, at: Position | None) -> str:
    """The scalar's text, with the halves of an escaped surrogate pair joined."""
    # Pure-Python PyYAML reads the JSON-style escape "\\ud83d\\ude00" as two lone halves.
    if not _SURROGATE.search(event.value):
        return event.value
    try:
        return event.value.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise _Refusal("not_utf8", "an escape names half of a surrogate pair", at) from None


def _core(kind: str, text: str, at: Position | None) -> tuple[bool, JSON]:
    """Whether `text` is a `kind` scalar of the YAML 1.2 core schema, and its value if so."""
    if kind == "str":
        return True, text
    if kind == "null":
        return text in _NULLS, None
    if kind == "bool":
        return text in _BOOLS, _BOOLS.get(text, False)
    if kind == "int":
        if not _INT.fullmatch(text):
            return False, None
        base = {"0o": 8, "0x": 16}.get(text[:2], 10)
        try:
            return True, int(text if base == 10 else text[2:], base)
        except ValueError:  # Python refuses to parse decimal integers of over 4300 digits
            raise _Refusal("bad_scalar", f"integer of {len(text)} digits is too long", at) from None
    if _NOT_FINITE.fullmatch(text):
        raise _Refusal("not_json", f"{text} is not a number JSON can represent", at)
    if not _FLOAT.fullmatch(text):
        return False, None
    number = float(text)
    if not math.isfinite(number):
        raise _Refusal("not_json", f"{text} is too large for a JSON number", at)
    return True, number


# --- JSON fallback ----------------------------------------------------------------------------


def _looks_like_json(text: str, source: str | None) -> bool:
    return (source or "").lower().endswith(".json") or text.lstrip()[:1] in ("{", "[")


def _load_json(text: str) -> JSON:
    try:
        data: JSON = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as exc:
        raise _Refusal(
            "syntax", f"invalid JSON: {exc.msg}", Position(exc.lineno, exc.colno)
        ) from None
    except RecursionError:
        raise _Refusal("too_deep", _TOO_DEEP) from None
    except ValueError as exc:  # an integer of over 4300 digits
        raise _Refusal("bad_scalar", f"invalid JSON number: {exc}") from None
    _check_json(data)
    return data


def _unique_keys(pairs: list[tuple[str, JSON]]) -> dict[str, JSON]:
    result: dict[str, JSON] = {}
    for key, value in pairs:
        if key in result:
            raise _Refusal("duplicate_key", f"duplicate key {key!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> JSON:
    raise _Refusal("not_json", f"{name} is not a number JSON can represent")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Refusal("not_json", f"{text} is too large for a JSON number")
    return number


def _check_json(data: JSON) -> None:
    """Refuse what ``json.loads`` lets through: deep nesting and lone surrogates ("\\ud800")."""
    pending: list[tuple[JSON, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str) and _SURROGATE.search(value):
            raise _Refusal("not_utf8", "an escape names half of a surrogate pair")
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise _Refusal("too_deep", _TOO_DEEP)
            children = [*value, *value.values()] if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)

"""References such as ``input.user.id`` or ``steps.fetch.output.items[0]``: parsing and lookup.

A reference names data by a path of keys and indices; it never touches Python attributes, so
the data it reads cannot run code or reach anything outside the JSON it is given.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from overture.errors import TemplateResolutionError, TemplateSyntaxError
from overture.serde import JSON, dumps_text

Root = Literal["input", "steps", "run", "secrets"]
ROOTS: tuple[Root, ...] = get_args(Root)
RUN_FIELDS = frozenset({"id", "workflow", "version", "tenant", "correlation_id"})

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"[0-9]+")
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A parsed path into the data of a run."""

    root: Root
    path: tuple[str | int, ...]
    """Segments after the root; for ``steps`` it is ``(step_id, "output", *rest)``."""
    text: str
    """The source text, e.g. ``steps.fetch.output.items[0]``."""

    @property
    def step(self) -> str | None:
        """The id of the step a ``steps.*`` reference reads, else None."""
        if self.root == "steps" and self.path and isinstance(self.path[0], str):
            return self.path[0]
        return None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """The data references resolve against."""

    input: JSON
    steps: Mapping[str, JSON]
    """Outputs of the steps that have succeeded, by step id."""
    run: Mapping[str, JSON]
    """``id``, ``workflow``, ``version``, ``tenant`` and ``correlation_id`` of the run."""


def parse_reference(text: str) -> Reference:
    """Parse a whole string as one reference; surrounding whitespace is ignored."""
    start = len(text) - len(text.lstrip())
    ref, end = scan_reference(text, start)
    if text[end:].strip():
        end += len(text[end:]) - len(text[end:].lstrip())
        raise TemplateSyntaxError(
            f"unexpected {text[end]!r} after reference {ref.text!r}", text=text, position=end
        )
    return ref


def scan_reference(text: str, pos: int) -> tuple[Reference, int]:
    """Read the reference that starts at ``text[pos]``; return it and the offset just after it."""
    head = IDENTIFIER.match(text, pos)
    if head is None:
        raise TemplateSyntaxError(
            "expected a reference such as input.name or steps.<id>.output",
            text=text,
            position=pos,
        )
    segments: list[tuple[str | int, int]] = []  # each with its offset, to point errors at it
    i = head.end()
    while i < len(text) and text[i] in ".[":
        if text[i] == ".":
            name = IDENTIFIER.match(text, i + 1)
            if name is None:
                raise TemplateSyntaxError("expected a name after '.'", text=text, position=i + 1)
            segments.append((name.group(), i + 1))
            i = name.end()
            continue
        j = i + 1
        key: str | int
        if text[j : j + 1] in ("'", '"'):
            key, j = scan_string(text, j)
        elif number := _INDEX.match(text, j):
            key, j = int(number.group()), number.end()
        else:
            raise TemplateSyntaxError(
                "expected an index like [0] or a quoted key like ['name'] after '['",
                text=text,
                position=j,
            )
        if text[j : j + 1] != "]":
            raise TemplateSyntaxError("expected ']'", text=text, position=j)
        segments.append((key, i))
        i = j + 1
    return _checked(text, head.group(), pos, segments, i), i


def scan_string(text: str, pos: int) -> tuple[str, int]:
    """Read the quoted string at ``text[pos]``; return its value and the offset after it."""
    quote = text[pos]
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            escaped = text[i + 1 : i + 2]
            if not escaped:
                break
            if escaped not in _ESCAPES:
                raise TemplateSyntaxError(
                    f"unknown escape '\\{escaped}' (use \\' \\\" \\\\ or \\n)",
                    text=text,
                    position=i,
                )
            out.append(_ESCAPES[escaped])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise TemplateSyntaxError("unterminated string", text=text, position=pos)


def _checked(
    text: str, root: str, pos: int, segments: list[tuple[str | int, int]], end: int
) -> Reference:
    """Apply the per-root rules, so a bad reference fails when the workflow is validated."""

    def fail(message: str, at: int) -> TemplateSyntaxError:
        return TemplateSyntaxError(message, text=text, position=at)

    path = tuple(segment for segment, _ in segments)
    source = text[pos:end]
    if root == "input":
        return Reference(root="input", path=path, text=source)
    if root == "steps":
        if not path or not isinstance(path[0], str):
            at = segments[0][1] if segments else end
            raise fail("expected a step id after 'steps', as in steps.<id>.output", at)
        if len(path) < 2 or path[1] != "output":
            at = segments[1][1] if len(segments) > 1 else end
            raise fail(f"a step's data is under 'output': write steps.{path[0]}.output", at)
        return Reference(root="steps", path=path, text=source)
    if root == "run":
        fields = ", ".join(f"run.{f}" for f in sorted(RUN_FIELDS))
        if not path:
            raise fail(f"expected a field after 'run': one of {fields}", end)
        if len(path) != 1 or path[0] not in RUN_FIELDS:
            raise fail(f"{source!r} is not a run field; use one of {fields}", segments[0][1])
        return Reference(root="run", path=path, text=source)
    if root == "secrets":
        if len(path) != 1 or not isinstance(path[0], str) or not IDENTIFIER.fullmatch(path[0]):
            at = segments[0][1] if segments else end
            raise fail("a secret is named by one identifier, as in secrets.API_TOKEN", at)
        return Reference(root="secrets", path=path, text=source)
    close = difflib.get_close_matches(root, ROOTS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise fail(
        f"unknown reference root {root!r} (a reference starts with input, steps, run or "
        f"secrets){hint}",
        pos,
    )


def lookup(scope: Scope, ref: Reference) -> JSON:
    """Return the value ``ref`` names in ``scope``, or say exactly what is missing."""

    def fail(message: str) -> TemplateResolutionError:
        return TemplateResolutionError(f"{message} in {ref.text}")

    value: JSON
    if ref.root == "input":
        value, start = scope.input, 0
    elif ref.root == "steps":
        step = ref.step
        if step is None or step not in scope.steps:
            raise fail(f"step {step!r} has no output (it has not succeeded)")
        value, start = scope.steps[step], 2
    elif ref.root == "run":
        field = ref.path[0] if ref.path else None
        if not isinstance(field, str) or field not in scope.run:
            raise fail(f"run has no field {field!r}")
        value, start = scope.run[field], 1
    else:
        # Secrets are sealed by the template renderer, never read into stored data.
        raise fail("secrets cannot be looked up")
    for n in range(start, len(ref.path)):
        segment = ref.path[n]
        where = spell(ref.root, ref.path[:n])
        if isinstance(value, dict):
            if not isinstance(segment, str):
                raise fail(f"cannot index {where} (an object) with [{segment}]")
            if segment not in value:
                raise fail(f"{where} has no key {segment!r}")
            value = value[segment]
        elif isinstance(value, list):
            # A bool is an int to Python, never an index here.
            if not isinstance(segment, int) or isinstance(segment, bool):
                raise fail(f"cannot index {where} (a list) with {segment!r}")
            if not 0 <= segment < len(value):
                raise fail(f"index {segment} is out of range (length {len(value)})")
            value = value[segment]
        else:
            raise fail(f"cannot index {where} ({kind_of(value)}) with {segment!r}")
    return value


def spell(root: str, path: tuple[str | int, ...]) -> str:
    """Write a root and path back as reference text."""
    out = [root]
    for segment in path:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        elif IDENTIFIER.fullmatch(segment):
            out.append(f".{segment}")
        else:
            out.append(f"[{dumps_text(segment)}]")
    return "".join(out)


def kind_of(value: JSON) -> str:
    """The JSON type name of ``value``, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"

"""``${ reference }`` templates in step inputs: parsing, rendering and revealing secrets.

``render`` runs where values are stored, so it never resolves a secret: it leaves a sealed
marker (``{"$secret": NAME}``, or ``{"$concat": [...]}`` inside a longer string) that only
``reveal``, run in a worker's memory, replaces. Any dict that merely looks like a marker is
fenced as ``{"$literal": ...}`` on the way out, so data can never forge one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

from overture.core.references import Reference, Scope, lookup, scan_reference
from overture.errors import SecretMissing, TemplateResolutionError, TemplateSyntaxError
from overture.serde import JSON, dumps_text

MARKERS = frozenset({"$secret", "$concat", "$literal"})

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Template:
    """A string split into literal text and references."""

    parts: tuple[str | Reference, ...]
    source: str

    @property
    def whole(self) -> bool:
        """True when the string is exactly one reference, so rendering keeps the JSON type."""
        return len(self.parts) == 1 and isinstance(self.parts[0], Reference)


def parse_template(text: str) -> Template:
    """Split ``text`` into literal text and ``${ reference }`` parts (``$${`` is a literal)."""
    return _parse(text)


@lru_cache(maxsize=4096)
def _parse(text: str) -> Template:
    parts: list[str | Reference] = []
    literal: list[str] = []
    i = 0
    while (opening := _next_opening(text, i)) != -1:
        literal.append(text[i:opening])
        if text.startswith("$${", opening):
            literal.append("${")
            i = opening + 3
            continue
        ref, i = _scan_placeholder(text, opening)
        if chunk := "".join(literal):
            parts.append(chunk)
        literal = []
        parts.append(ref)
    literal.append(text[i:])
    if tail := "".join(literal):
        parts.append(tail)
    return Template(tuple(parts), text)


def _next_opening(text: str, start: int) -> int:
    """Offset of the next ``${`` or ``$${``, whichever starts first."""
    found = text.find("${", start)
    if found > start and text[found - 1] == "$":
        return found - 1
    return found


def _scan_placeholder(text: str, opening: int) -> tuple[Reference, int]:
    """Read ``${ reference }`` at ``opening``; return the reference and the offset after ``}``."""
    if text.find("}", opening) == -1:
        raise TemplateSyntaxError("unterminated '${' (no closing '}')", text=text, position=opening)
    i = _skip_space(text, opening + 2)
    if text[i] == "}":
        raise TemplateSyntaxError(
            "empty '${}': write a reference such as ${input.name}", text=text, position=opening
        )
    ref, i = scan_reference(text, i)
    i = _skip_space(text, i)
    if i >= len(text):
        raise TemplateSyntaxError("unterminated '${' (no closing '}')", text=text, position=opening)
    if text[i] != "}":
        raise TemplateSyntaxError(
            f"expected '}}' after {ref.text!r}, found {text[i]!r} "
            "(a template holds one reference; expressions and filters are not supported)",
            text=text,
            position=i,
        )
    return ref, i + 1


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def template_problems(value: JSON) -> list[tuple[Path, TemplateSyntaxError]]:
    """Every string in ``value`` that is not a valid template, with where it sits in ``value``."""
    problems: list[tuple[Path, TemplateSyntaxError]] = []
    for path, text in _strings(value, ()):
        try:
            parse_template(text)
        except TemplateSyntaxError as error:
            problems.append((path, error))
    return problems


def references(value: JSON) -> Iterator[Reference]:
    """Every reference in every string of ``value``; raises on an invalid template."""
    for _, text in _strings(value, ()):
        for part in parse_template(text).parts:
            if isinstance(part, Reference):
                yield part


def _strings(value: JSON, path: Path) -> Iterator[tuple[Path, str]]:
    """The strings in ``value`` that may hold templates; dict keys never do."""
    if isinstance(value, str):
        if "${" in value:
            yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))


def render(value: JSON, scope: Scope) -> JSON:
    """Resolve the templates in ``value``; secrets become sealed markers, data stays data."""
    if isinstance(value, str):
        return _render_string(value, scope) if "${" in value else value
    if isinstance(value, list):
        return [render(item, scope) for item in value]
    if isinstance(value, dict):
        if _looks_like_marker(value):
            return {"$literal": _literal_marker(value, scope)}
        return {key: render(item, scope) for key, item in value.items()}
    return value


def _literal_marker(value: dict[str, JSON], scope: Scope) -> JSON:
    """Resolve a workflow's own marker-shaped dict fully, since ``$literal`` is opaque to reveal."""
    try:
        return {key: reveal(render(item, scope), {}) for key, item in value.items()}
    except SecretMissing as error:
        raise TemplateResolutionError(
            f"secret {error.name!r} cannot be used inside an object whose only key is "
            f"{next(iter(value))!r} (such objects are passed through as plain data)"
        ) from None


def _render_string(text: str, scope: Scope) -> JSON:
    template = parse_template(text)
    match template.parts:
        case (Reference() as ref,):
            return _seal(ref) if ref.root == "secrets" else _fence(lookup(scope, ref))
    pieces: list[JSON] = []  # literal strings and sealed secrets, in order
    text_so_far: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            text_so_far.append(part)
        elif part.root == "secrets":
            if chunk := "".join(text_so_far):
                pieces.append(chunk)
            text_so_far = []
            pieces.append(_seal(part))
        else:
            found = lookup(scope, part)
            text_so_far.append(found if isinstance(found, str) else dumps_text(found))
    if not pieces:
        return "".join(text_so_far)
    if chunk := "".join(text_so_far):
        pieces.append(chunk)
    return {"$concat": pieces}


def _seal(ref: Reference) -> JSON:
    return {"$secret": str(ref.path[0])}


def _fence(data: JSON) -> JSON:
    """Copy data from input or a step output, fencing every dict that looks like a marker."""
    if isinstance(data, list):
        return [_fence(item) for item in data]
    if isinstance(data, dict):
        if _looks_like_marker(data):
            return {"$literal": data}  # opaque from here on, so shared rather than copied
        return {key: _fence(item) for key, item in data.items()}
    return data


def _looks_like_marker(value: dict[str, JSON]) -> bool:
    return len(value) == 1 and next(iter(value)) in MARKERS


def reveal(value: JSON, secrets: Mapping[str, str]) -> JSON:
    """Replace sealed secrets with their values and unwrap ``$literal`` data untouched."""
    if isinstance(value, list):
        return [reveal(item, secrets) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        [(key, inner)] = value.items()
        if key == "$literal":
            return inner
        if key == "$secret":
            if not isinstance(inner, str):
                raise TemplateResolutionError(f"malformed sealed secret {value!r}")
            if inner not in secrets:
                raise SecretMissing(inner)
            return secrets[inner]
        if key == "$concat":
            return _join(inner, secrets)
    return {key: reveal(item, secrets) for key, item in value.items()}


def _join(pieces: JSON, secrets: Mapping[str, str]) -> str:
    if not isinstance(pieces, list):
        raise TemplateResolutionError(f"malformed sealed string {pieces!r}")
    out: list[str] = []
    for piece in pieces:
        text = reveal(piece, secrets)
        if not isinstance(text, str):
            raise TemplateResolutionError(f"malformed piece {piece!r} in a sealed string")
        out.append(text)
    return "".join(out)

"""``when:`` conditions: a small boolean language over references, parsed by hand, never eval'd.

expr    := or
or      := and (("or" | "||") and)*
and     := not (("and" | "&&") not)*
not     := ("not" | "!") not | compare
compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") operand)?
operand := literal | reference | "${" expr "}" | "(" expr ")" | "[" literals? "]"
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeAlias

from overture.core.references import (
    IDENTIFIER,
    Reference,
    Scope,
    kind_of,
    lookup,
    scan_reference,
    scan_string,
)
from overture.errors import TemplateResolutionError, TemplateSyntaxError
from overture.serde import JSON

MAX_LENGTH = 4096
MAX_DEPTH = 50

Scalar: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Const:
    """A literal; a list literal is held as a tuple so that conditions stay hashable."""

    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference, read as null when the data it names is missing."""

    ref: Reference


@dataclass(frozen=True, slots=True)
class Not:
    """Logical negation."""

    operand: Node


@dataclass(frozen=True, slots=True)
class BoolOp:
    """Short-circuit ``and``/``or``; flat so long chains do not nest deeply."""

    op: Literal["and", "or"]
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    """A comparison or membership test."""

    op: str
    left: Node
    right: Node


Node: TypeAlias = Const | Ref | Not | BoolOp | Compare


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed ``when:`` condition."""

    source: str | bool
    node: Node

    @property
    def references(self) -> tuple[Reference, ...]:
        """The references the condition reads, in order of first appearance."""
        return tuple(dict.fromkeys(_references(self.node)))


def _references(node: Node) -> Iterator[Reference]:
    match node:
        case Ref(ref):
            yield ref
        case Not(operand):
            yield from _references(operand)
        case BoolOp(_, operands):
            for operand in operands:
                yield from _references(operand)
        case Compare(_, left, right):
            yield from _references(left)
            yield from _references(right)


def parse_condition(text: str | bool) -> Condition:
    """Parse a condition; a YAML bool is a constant."""
    if isinstance(text, bool):
        return Condition(text, Const(text))
    return _parse(text)


@lru_cache(maxsize=1024)
def _parse(text: str) -> Condition:
    if len(text) > MAX_LENGTH:
        raise TemplateSyntaxError(
            f"condition is longer than {MAX_LENGTH} characters", text=text, position=MAX_LENGTH
        )
    if not text.strip():
        raise TemplateSyntaxError("empty condition", text=text, position=0)
    return Condition(text, _Parser(text).parse())


# ---- tokens ----

_SYMBOLS = ("==", "!=", "<=", ">=", "&&", "||", "${", "<", ">", "!", "(", ")", "[", "]", ",", "}")
_WORDS = frozenset({"and", "or", "not", "in"})
_CONSTANTS: dict[str, Scalar] = {"true": True, "false": False, "null": None}
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_MISTAKES = {"=": "; use '==' to compare", "&": "; use 'and'", "|": "; use 'or'"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["value", "ref", "op", "end"]
    text: str
    pos: int
    value: Scalar = None
    ref: Reference | None = None


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            tokens.append(_Token("end", "end of condition", i))
            return tokens
        ch = text[i]
        if ch in "'\"":
            value, end = scan_string(text, i)
            tokens.append(_Token("value", text[i:end], i, value))
        elif ch in "-0123456789" and (number := _NUMBER.match(text, i)):
            raw, end = number.group(), number.end()
            parsed = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(_Token("value", raw, i, parsed))
        elif word := IDENTIFIER.match(text, i):
            raw, end = word.group(), word.end()
            if raw in _WORDS:
                tokens.append(_Token("op", raw, i))
            elif raw in _CONSTANTS:
                tokens.append(_Token("value", raw, i, _CONSTANTS[raw]))
            elif raw.lower() in _WORDS | _CONSTANTS.keys():
                raise TemplateSyntaxError(
                    f"write {raw.lower()!r} in lower case", text=text, position=i
                )
            else:
                ref, end = scan_reference(text, i)
                if ref.root == "secrets":
                    raise TemplateSyntaxError(
                        "secrets cannot be used in conditions", text=text, position=i
                    )
                tokens.append(_Token("ref", ref.text, i, ref=ref))
        else:
            symbol = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
            if symbol is None:
                hint = _MISTAKES.get(ch, "")
                raise TemplateSyntaxError(f"unexpected {ch!r}{hint}", text=text, position=i)
            tokens.append(_Token("op", symbol, i))
            end = i + len(symbol)
        i = end


# ---- parser ----

_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def parse(self) -> Node:
        node = self.disjunction()
        if self.peek().kind != "end":
            raise self.error(f"unexpected {self.peek().text!r}")
        return node

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.i += 1
        return token

    def at(self, *ops: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == "op" and token.text in ops

    def error(self, message: str, token: _Token | None = None) -> TemplateSyntaxError:
        position = (token or self.peek()).pos
        return TemplateSyntaxError(message, text=self.text, position=position)

    def nested(self, opening: _Token, parse: Callable[[], Node]) -> Node:
        # Bounding the depth bounds the recursion, whatever text a workflow holds.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"condition is nested more than {MAX_DEPTH} levels deep", opening)
        node = parse()
        self.depth -= 1
        return node

    def disjunction(self) -> Node:
        return self.chain("or", ("or", "||"), self.conjunction)

    def conjunction(self) -> Node:
        return self.chain("and", ("and", "&&"), self.negation)

    def chain(
        self, op: Literal["and", "or"], ops: tuple[str, ...], inner: Callable[[], Node]
    ) -> Node:
        operands = [inner()]
        while self.at(*ops):
            self.take()
            operands.append(inner())
        return operands[0] if len(operands) == 1 else BoolOp(op, tuple(operands))

    def negation(self) -> Node:
        if self.at("not", "!"):
            return self.nested(self.take(), lambda: Not(self.negation()))
        return self.compare()

    def comparison(self) -> str | None:
        """Consume and return the comparison operator at the current token, if there is one."""
        if self.at(*_COMPARISONS):
            return self.take().text
        if self.at("not") and self.at("in", ahead=1):
            self.i += 2
            return "not in"
        return None

    def compare(self) -> Node:
        left = self.operand()
        op = self.comparison()
        if op is None:
            return left
        node = Compare(op, left, self.operand())
        if self.comparison():
            raise self.error("comparisons cannot be chained; join them with 'and'", self.peek(-1))
        return node

    def operand(self) -> Node:
        token = self.take()
        if token.kind == "value":
            return Const(token.value)
        if token.kind == "ref" and token.ref is not None:
            return Ref(token.ref)
        if token.text in ("(", "${") and token.kind == "op":
            closing = ")" if token.text == "(" else "}"
            return self.nested(token, lambda: self.closed(token, closing, self.disjunction()))
        if token.text == "[" and token.kind == "op":
            return self.closed(token, "]", Const(tuple(self.items())))
        raise self.error(f"expected a value, a reference or '(', found {token.text!r}", token)

    def items(self) -> Iterator[Scalar]:
        while not self.at("]"):
            token = self.take()
            if token.kind != "value":
                raise self.error("a list holds only strings, numbers, true, false or null", token)
            yield token.value
            if not self.at(","):
                return
            self.take()

    def closed(self, opening: _Token, closing: str, node: Node) -> Node:
        if self.at(closing):
            self.take()
            return node
        if self.peek().kind == "end":
            raise self.error(f"{opening.text!r} is never closed", opening)
        raise self.error(f"expected {closing!r}, found {self.peek().text!r}")


# ---- evaluation ----

# Any: both sides are checked to be two numbers or two strings before the call.
_ORDERINGS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def evaluate(condition: Condition, scope: Scope) -> bool:
    """Decide ``condition`` against ``scope``; a reference to missing data reads as null."""
    source = condition.source if isinstance(condition.source, str) else str(condition.source)
    return bool(_value(condition.node, scope, source))


def _value(node: Node, scope: Scope, source: str) -> JSON:
    # Python's truthiness of JSON values is JSON's: null, false, 0, "", [] and {} are false.
    match node:
        case Const(value):
            return list(value) if isinstance(value, tuple) else value
        case Ref(ref):
            try:
                return lookup(scope, ref)
            except TemplateResolutionError:
                return None
        case Not(operand):
            return not _value(operand, scope, source)
        case BoolOp(op, operands):
            decide = all if op == "and" else any
            return decide(_value(o, scope, source) for o in operands)
        case Compare(op, left, right):
            return _compare(op, _value(left, scope, source), _value(right, scope, source), source)
    raise AssertionError(f"unknown node {node!r}")  # pragma: no cover


def _compare(op: str, left: JSON, right: JSON, source: str) -> bool:
    if op == "==":
        return equal(left, right)
    if op == "!=":
        return not equal(left, right)
    if op == "in":
        return _contains(left, right, source)
    if op == "not in":
        return not _contains(left, right, source)
    both_numbers = _is_number(left) and _is_number(right)
    if not (both_numbers or (isinstance(left, str) and isinstance(right, str))):
        raise TemplateResolutionError(
            f"cannot compare {kind_of(left)} with {kind_of(right)} in {source!r}: "
            f"{op!r} orders two numbers or two strings"
        )
    return bool(_ORDERINGS[op](left, right))


def _contains(item: JSON, container: JSON, source: str) -> bool:
    if isinstance(container, list):
        return any(equal(item, member) for member in container)
    if isinstance(container, str | dict):
        if not isinstance(item, str):
            raise TemplateResolutionError(
                f"cannot look for {kind_of(item)} in {kind_of(container)} in {source!r}: "
                "only a string can be"
                + (" a substring" if isinstance(container, str) else " an object's key")
            )
        return item in container
    raise TemplateResolutionError(
        f"cannot look for a value in {kind_of(container)} in {source!r}: "
        "'in' needs a list, a string or an object on its right"
    )


def equal(left: JSON, right: JSON) -> bool:
    """JSON equality: ``1 == 1.0``, but a bool is never equal to a number."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if _is_number(left) and _is_number(right):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(equal(v, right[k]) for k, v in left.items())
    return type(left) is type(right) and left == right


def _is_number(value: JSON) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

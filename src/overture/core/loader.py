"""Workflow files in, validated ``Workflow`` objects (or every problem, located) out."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, ValidationError

from overture.core import compat
from overture.core.document import Document, load_document, read_document
from overture.core.model import Workflow
from overture.core.validate import handler_problems
from overture.errors import Problem, WorkflowInvalid

Path = tuple[str | int, ...]

WORKFLOW_SUFFIXES = (".yml", ".yaml", ".json")
"""What a workflow file is called: how directories of them are read."""


def load_workflow(
    path: str | os.PathLike[str], *, handlers: Collection[str] | None = None
) -> Workflow:
    """Read, validate and return the workflow in a YAML or JSON file.

    With ``handlers``, every ``uses`` must name one of them. Raises ``WorkflowInvalid`` (every
    problem, with file, line and step) or ``DocumentInvalid`` (unsafe or unparsable file).
    """
    return from_document(read_document(path), handlers=handlers)


def parse_workflow(
    content: str | bytes, *, source: str | None = None, handlers: Collection[str] | None = None
) -> Workflow:
    """Like ``load_workflow`` for text already in memory (an API request body, say)."""
    return from_document(load_document(content, source=source), handlers=handlers)


def from_document(document: Document, *, handlers: Collection[str] | None = None) -> Workflow:
    """Validate a parsed document as a workflow."""
    if not isinstance(document.data, dict):
        problem = Problem(
            message="a workflow must be a mapping with at least 'name' and 'steps'",
            code="not_a_mapping",
        )
        raise WorkflowInvalid([_locate(problem, document, document.data)])
    data, positions = compat.normalize(document.data, document.positions)
    located = dataclasses.replace(document, data=data, positions=positions)
    problems: list[Problem] = []
    try:
        workflow = Workflow.model_validate(data, context={"problems": problems})
    except ValidationError as error:
        problems = _without_echoes(
            [_from_pydantic(item, data) for item in error.errors(include_url=False)]
        )
        raise WorkflowInvalid([_locate(p, located, data) for p in problems]) from None
    if handlers is not None:
        problems += handler_problems(workflow, handlers)
    if problems:
        raise WorkflowInvalid([_locate(p, located, data) for p in problems])
    return workflow


def _from_pydantic(item: Any, data: Any) -> Problem:
    path = _data_path(tuple(item["loc"]), data)
    kind = item["type"]
    message = str(item["msg"]).removeprefix("Value error, ")
    code = "invalid_value"
    if kind == "extra_forbidden":
        field = path[-1] if path else "?"
        code, message = "unknown_field", f"unknown field {field!r}{_known_fields_hint(path)}"
    elif kind == "missing":
        field = item["loc"][-1]
        code, message = "missing_field", f"missing required field {field!r}"
        path = _data_path(tuple(item["loc"][:-1]), data)
    elif kind in ("bad_duration", "bad_rate"):
        code = kind
    return Problem(message=message, code=code, path=path)


def _without_echoes(problems: list[Problem]) -> list[Problem]:
    """Drop a list's "too short" complaint when an item inside it is what was wrong.

    Pydantic counts a list whose only item failed as empty, and says so too; the author only
    needs to hear about the item.
    """
    return [
        p
        for p in problems
        if not (
            "at least" in p.message
            and any(len(q.path) > len(p.path) and q.path[: len(p.path)] == p.path for q in problems)
        )
    ]


def _data_path(loc: Path, data: Any) -> Path:
    """Keep the parts of a pydantic ``loc`` that index the data (drop union branch names)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_dict or in_list):
            continue  # a union branch name such as 'str' or 'RetryPolicy'
        node = node[part]
        path.append(part)
    return tuple(path)


def _known_fields_hint(path: Path) -> str:
    model = _model_at(path[:-1])
    if model is None or not path:
        return ""
    names = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(path[-1]), names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(names)})"


def _model_at(path: Path) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` of a workflow document."""
    model: type[BaseModel] = Workflow
    for part in path:
        if isinstance(part, int):
            continue
        field = next(
            (f for n, f in model.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if field is None:
            return None
        inner = _model_in(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _locate(problem: Problem, document: Document, data: Any) -> Problem:
    position = document.locate(problem.path)
    return dataclasses.replace(
        problem,
        file=document.source,
        line=position.line if position else None,
        column=position.column if position else None,
        step=problem.step or _step_at(problem.path, data),
    )


def _step_at(path: Path, data: Any) -> str | None:
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        steps = data.get("steps") if isinstance(data, dict) else None
        if isinstance(steps, list) and path[1] < len(steps) and isinstance(steps[path[1]], dict):
            step_id = steps[path[1]].get("id")
            return step_id if isinstance(step_id, str) else f"#{path[1] + 1}"
    return None

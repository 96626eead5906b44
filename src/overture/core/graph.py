"""The DAG behind a workflow: implicit dependencies, cycles, topological order."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from overture.core.conditions import parse_condition
from overture.core.references import Reference
from overture.core.templates import references
from overture.errors import TemplateSyntaxError
from overture.serde import JSON

if TYPE_CHECKING:
    from overture.core.model import Step, Workflow


def step_references(step: Step) -> Iterator[Reference]:
    """References read before the step runs: its inputs, condition and flow-control keys.

    Compensation inputs are left out: they are read after the run failed, so they can name any
    step without making it a dependency.
    """
    values: list[JSON] = [step.inputs]
    values += step.flow_keys()
    for value in values:
        yield from _safe_references(value)
    if isinstance(step.when, str):
        # A broken condition is validation's to report; the graph only needs what parses.
        with contextlib.suppress(TemplateSyntaxError):
            yield from parse_condition(step.when).references


def _safe_references(value: JSON) -> Iterator[Reference]:
    """References of each string that parses; broken ones are validation's to report."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _safe_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _safe_references(item)
    elif isinstance(value, str) and "${" in value:
        with contextlib.suppress(TemplateSyntaxError):
            yield from references(value)


@dataclass(frozen=True, slots=True)
class Graph:
    """What the engine asks of a workflow's shape, computed once per workflow."""

    steps: Mapping[str, Step]
    needs: Mapping[str, frozenset[str]]
    sinks: tuple[str, ...]
    """Steps no other step waits for: their outputs are the run's default output."""

    @classmethod
    def of(cls, workflow: Workflow) -> Graph:
        wanted = needs(workflow)
        needed = {dep for deps in wanted.values() for dep in deps}
        return cls(
            steps={step.id: step for step in workflow.steps},
            needs=wanted,
            sinks=tuple(s.id for s in workflow.steps if s.id not in needed),
        )


def needs(workflow: Workflow) -> dict[str, frozenset[str]]:
    """For every step, the known steps it waits for: ``depends_on`` plus steps it reads."""
    known = {step.id for step in workflow.steps}
    result: dict[str, frozenset[str]] = {}
    for step in workflow.steps:
        read = {ref.step for ref in step_references(step) if ref.step is not None}
        wanted = set(step.depends_on) | read
        result[step.id] = frozenset(wanted & known - {step.id})
    return result


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One dependency cycle as ``[a, b, c, a]`` (a waits for b...), or ``None``."""
    WHITE, GREY, BLACK = 0, 1, 2  # the classic three colours of a DFS
    colour = dict.fromkeys(edges, WHITE)
    for root in edges:
        if colour[root] != WHITE:
            continue
        # Iterative DFS so that a 1000-step chain cannot exhaust the recursion limit.
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges[root])))]
        path = [root]
        colour[root] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
                path.pop()
            elif colour.get(child, BLACK) == GREY:
                return [*path[path.index(child) :], child]
            elif colour.get(child) == WHITE:
                colour[child] = GREY
                path.append(child)
                stack.append((child, iter(sorted(edges[child]))))
    return None

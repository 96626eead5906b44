"""What can be wrong with a workflow beyond its shape, said so a person can fix it.

Each problem carries a ``path`` into the workflow document; the loader turns the path into a file
line. Pure: the only inputs are the workflow and, for ``handler_problems``, the handler names.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from overture.core import graph
from overture.core.conditions import parse_condition
from overture.core.templates import references, template_problems
from overture.errors import Problem, TemplateSyntaxError
from overture.serde import JSON
from overture.triggers.cron import Cron, CronInvalid, time_zone

if TYPE_CHECKING:
    from overture.core.model import Step, Workflow

Path = tuple[str | int, ...]


def workflow_problems(workflow: Workflow) -> list[Problem]:
    """Everything wrong with the workflow that needs no handler registry."""
    problems: list[Problem] = []
    problems += _duplicate_ids(workflow)
    for index, step in enumerate(workflow.steps):
        problems += _dependency_problems(workflow, index, step)
        problems += _template_problems(workflow, index, step)
    problems += _output_problems(workflow)
    problems += _cycle_problems(workflow)
    problems += _input_schema_problems(workflow)
    problems += _event_problems(workflow)
    problems += _run_concurrency_problems(workflow)
    problems += _cron_problems(workflow)
    problems += _compensation_problems(workflow)
    return problems


def handler_problems(workflow: Workflow, known: Collection[str]) -> list[Problem]:
    """Steps (and compensations) that use a handler nobody registered."""
    problems: list[Problem] = []
    for index, step in enumerate(workflow.steps):
        uses: list[tuple[Path, str]] = [(("steps", index, "uses"), step.uses)]
        if step.compensate:
            uses.append((("steps", index, "compensate", "uses"), step.compensate.uses))
        for path, name in uses:
            if name not in known:
                problems.append(
                    _problem(
                        f"unknown handler {name!r}{_did_you_mean(name, known)}",
                        "unknown_handler",
                        path,
                        step.id,
                    )
                )
    return problems


def _problem(message: str, code: str, path: Path, step: str | None = None) -> Problem:
    return Problem(message=message, code=code, path=path, step=step)


def _did_you_mean(name: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _duplicate_ids(workflow: Workflow) -> Iterator[Problem]:
    counts = Counter(step.id for step in workflow.steps)
    seen: set[str] = set()
    for index, step in enumerate(workflow.steps):
        if counts[step.id] > 1 and step.id in seen:
            yield _problem(
                f"duplicate step id {step.id!r}: step ids must be unique in a workflow",
                "duplicate_step",
                ("steps", index, "id"),
                step.id,
            )
        seen.add(step.id)


def _dependency_problems(workflow: Workflow, index: int, step: Step) -> Iterator[Problem]:
    ids = [s.id for s in workflow.steps]
    for position, dep in enumerate(step.depends_on):
        path: Path = ("steps", index, "depends_on", position)
        if dep == step.id:
            yield _problem("a step cannot depend on itself", "cycle", path, step.id)
        elif dep not in ids:
            yield _problem(
                f"depends on unknown step {dep!r}{_did_you_mean(dep, ids)}",
                "unknown_dependency",
                path,
                step.id,
            )


def _template_problems(workflow: Workflow, index: int, step: Step) -> Iterator[Problem]:
    base: Path = ("steps", index)
    fields: list[tuple[Path, JSON]] = [((*base, "with"), step.inputs)]
    for name in ("concurrency", "rate_limit", "circuit", "budget"):
        control = getattr(step, name)
        if control:
            fields.append(((*base, name, "key"), control.key))
    if step.compensate:
        fields.append(((*base, "compensate", "with"), step.compensate.inputs))
    for path, value in fields:
        yield from _value_problems(workflow, path, value, step.id)
    if isinstance(step.when, str):
        try:
            condition = parse_condition(step.when)
        except TemplateSyntaxError as error:
            yield _problem(f"bad condition: {error}", "bad_condition", (*base, "when"), step.id)
        else:
            for ref in condition.references:
                yield from _unknown_step(workflow, ref.step, ref.text, (*base, "when"), step.id)


def _value_problems(
    workflow: Workflow, path: Path, value: JSON, step_id: str | None
) -> Iterator[Problem]:
    """Syntax errors in a templated value, and references to steps that do not exist."""
    broken = template_problems(value)
    for where, error in broken:
        yield _problem(f"bad template: {error}", "bad_template", (*path, *where), step_id)
    if broken:
        return
    for where, text in _strings(value):
        for ref in references(text):
            yield from _unknown_step(workflow, ref.step, ref.text, (*path, *where), step_id)


def _strings(value: JSON, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """Every string inside ``value`` with its location (keys are never templates)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _unknown_step(
    workflow: Workflow, target: str | None, text: str, path: Path, step_id: str | None
) -> Iterator[Problem]:
    ids = [s.id for s in workflow.steps]
    if target is not None and target not in ids:
        yield _problem(
            f"{text!r} reads step {target!r}, which does not exist{_did_you_mean(target, ids)}",
            "unknown_step_reference",
            path,
            step_id,
        )


def _output_problems(workflow: Workflow) -> Iterator[Problem]:
    yield from _value_problems(workflow, ("output",), workflow.output, None)


def _cycle_problems(workflow: Workflow) -> Iterator[Problem]:
    edges = {step.id: workflow.needs(step.id) for step in workflow.steps}
    cycle = graph.find_cycle(edges)
    if cycle:
        first = next(i for i, s in enumerate(workflow.steps) if s.id == cycle[0])
        yield _problem(
            "dependency cycle: " + " → ".join(cycle) + " (each step waits for the next)",
            "cycle",
            ("steps", first, "depends_on"),
            cycle[0],
        )


def _input_schema_problems(workflow: Workflow) -> Iterator[Problem]:
    if workflow.input is None:
        return
    try:
        Draft202012Validator.check_schema(workflow.input)
    except SchemaError as error:
        where = "/".join(str(p) for p in error.path) or "the top"
        yield _problem(
            f"input is not a valid JSON Schema at {where}: {error.message}",
            "bad_input_schema",
            ("input", *error.path),
        )


def _run_concurrency_problems(workflow: Workflow) -> Iterator[Problem]:
    """A workflow's concurrency key is the run's: it may read the run, not a step's output."""
    if workflow.concurrency is None:
        return
    path: Path = ("concurrency", "key")
    key = workflow.concurrency.key
    broken = template_problems(key)
    for _, error in broken:
        yield _problem(f"bad template: {error}", "bad_template", path, None)
    if broken:
        return
    for ref in references(key):
        if ref.root not in ("input", "run"):
            yield _problem(
                f"a workflow's concurrency key may read input.* and run.*, not {ref.text}",
                "bad_concurrency_key",
                path,
                None,
            )


def _event_problems(workflow: Workflow) -> Iterator[Problem]:
    for index, trigger in enumerate(workflow.on.event_triggers()):
        at: Path = ("on", "events", index)
        written_bare = isinstance(workflow.on.events[index], str)
        if "*" in trigger.type[:-1]:
            yield _problem(
                f"event type {trigger.type!r}: '*' may only end a type (e.g. 'github.*')",
                "bad_event_type",
                at if written_bare else (*at, "type"),
            )
        if trigger.when is None:
            continue
        try:
            condition = parse_condition(trigger.when)
        except TemplateSyntaxError as error:
            yield _problem(f"bad condition: {error}", "bad_condition", (*at, "when"))
            continue
        if misplaced := [r.text for r in condition.references if r.root != "input"]:
            yield _problem(
                f"an event condition reads the event as input.<field>, not {misplaced[0]!r}",
                "bad_condition",
                (*at, "when"),
            )


def _cron_problems(workflow: Workflow) -> Iterator[Problem]:
    for index, trigger in enumerate(workflow.on.cron_triggers()):
        at: Path = ("on", "cron", index)
        try:
            Cron.parse(trigger.cron)
        except CronInvalid as invalid:
            # A bare string is the expression itself; a mapping holds it under `cron`.
            written_bare = isinstance(workflow.on.cron[index], str)
            yield _problem(str(invalid), "bad_cron", at if written_bare else (*at, "cron"))
        try:
            time_zone(trigger.timezone)
        except CronInvalid as invalid:
            yield _problem(str(invalid), "bad_timezone", (*at, "timezone"))


def _compensation_problems(workflow: Workflow) -> Iterator[Problem]:
    # builtin_steps needs the model, which needs this module: imported when first used.
    from overture.core.builtin_steps import ENGINE_STEPS  # noqa: PLC0415

    for index, step in enumerate(workflow.steps):
        if step.compensate is not None and step.compensate.uses in ENGINE_STEPS:
            yield _problem(
                f"{step.compensate.uses!r} cannot undo a step: the engine runs it only as a step "
                "(a compensation would not wait, or start no run); use a handler",
                "unsupported_compensation",
                ("steps", index, "compensate", "uses"),
                step.id,
            )

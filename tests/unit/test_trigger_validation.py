"""A workflow's event triggers are checked when it is validated, located by line."""

from __future__ import annotations

import pytest

from overture.core.loader import parse_workflow
from overture.errors import WorkflowInvalid


@pytest.mark.parametrize(
    ("on", "code", "words"),
    [
        ('{events: [{type: x, when: "input.a == == 1"}]}', "bad_condition", "expected a value"),
        ('{events: ["a*b"]}', "bad_event_type", "may only end"),
        ('{events: [{type: x, when: "steps.a.output.x == 1"}]}', "bad_condition", "input."),
    ],
)
def test_a_bad_event_trigger_is_refused_with_its_line(on: str, code: str, words: str) -> None:
    with pytest.raises(WorkflowInvalid) as refused:
        parse_workflow(f"name: w\non: {on}\nsteps:\n  - {{id: s, uses: echo}}\n")

    [problem] = refused.value.problems
    assert (problem.code, problem.line) == (code, 2)
    assert words in problem.message


def test_good_event_triggers_pass() -> None:
    workflow = parse_workflow(
        'name: w\non: {events: [a.b, "github.*", {type: c, when: "input.payload.n > 1"}]}\n'
        "steps:\n  - {id: s, uses: echo}\n"
    )

    assert [t.type for t in workflow.on.event_triggers()] == ["a.b", "github.*", "c"]

"""Workflows built in Python: the same data and the same checks as files."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from overture.core.loader import parse_workflow
from overture.core.model import RetryPolicy, Step, Workflow


def test_workflow_built_in_python_equals_the_one_loaded_from_yaml() -> None:
    built = Workflow(
        name="greet",
        version=2,
        on={"events": ["user.joined"]},  # type: ignore[arg-type]
        steps=[
            Step(id="hello", uses="http", inputs={"url": "https://x", "to": "${input.name}"}),
            Step(id="log", uses="http", depends_on=("hello",), timeout="2m"),  # type: ignore[arg-type]
        ],
    )
    loaded = parse_workflow(
        """
name: greet
version: 2
on: {events: [user.joined]}
steps:
  - id: hello
    uses: http
    with: {url: "https://x", to: "${input.name}"}
  - id: log
    uses: http
    depends_on: hello
    timeout: 2m
"""
    )
    assert built == loaded
    assert loaded.step("log").timeout == 120.0


def test_to_data_round_trips() -> None:
    wf = parse_workflow(
        """
name: round
steps:
  - id: a
    uses: http
    retry: {max_attempts: 5, initial: 500ms, jitter: false, non_retryable: [http_400]}
    rate_limit: {key: "user:${input.u}", rate: 10/s, burst: 20}
    concurrency: {key: "${input.flight}", limit: 1}
    compensate: {uses: http, with: {method: DELETE}}
"""
    )
    again = Workflow.model_validate(wf.to_data())
    assert again == wf
    assert again.step("a").rate_limit is not None and again.step("a").rate_limit.rate == 10.0


def test_python_construction_reports_every_problem() -> None:
    with pytest.raises(ValidationError) as raised:
        Workflow(
            name="bad",
            steps=[
                Step(id="a", uses="x", depends_on=("b",)),
                Step(id="b", uses="x", depends_on=("a",)),
                Step(id="c", uses="x", depends_on=("zzz",)),
            ],
        )
    text = str(raised.value)
    assert "dependency cycle: a → b → a" in text
    assert "depends on unknown step 'zzz'" in text


def test_template_reads_make_implicit_dependencies() -> None:
    wf = Workflow(
        name="implicit",
        steps=[
            Step(id="a", uses="x"),
            Step(id="b", uses="x", when="steps.a.output.ok"),
            Step(id="c", uses="x", inputs={"v": "${steps.b.output.v}"}, depends_on=("a",)),
        ],
    )
    assert wf.needs("b") == {"a"}
    assert wf.needs("c") == {"a", "b"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "has space", "should match pattern"),
        ("timeout", "-5s", "bad duration"),
        ("timeout", -5, "cannot be negative"),
        ("timeout", "400d", "longer than a year"),
        ("priority", "high", "valid integer"),
    ],
)
def test_step_field_errors(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Step.model_validate({"id": "a", "uses": "x", field: value})


def test_retry_policy_rejects_cap_below_initial() -> None:
    with pytest.raises(ValidationError, match="smaller than initial"):
        RetryPolicy(initial=10, max=1)


def test_version_accepts_people_spelling() -> None:
    assert Workflow(name="v", version="v3", steps=[Step(id="a", uses="x")]).version == 3  # type: ignore[arg-type]


def test_json_schema_of_the_workflow_format_is_available() -> None:
    schema = Workflow.model_json_schema(by_alias=True)
    step = schema["$defs"]["Step"]["properties"]
    assert {"with", "depends_on", "when", "retry", "compensate", "rate_limit"} <= set(step)

"""Loading workflow files: the seed files, and every bad file rejected with its own error."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from overture.core.loader import load_workflow, parse_workflow
from overture.errors import DocumentInvalid, Problem, WorkflowInvalid
from overture.handlers.registry import BUILTIN_HANDLER_NAMES

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BAD = sorted((CORPUS / "bad").glob("*.yml"))


def expectation(path: Path) -> dict[str, str]:
    """The ``# expect: code=... line=... step=... message="..."`` header of a corpus file."""
    header = path.read_text().splitlines()[0]
    assert header.startswith("# expect:"), f"{path} has no expect header"
    return dict(part.split("=", 1) for part in shlex.split(header.removeprefix("# expect:")))


def problems_of(path: Path) -> list[Problem]:
    try:
        load_workflow(path, handlers=BUILTIN_HANDLER_NAMES)
    except WorkflowInvalid as invalid:
        return list(invalid.problems)
    except DocumentInvalid as invalid:
        return [invalid.problem]
    pytest.fail(f"{path.name} was accepted")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_workflow_is_rejected_with_its_specific_error(path: Path) -> None:
    expected = expectation(path)
    problems = problems_of(path)
    matching = [p for p in problems if p.code == expected["code"]]
    assert matching, f"expected {expected['code']}, got {[str(p) for p in problems]}"
    problem = matching[0]
    assert problem.file == str(path)
    assert problem.line == int(expected["line"]), str(problem)
    if "step" in expected:
        assert problem.step == expected["step"], str(problem)
    if "message" in expected:
        assert expected["message"] in problem.message, str(problem)
    # The rendered line names file, line and (when in a step) the step, like a compiler does.
    rendered = str(problem)
    assert rendered.startswith(f"{path}:{expected['line']}:")
    if "step" in expected:
        assert f"step {expected['step']!r}" in rendered


def test_python_tag_is_never_executed(tmp_path: Path) -> None:
    marker = Path("/tmp/overture-pwned")
    marker.unlink(missing_ok=True)
    problems_of(CORPUS / "bad" / "python_tag.yml")
    assert not marker.exists()


def test_two_mebibyte_file_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yml"
    filler = "# " + "x" * 1022 + "\n"
    big.write_text("name: big\nsteps:\n  - {id: a, uses: http}\n" + filler * 2048)
    assert big.stat().st_size > 2 * 1024 * 1024
    with pytest.raises(DocumentInvalid) as raised:
        load_workflow(big)
    assert raised.value.problem.code == "too_large"
    assert raised.value.problem.file == str(big)


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    text = """\
name: several
steps:
  - id: a
    uses: htp
  - id: a
    uses: http
    depends_on: [nowhere]
"""
    with pytest.raises(WorkflowInvalid) as raised:
        parse_workflow(text, source="several.yml", handlers=BUILTIN_HANDLER_NAMES)
    codes = {p.code: p.line for p in raised.value.problems}
    assert codes == {"duplicate_step": 5, "unknown_dependency": 7, "unknown_handler": 4}


@pytest.mark.parametrize("name", ["daily_instructor_v1", "weekly_seed_v1"])
def test_wisely_seed_workflows_load_unmodified(name: str) -> None:
    workflow = load_workflow(EXAMPLES / "wisely" / f"{name}.yml", handlers=BUILTIN_HANDLER_NAMES)
    assert workflow.name == name
    assert workflow.version == 1
    assert all(step.uses == "http" for step in workflow.steps)
    assert all(
        step.inputs["call"].startswith("/functions/v1/agent-proxy/") for step in workflow.steps
    )


def test_daily_instructor_keeps_its_triggers_methods_and_timeout() -> None:
    workflow = load_workflow(EXAMPLES / "wisely" / "daily_instructor_v1.yml")
    assert workflow.on.events == ("streak_ping", "user_start_day")
    assert workflow.on.cron == ("0 7 * * *",)
    gather = workflow.step("gather_signals")
    assert gather.inputs == {"call": "/functions/v1/agent-proxy/snapshot", "method": "GET"}
    assert gather.timeout == 8.0
    assert workflow.needs("notify") == {"create_plan"}


def test_weekly_seed_fans_out_and_in() -> None:
    workflow = load_workflow(EXAMPLES / "wisely" / "weekly_seed_v1.yml")
    assert workflow.on.cron == ("0 18 * * SUN",)
    assert workflow.on.events == ()
    assert workflow.needs("brand_ingest") == {"ta_generate_week", "socratic_seed"}
    assert workflow.step("clo_begin_week").inputs["method"] == "POST"


def test_seed_format_errors_point_at_the_line_the_author_wrote() -> None:
    text = """\
key: seeded
steps:
  - id: slow
    call: /functions/v1/x
    timeout_ms: forever
"""
    with pytest.raises(WorkflowInvalid) as raised:
        parse_workflow(text, source="seeded.yml")
    (problem,) = raised.value.problems
    assert (problem.line, problem.step, problem.code) == (5, "slow", "bad_duration")


def test_json_workflow_loads_with_positions(tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    path.write_text('{\n  "name": "j",\n  "steps": [\n    {"id": "a", "uses": "nope"}\n  ]\n}\n')
    with pytest.raises(WorkflowInvalid) as raised:
        load_workflow(path, handlers={"http"})
    (problem,) = raised.value.problems
    assert (problem.code, problem.line, problem.step) == ("unknown_handler", 4, "a")


def test_on_key_is_not_yaml_1_1_boolean() -> None:
    workflow = parse_workflow("name: x\non:\n  events: [go]\nsteps:\n  - {id: a, uses: http}\n")
    assert workflow.on.events == ("go",)

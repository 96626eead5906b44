"""The ``overture`` command as a user runs it: a real process, its output and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WISELY = ROOT / "examples" / "wisely"
BAD = sorted((ROOT / "tests" / "corpus" / "bad").glob("*.yml"))


def overture(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "overture", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_seed_workflows_validate() -> None:
    done = overture(
        "workflows", "validate", WISELY / "daily_instructor_v1.yml", WISELY / "weekly_seed_v1.yml"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓" in done.stdout and "daily_instructor_v1 v1 · 3 steps" in done.stdout
    assert "weekly_seed_v1 v1 · 4 steps · on cron 0 18 * * SUN" in done.stdout


@pytest.mark.parametrize("name", ["daily_instructor_v1", "weekly_seed_v1"])
def test_seed_workflows_dry_run(name: str) -> None:
    done = overture("run", WISELY / f"{name}.yml", "--dry-run", "--input", "user_id=u-1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout.splitlines()[-2]
    assert done.stderr == ""


def test_directory_of_workflows_validates() -> None:
    done = overture("workflows", "validate", WISELY)
    assert done.returncode == 0
    assert done.stdout.count("✓") == 2


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_workflow_exits_1_with_a_located_error_and_no_traceback(path: Path) -> None:
    done = overture("workflows", "validate", path)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    code = path.read_text().split("code=")[1].split()[0]
    assert f"[{code}]" in done.stdout
    assert f"{path}:" in done.stdout


def test_two_mebibyte_file_exits_1_without_traceback(tmp_path: Path) -> None:
    big = tmp_path / "big.yml"
    big.write_text("name: big\n" + "# padding\n" * 220_000)
    done = overture("workflows", "validate", big)
    assert done.returncode == 1
    assert "[too_large]" in done.stdout and "Traceback" not in done.stderr


def test_dry_run_failure_compensates_and_exits_1(tmp_path: Path) -> None:
    flow = tmp_path / "trip.yml"
    flow.write_text(
        """
name: trip
steps:
  - {id: flight, uses: book, compensate: {uses: cancel}}
  - {id: hotel, uses: book, depends_on: [flight], compensate: {uses: cancel}}
  - {id: pay, uses: charge, depends_on: [hotel]}
"""
    )
    done = overture("run", flow, "--dry-run", "--fail", "pay")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    undo = [line for line in lines if "▶ undo" in line]
    assert [line.split("▶ undo ")[1].split()[0] for line in undo] == ["hotel", "flight"]
    assert "compensated" in lines[-2]


def test_run_with_real_handlers_and_secret_from_environment(tmp_path: Path) -> None:
    (tmp_path / "myhandlers.py").write_text(
        """
from overture.handlers.registry import HandlerRegistry
registry = HandlerRegistry()

@registry.handler("shout")
async def shout(ctx, *, text, token):
    assert token == "s3cret"
    return {"text": text.upper()}
"""
    )
    flow = tmp_path / "shout.yml"
    flow.write_text(
        """
name: shout
input: {type: object, required: [text]}
steps:
  - id: s
    uses: shout
    with: {text: "${input.text}", token: "${secrets.API_TOKEN}"}
output: "${steps.s.output.text}"
"""
    )
    env = {"PYTHONPATH": str(tmp_path), "OVERTURE_SECRET_API_TOKEN": "s3cret", "PATH": "/usr/bin"}
    done = overture("run", flow, "--handlers", "myhandlers:registry", "-i", "text=hi", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'output: "HI"' in done.stdout
    assert "s3cret" not in done.stdout
    missing = overture("run", flow, "--handlers", "myhandlers:registry", env=env)
    assert missing.returncode == 1
    assert "'text' is a required property" in missing.stdout


def test_input_values_keep_their_json_type(tmp_path: Path) -> None:
    flow = tmp_path / "typed.yml"
    flow.write_text(
        "name: typed\nsteps:\n  - {id: a, uses: echo, with: {n: '${input.n}', tags: '${input.tags}', s: '${input.s}'}}\n"
    )
    done = overture(
        "run",
        flow,
        "--dry-run",
        "-i",
        "n=3",
        "-i",
        'tags=["a"]',
        "-i",
        "s=hello",
        "--input-json",
        '{"x": 1}',
    )
    assert done.returncode == 0, done.stdout
    output = json.loads(done.stdout.split("output: ", 1)[1])
    assert output == {"a": {"n": 3, "tags": ["a"], "s": "hello"}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dry-run", "--handlers", "x:y"), "cannot be combined with --local or --handlers"),
        (("--dry-run", "--local"), "cannot be combined with --local or --handlers"),
        (("--local", "--detach"), "--detach is for runs on a server"),
        (("--dry-run", "--url", "http://127.0.0.1:1"), "--url is for runs on a server"),
        (
            ("--idempotency-key", "k", "--database-url", "sqlite:///x.db"),
            "--database-url is for --local",
        ),
        (("--dry-run", "--idempotency-key", "k"), "--idempotency-key applies to stored runs"),
        (("--handlers", "nosuchmodule:registry"), "No module named 'nosuchmodule'"),
        (("--dry-run", "--fail", "ghost"), "no such step: ghost"),
        (("--dry-run", "--input", "novalue"), "expected KEY=VALUE"),
        (("--dry-run", "--input-json", "[1]"), "must be a JSON object"),
    ],
)
def test_usage_errors_are_clear(args: tuple[str, ...], message: str) -> None:
    done = overture("run", WISELY / "weekly_seed_v1.yml", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_file_is_a_clear_error() -> None:
    done = overture("workflows", "validate", "/nonexistent/flow.yml")
    assert done.returncode == 1
    assert "[unreadable]" in done.stdout


def test_version() -> None:
    done = overture("--version")
    assert done.returncode == 0 and "overture, version" in done.stdout


def test_dry_run_needs_no_real_secrets_and_prints_none() -> None:
    done = overture(
        "run",
        ROOT / "examples" / "trip_booking.yml",
        "--dry-run",
        "-i",
        "traveller=ana",
        "-i",
        "flight_id=LH1",
    )
    assert done.returncode == 0, done.stdout
    assert (
        "<secret FLIGHTS_TOKEN>" not in done.stdout.split("output: ")[0].split("trip_booking v1")[0]
    )
    assert "upgrade skipped: condition is false" in done.stdout

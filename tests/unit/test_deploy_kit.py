"""The ``deploy/`` kit: the alert rules and the dashboard parse, their PromQL is well formed, and
every metric they query is one a real ``overture serve`` exposes on ``/metrics``.

A renamed metric would otherwise leave an alert that never fires and a panel that stays empty,
with nothing to say so; the names come from scraping a server, not from a list kept here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.support.processes import until
from tests.support.prometheus import samples
from tests.support.server import running_server

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SCRAPE = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "overture.json"

HELLO = """\
name: hello
steps:
  - {id: greet, uses: echo, with: {text: hi}}
"""

FUNCTIONS = frozenset(
    {
        "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil",
        "changes", "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "delta",
        "deriv", "floor", "group", "histogram_quantile", "idelta", "increase", "irate",
        "label_replace", "label_values", "last_over_time", "max", "max_over_time", "min",
        "min_over_time", "predict_linear", "quantile", "quantile_over_time", "rate", "resets",
        "round", "scalar", "sort", "sort_desc", "stddev", "sum", "sum_over_time", "time",
        "timestamp", "topk", "vector",
    }
)  # fmt: skip
"""PromQL functions and aggregations the kit may call (an unknown one is likely a typo)."""
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
RANGE = re.compile(r"\[([^\[\]]*)\]")
DURATION = re.compile(r"(?:\d+(?:ms|[smhdwy]))+|\$__rate_interval|\$__interval|\$__range")
IDENTIFIER = re.compile(r"(?<![\w$.])[A-Za-z_:][\w:]*")
LABEL_VALUES = re.compile(r"\blabel_values\(([^,()]*),\s*\w+\s*\)")
NUMBER = re.compile(r"(?<![\w$])\d+(?:\.\d+)?(?:e[+-]?\d+)?")
NAME_PATTERN = re.compile(r'__name__\s*=~\s*"((?:[^"\\]|\\.)*)"')
COUNTED = ("_total", "_bucket", "_count", "_sum")
"""Suffixes of per-process counters and histograms: they restart from zero with their process."""
OVER_TIME = frozenset({"rate", "increase", "irate"})
"""What a counter must be read through (they see through a process's restart)."""
ACROSS_PROCESSES = frozenset({"max", "min", "delta", "absent"})
"""What a shared gauge must be read through: every API process reports the same value, so a
``sum`` over them would count it once per process."""


def _bare(expr: str) -> str:
    """``expr`` without strings, label matchers, ranges, label lists and numbers: identifiers,
    operators and the brackets of calls are left."""
    text = STRING.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = LABEL_VALUES.sub(r"label_values(\1)", text)  # Grafana's: its last argument is a label
    text = RANGE.sub(" ", text)  # ranges and subqueries
    text = LABEL_LISTS.sub(" ", text)
    return NUMBER.sub(" ", text)


def metric_reads(expr: str) -> list[tuple[str, str | None]]:
    """Each metric an expression reads, with the function it is the argument of (None at the
    top level); every function it calls must be known."""
    text = _bare(expr)
    calls: list[str | None] = []  # the function of each open bracket
    reads: list[tuple[str, str | None]] = []
    position = 0
    for found in re.finditer(r"[A-Za-z_:][\w:]*|\(|\)", text):
        if found.start() < position:
            continue
        token = found.group()
        if token == "(":
            calls.append(None)
        elif token == ")":
            calls.pop()
        elif found.start() > 0 and text[found.start() - 1] in "$.":
            continue  # a Grafana variable's or a number's rest, not a name
        elif text[found.end() :].lstrip().startswith("("):
            assert token in FUNCTIONS, f"unknown function {token!r} in {expr!r}"
            bracket = text.index("(", found.end())
            calls.append(token)
            position = bracket + 1
        elif token.lower() not in KEYWORDS:
            enclosing = next((c for c in reversed(calls) if c is not None), None)
            reads.append((token, enclosing if calls and calls[-1] is not None else None))
    return reads


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads; every function it calls must be known."""
    return {name for name, _ in metric_reads(expr)}


def name_patterns(expr: str) -> list[str]:
    """The ``__name__=~"..."`` patterns an expression selects metrics by."""
    return NAME_PATTERN.findall(expr)


def check_syntax(expr: str) -> None:
    """Balanced brackets outside strings, and well-formed range durations."""
    text = STRING.sub('""', expr)
    assert text.count('"') % 2 == 0, f"unbalanced quotes in {expr!r}"
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in text:
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            assert stack and stack.pop() == pairs[char], f"unbalanced {char!r} in {expr!r}"
    assert not stack, f"unclosed {stack!r} in {expr!r}"
    for window in RANGE.findall(text):
        parts = window.split(":")  # a subquery: [range:resolution]
        assert all(DURATION.fullmatch(p) for p in parts if p), f"bad range [{window}] in {expr!r}"


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, handler) (rate(a_bucket{tenant=~"$t",x="by (y)"}'
        "[$__rate_interval]))) > 0.5 and on () max(b) == 0 or absent(c_total)"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c_total"}
    assert metric_names('label_values(d{x="1"}, tenant)') == {"d"}
    assert metric_reads(expr) == [("a_bucket", "rate"), ("b", "max"), ("c_total", "absent")]
    assert metric_reads("sum(x_total) > 0 and y") == [("x_total", "sum"), ("y", None)]
    assert name_patterns('label_values({__name__=~"o_.+", t!=""}, t)') == ["o_.+"]
    check_syntax(expr)
    with pytest.raises(AssertionError):
        check_syntax("sum(rate(a[5m])")
    with pytest.raises(AssertionError):
        check_syntax("rate(a[5 minutes])")
    with pytest.raises(AssertionError):
        metric_names("summ(a)")


# --- the files ---------------------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """``(panel title, expression)`` of every query of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    for panel in board["panels"]:
        for target in panel.get("targets", ()):
            yield panel["title"], target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield f"${variable['name']}", variable["definition"]


def every_expr() -> list[str]:
    return [r["expr"] for r in rules()] + [e for _, e in dashboard_exprs()]


def test_every_rule_is_complete() -> None:
    found = rules()
    assert {r["alert"] for r in found} >= {
        "HighRetryRate",
        "DeadLetterQueueGrowing",
        "QueueOldestAge",
        "NoLiveWorkers",
        "CircuitOpen",
    }
    for rule in found:
        assert rule["expr"].strip(), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]


def test_dead_letter_growth_counts_letters_as_they_come() -> None:
    """A tenant's ``overture_dead_letters`` series exists only while its queue is not empty: a
    delta over it cannot see a queue go from empty to many. The counter can."""
    [rule] = [r for r in rules() if r["alert"] == "DeadLetterQueueGrowing"]
    assert "increase(overture_steps_dead_lettered_total[" in rule["expr"]
    assert "overture_dead_letters" not in rule["expr"]


def test_a_circuit_cycling_through_half_open_keeps_its_alert() -> None:
    [rule] = [r for r in rules() if r["alert"] == "CircuitOpen"]
    assert re.search(r">=\s*1\s*$", rule["expr"]), rule["expr"]


@pytest.mark.parametrize("expr", every_expr())
def test_every_series_is_aggregated_the_way_its_kind_needs(expr: str) -> None:
    """Counters (per process, reset by a restart) through rate/increase; shared gauges (the
    same in every API process) through max/min (or delta, absent), never a plain sum."""
    for name, enclosing in metric_reads(expr):
        if name.endswith(COUNTED):
            assert enclosing in OVER_TIME, f"{name} read through {enclosing} in {expr!r}"
        else:
            assert enclosing in ACROSS_PROCESSES, f"{name} read through {enclosing} in {expr!r}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_scrape_config_loads_the_rules_and_sends_a_key() -> None:
    config = yaml.safe_load(SCRAPE.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["overture-api"]["authorization"]["type"] == "Bearer"
    assert jobs["overture-api"]["metrics_path"] == "/metrics"


def test_the_dashboard_has_a_panel_per_concern() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    text = " ".join(e for _, e in dashboard_exprs())
    for needed in ("histogram_quantile(0.95", "overture_step_duration_seconds_bucket"):
        assert needed in text


@pytest.mark.parametrize("expr", every_expr())
def test_every_expression_is_well_formed(expr: str) -> None:
    check_syntax(expr)
    assert metric_names(expr) or name_patterns(expr), f"{expr!r} reads no metric"


# --- against the real server -------------------------------------------------------------------


def exposed_names(exposition: str) -> set[str]:
    """The series names a scrape can hold, from each family's type (a family without samples
    yet, e.g. a counter nothing incremented, still declares its type)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names | {name for name, _ in samples(exposition)}


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The names ``/metrics`` of a real server exposes after it ran a workflow."""
    folder = tmp_path_factory.mktemp("deploy-kit")
    (folder / "flows").mkdir()
    (folder / "flows" / "hello.yml").write_text(HELLO)
    database = f"sqlite:///{folder / 'o.db'}"
    with (
        running_server(database, workflows=folder / "flows", cwd=folder) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,  # development mode: no key
    ):
        run = http.post("/v1/runs", json={"workflow": "hello", "input": {}})
        assert run.status_code == 201, run.text
        run_id = run.json()["id"]
        until(lambda: http.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded", "the run")
        response = http.get("/metrics")
        assert response.status_code == 200, response.text
        return exposed_names(response.text)


def test_every_metric_the_kit_queries_is_exposed(scraped: set[str]) -> None:
    assert "overture_step_duration_seconds_bucket" in scraped  # the scrape is what we think
    queried = {name: expr for expr in every_expr() for name in metric_names(expr)}
    missing = {name: expr for name, expr in queried.items() if name not in scraped}
    assert not missing, f"queried but not exposed: {missing}"
    assert all(name.startswith("overture_") for name in queried), sorted(queried)
    for pattern in (p for expr in every_expr() for p in name_patterns(expr)):
        assert any(re.fullmatch(pattern, name) for name in scraped), pattern

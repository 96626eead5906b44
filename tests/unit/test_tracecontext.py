"""W3C ``traceparent`` parsing, new run contexts, and when traces are wanted."""

from __future__ import annotations

import logging
import sys

import pytest

from overture.telemetry import tracing
from overture.telemetry.tracecontext import TraceParent, parse_traceparent, run_context

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_valid_header_gives_its_trace_span_and_sampling() -> None:
    parsed = parse_traceparent(f"00-{TRACE}-{SPAN}-01")
    assert parsed == TraceParent(TRACE, SPAN, 1)
    assert parsed.sampled
    assert parsed.header() == f"00-{TRACE}-{SPAN}-01"
    unsampled = parse_traceparent(f"00-{TRACE}-{SPAN}-00")
    assert unsampled is not None and not unsampled.sampled


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        f"00-{TRACE}-{SPAN}",  # no flags
        f"00-{TRACE.upper()}-{SPAN}-01",  # hex must be lowercase
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"0-{TRACE}-{SPAN}-01",
    ],
)
def test_invalid_headers_are_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_a_later_version_may_add_fields() -> None:
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-more") == TraceParent(TRACE, SPAN, 1)


def test_a_run_joins_its_callers_trace_with_a_span_of_its_own() -> None:
    own, parent = run_context(f"00-{TRACE}-{SPAN}-00")
    assert (own.trace_id, parent, own.flags) == (TRACE, SPAN, 0)
    assert own.span_id != SPAN and len(own.span_id) == 16


def test_without_a_valid_caller_a_run_starts_a_sampled_trace() -> None:
    first, parent = run_context("nonsense")
    second, _ = run_context(None)
    assert parent is None and first.sampled
    assert first.trace_id != second.trace_id
    assert parse_traceparent(first.header()) == first


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_traces_are_off_unless_the_otel_variables_ask(
    environ: dict[str, str], expected: bool
) -> None:
    assert tracing.wanted(environ) is expected


def test_an_unsupported_exporter_or_protocol_is_refused_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="overture.tracing"):
        assert tracing.configure_tracing({"OTEL_TRACES_EXPORTER": "zipkin"}) is None
        grpc = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        assert tracing.configure_tracing(grpc) is None
    assert "zipkin is not supported" in caplog.text
    assert "'grpc' is not supported" in caplog.text


def test_without_the_extra_a_warning_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "overture.telemetry.spans", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger="overture.tracing"):
        assert tracing.configure_tracing({"OTEL_TRACES_EXPORTER": "otlp"}) is None
    assert "pip install 'overture[otel]'" in caplog.text

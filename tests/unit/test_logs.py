"""Process logs: one JSON object per line (or readable text), bound fields, secrets masked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
import uvicorn

from overture.api import Services, create_app
from overture.runtime.context import StepContext
from overture.settings import Settings, SettingsInvalid, load_settings
from overture.store import Store
from overture.telemetry import logs
from overture.telemetry.logs import RequestContext, bound, configure_logging

SECRET = "s3cr3t-canary-value"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RUN = {
    "run_id": "run-1",
    "step_id": "fetch",
    "attempt": 2,
    "workflow": "w",
    "tenant": "acme",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "worker_id": "host-1-abc",
}

log = logging.getLogger("tests.logs")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """``configure_logging`` changes process-wide state: put it all back after each test."""
    root = logging.getLogger()
    handlers, level, hook = root.handlers[:], root.level, sys.excepthook
    thread_hook, unraisable_hook = threading.excepthook, sys.unraisablehook
    uvicorns = {name: logging.getLogger(name) for name in logs.UVICORN_LOGGERS}
    saved = {name: (u.handlers[:], u.propagate, u.level) for name, u in uvicorns.items()}
    yield
    logging.captureWarnings(False)
    sys.excepthook = hook
    threading.excepthook, sys.unraisablehook = thread_hook, unraisable_hook
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, (own, propagate, own_level) in saved.items():
        uvicorns[name].handlers[:] = own
        uvicorns[name].propagate = propagate
        uvicorns[name].setLevel(own_level)


def configured(fmt: str = "json", **kw: Any) -> io.StringIO:
    stream: io.StringIO = kw.pop("stream", io.StringIO())
    configure_logging("DEBUG", fmt, stream=stream, secrets=kw.pop("secrets", {"CANARY": SECRET}))
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# --- the JSON format ---------------------------------------------------------------------------


def test_a_json_line_has_the_core_fields_then_the_bound_ones_in_order() -> None:
    stream = configured()
    with bound(**RUN):
        log.info("hello %s", "world")
    (line,) = lines(stream)
    assert list(line) == ["timestamp", "level", "logger", "message", *RUN]
    assert TIMESTAMP.match(line["timestamp"])
    assert line | RUN == line
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "tests.logs", "hello world")


def test_fields_not_bound_are_left_out_not_null() -> None:
    stream = configured()
    with bound(run_id="run-1", trace_id=None):
        log.warning("about a run")
    log.warning("about nothing")
    about_run, about_nothing = lines(stream)
    assert about_run["run_id"] == "run-1"
    assert "trace_id" not in about_run and "step_id" not in about_run
    assert set(about_nothing) == {"timestamp", "level", "logger", "message"}


def test_a_step_line_carries_its_attempt_and_its_own_fields_apart() -> None:
    stream = configured()
    ctx = StepContext(run_id="run-1", step_id="s", attempt=3, workflow="w", tenant="acme")
    with bound(trace_id=RUN["trace_id"], worker_id="w-1"):
        ctx.log("charged", level="warning", amount=5, run_id="not-this-one")
    (line,) = lines(stream)
    assert line["logger"] == "overture.step"
    assert line["level"] == "WARNING"
    assert (line["run_id"], line["step_id"], line["attempt"]) == ("run-1", "s", 3)
    assert (line["workflow"], line["tenant"], line["worker_id"]) == ("w", "acme", "w-1")
    assert line["fields"] == {"amount": 5, "run_id": "not-this-one"}


def test_an_exception_is_one_field_of_one_line() -> None:
    stream = configured()
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("it broke")
    (line,) = lines(stream)
    assert line["message"] == "it broke"
    assert line["exception"].startswith("Traceback")
    assert "ValueError: bad value" in line["exception"]
    assert stream.getvalue().count("\n") == 1


def test_an_uncaught_exception_is_logged_as_a_line() -> None:
    stream = configured()
    try:
        raise RuntimeError(f"crashed holding {SECRET}")
    except RuntimeError as error:
        sys.excepthook(type(error), error, error.__traceback__)
    (line,) = lines(stream)
    assert line["level"] == "CRITICAL"
    assert "RuntimeError: crashed holding ***" in line["exception"]


def test_an_uncaught_exception_in_a_thread_is_logged_as_a_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = configured()

    def crash() -> None:
        raise RuntimeError(f"writer crashed holding {SECRET}")

    thread = threading.Thread(target=crash, name="sqlite-writer")
    thread.start()
    thread.join()
    (line,) = lines(stream)
    assert line["level"] == "ERROR"
    assert line["message"] == "uncaught exception in thread sqlite-writer"
    assert "RuntimeError: writer crashed holding ***" in line["exception"]
    assert capsys.readouterr().err == ""


def test_an_exception_nothing_can_raise_is_logged_as_a_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = configured()

    class Leaky:
        def __del__(self) -> None:
            raise ValueError(f"closing failed holding {SECRET}")

    Leaky()  # collected at once: __del__ raises where no caller can catch it
    (line,) = lines(stream)
    assert line["level"] == "ERROR"
    assert line["message"].startswith("Exception ignored in: <function")
    assert "ValueError: closing failed holding ***" in line["exception"]
    assert capsys.readouterr().err == ""


# --- never losing a line -----------------------------------------------------------------------


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    __repr__ = __str__


def test_arguments_that_do_not_fit_the_message_still_give_a_line() -> None:
    stream = configured()
    log.info("%d things", "not a number")
    log.info("%s and %s", "only one")  # noqa: PLE1206
    log.info("value: %s", Unprintable())
    first, second, third = lines(stream)
    assert first["message"].startswith("%d things")
    assert "not a number" in first["message"]
    assert second["message"].startswith("%s and %s")
    assert third["message"].startswith("value: %s")


def test_fields_json_cannot_hold_become_text() -> None:
    stream = configured()
    with bound(run_id="r", huge=2**70, thing=object(), odd=Unprintable()):
        log.info("still here")
    (line,) = lines(stream)
    assert line["message"] == "still here"
    assert line["run_id"] == "r"
    assert line["huge"] == str(2**70)
    assert line["thing"].startswith("<object object")


UNDECODABLE = b"caf\xe9".decode("utf-8", "surrogateescape")  # a lone surrogate: "caf\udce9"


def without_pytests_copy() -> None:
    """pytest keeps each record for its report, which pytest-xdist cannot send to the main
    process when it holds a lone surrogate: only our handler may see these lines."""
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if type(h).__module__ != "_pytest.logging"]


def test_a_line_with_undecodable_bytes_is_still_a_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = configured()
    without_pytests_copy()
    with bound(run_id="r", path=UNDECODABLE, huge=2**70):
        log.info("%s", UNDECODABLE)
    (line,) = lines(stream)
    assert line["message"] == "caf\\udce9"
    assert (line["run_id"], line["path"], line["huge"]) == ("r", "caf\\udce9", str(2**70))
    assert "Logging error" not in capsys.readouterr().err


def test_a_line_with_undecodable_bytes_is_still_a_text_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = io.BytesIO()
    strict = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
    configured("text", stream=strict)
    without_pytests_copy()
    log.info("%s", UNDECODABLE)
    assert raw.getvalue().decode().rstrip().endswith("tests.logs: caf\\udce9")
    assert "Logging error" not in capsys.readouterr().err


def test_a_text_line_survives_bad_arguments_too() -> None:
    stream = configured("text")
    log.info("%d things", "x")
    assert "%d things" in stream.getvalue()


# --- the text format ---------------------------------------------------------------------------


def test_text_lines_read_well_and_say_which_run() -> None:
    stream = configured("text")
    log.info("outside")
    with bound(**RUN):
        log.info("hello %s", "world")
    outside, inside = stream.getvalue().splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO tests\.logs: outside$", outside)
    assert inside.endswith("INFO tests.logs: hello world  run=run-1 step=fetch attempt=2")


def test_a_step_lines_own_fields_show_in_text() -> None:
    stream = configured("text")
    StepContext(run_id="r", step_id="s", attempt=1, workflow="w").log("paid", amount=5)
    assert stream.getvalue().rstrip().endswith("paid  run=r step=s attempt=1 amount=5")


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    terminal = configured("auto", stream=Terminal())
    log.info("for people")
    assert terminal.getvalue().startswith(tuple("0123456789"))
    piped = configured("AUTO")
    log.info("for machines")
    assert lines(piped)[0]["message"] == "for machines"


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, json, text"):
        configure_logging("INFO", "xml", stream=io.StringIO())


def test_the_format_is_a_setting() -> None:
    assert load_settings(environ={"OVERTURE_LOG_FORMAT": "text"}).log_format == "text"
    assert load_settings(environ={}).log_format == "auto"
    with pytest.raises(SettingsInvalid, match="OVERTURE_LOG_FORMAT"):
        load_settings(environ={"OVERTURE_LOG_FORMAT": "xml"})


# --- the handler -------------------------------------------------------------------------------


def test_configuring_twice_leaves_one_handler() -> None:
    configured()
    stream = configured()
    log.info("once")
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logs._Handler)]
    assert len(ours) == 1
    assert [line["message"] for line in lines(stream)] == ["once"]


def test_the_level_applies() -> None:
    stream = io.StringIO()
    configure_logging("warning", "json", stream=stream, secrets={})
    log.info("quiet")
    log.warning("loud")
    assert [line["message"] for line in lines(stream)] == ["loud"]


def test_uvicorns_loggers_write_through_it() -> None:
    own = logging.StreamHandler(io.StringIO())
    logging.getLogger("uvicorn.error").addHandler(own)
    logging.getLogger("uvicorn.error").propagate = False
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
    stream = configured()
    # As ``api.server`` builds it; access lines (when on) go the same way.
    uvicorn.Config(RequestContext(_silent_app), log_config=None, access_log=True)
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:1")
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "c", "GET", "/", "1.1", 200)
    found = lines(stream)
    assert [(line["logger"], line["message"]) for line in found] == [
        ("uvicorn.error", "Uvicorn running on http://127.0.0.1:1"),
        ("uvicorn.access", 'c - "GET / HTTP/1.1" 200'),
    ]
    assert own.stream.getvalue() == ""


async def _silent_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


# --- bound fields and tasks --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_each_task_logs_its_own_bound_fields() -> None:
    stream = configured()

    async def attempt(run_id: str) -> None:
        with bound(run_id=run_id):
            for n in range(3):
                log.info("line %d", n)
                await asyncio.sleep(0)  # interleave with the other task

    with bound(worker_id="w-1"):
        await asyncio.gather(attempt("a"), attempt("b"))
        log.info("after")
    found = lines(stream)
    assert {line["worker_id"] for line in found} == {"w-1"}
    assert sorted(line["run_id"] for line in found[:-1]) == ["a"] * 3 + ["b"] * 3
    assert "run_id" not in found[-1]
    assert [line["message"] for line in found if line.get("run_id") == "a"] == [
        "line 0",
        "line 1",
        "line 2",
    ]


def test_current_is_a_copy() -> None:
    with bound(run_id="r"):
        logs.current()["run_id"] = "changed"
        assert logs.current() == {"run_id": "r"}
    assert logs.current() == {}


# --- secrets -----------------------------------------------------------------------------------


def test_a_secret_is_masked_wherever_it_is_in_a_line() -> None:
    stream = configured()
    with bound(run_id="r", token=SECRET, nested={"k": [f"x{SECRET}x"]}):
        log.info(f"message {SECRET}")
        log.info("argument %s", SECRET)
        log.info("extra", extra={"overture": {"header": f"Bearer {SECRET}"}})
        log.info("stack", stack_info=True)
        try:
            raise ValueError(f"failed with {SECRET}")
        except ValueError:
            log.exception("exception")
    text = stream.getvalue()
    assert SECRET not in text
    found = lines(stream)
    assert [line["message"] for line in found] == [
        "message ***",
        "argument ***",
        "extra",
        "stack",
        "exception",
    ]
    assert found[0]["token"] == "***"
    assert found[0]["nested"] == {"k": ["x***x"]}
    assert found[2]["header"] == "Bearer ***"
    assert "ValueError: failed with ***" in found[4]["exception"]


def test_secrets_come_from_the_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERTURE_SECRET_CANARY", SECRET)
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=stream)
    log.info("the canary is %s", SECRET)
    assert stream.getvalue().rstrip().endswith("the canary is ***")


def test_a_secret_inside_another_leaves_nothing_of_the_longer() -> None:
    stream = configured(secrets={"SHORT": "abcd", "LONG": "abcdefgh"})
    with bound(token="abcdefgh"):
        log.info("abcdefgh and abcd")
    (line,) = lines(stream)
    assert (line["message"], line["token"]) == ("*** and ***", "***")


def test_a_secret_too_short_to_mask_well_is_named_once_at_start() -> None:
    stream = configured(secrets={"PIN": "123", "TOKEN": SECRET, "EMPTY": ""})
    log.info("run 0123")
    warning, line = lines(stream)
    assert warning["level"] == "WARNING"
    assert "secret PIN is shorter than 4 characters" in warning["message"]
    assert line["message"] == "run 0***"


def test_api_keys_and_bearer_tokens_are_masked() -> None:
    stream = configured(secrets={})
    key = "ovt_AbCd1234_" + "Zz9-_" * 8
    log.info("refused %s", key)
    log.info("sent Authorization: Bearer eyJhbGciOi.payload.sig to the server")
    log.info("key=x%s", key)
    log.info("headers %s", {"Authorization": "Basic dXNlcjpwYXNz"})
    first, second, third, fourth = (line["message"] for line in lines(stream))
    assert first == "refused ovt_AbCd1234_***"
    assert second == "sent Authorization: Bearer *** to the server"
    assert third == "key=xovt_AbCd1234_***"
    assert fourth == "headers {'Authorization': 'Basic ***'}"


def test_other_handlers_see_the_masked_line(caplog: pytest.LogCaptureFixture) -> None:
    configured()
    with caplog.at_level(logging.INFO, logger="tests.logs"):
        log.info("argument %s", SECRET)
    assert SECRET not in caplog.text


# --- requests ----------------------------------------------------------------------------------


async def _logging_app(scope: Any, receive: Any, send: Any) -> None:
    log.info("handling %s", scope["path"])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("header", "trace_id"),
    [
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", RUN["trace_id"]),
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", None),
        (b"00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        (b"not a traceparent", None),
        (None, None),
    ],
)
async def test_a_request_logs_the_trace_of_its_traceparent(
    header: bytes | None, trace_id: str | None
) -> None:
    stream = configured()
    headers = [] if header is None else [(b"traceparent", header)]
    scope = {"type": "http", "path": "/v1/runs", "headers": headers}
    await RequestContext(_logging_app)(scope, _never, _never)
    (line,) = lines(stream)
    assert line["message"] == "handling /v1/runs"
    assert line.get("trace_id") == trace_id


async def _never(*args: Any) -> Any:
    raise AssertionError("not called")


@pytest.mark.asyncio
async def test_the_app_binds_the_trace_of_a_request_even_to_a_crashs_line() -> None:
    stream = configured()
    app = create_app(Services(store=cast(Store, None), settings=Settings(), auth_required=True))

    @app.get("/logs")
    async def logs_a_line() -> dict[str, str]:
        log.info("handling")
        return {}

    @app.get("/crashes")
    async def crashes() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"traceparent": f"00-{RUN['trace_id']}-00f067aa0ba902b7-01"}
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        assert (await client.get("/logs", headers=headers)).status_code == 200
        assert (await client.get("/crashes", headers=headers)).status_code == 500
        assert (await client.get("/logs")).status_code == 200
    handled, crashed, untraced = [line for line in lines(stream) if line["logger"] != "httpx"]
    assert (handled["message"], handled["trace_id"]) == ("handling", RUN["trace_id"])
    assert crashed["message"] == "unhandled error on GET /crashes"
    assert crashed["trace_id"] == RUN["trace_id"]
    assert "trace_id" not in untraced


def test_logging_to_says_whether_the_handler_writes_to_a_stream() -> None:
    stream = configured()
    assert logs.logging_to(stream)
    assert not logs.logging_to(io.StringIO())

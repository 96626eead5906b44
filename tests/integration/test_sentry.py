"""Error reports to Sentry, received by a fake Sentry on 127.0.0.1: a logged exception arrives
once, as an event of its type, with the process's secrets masked everywhere in it.

The reporting process is a subprocess: ``sentry_sdk.init`` is process-global, and this test
run must not report its own errors anywhere.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.support.threaded import serving_in_thread

from overture import __version__
from overture.runtime.redaction import REDACTED
from overture.telemetry.sentry import configure_sentry, scrub

CANARY = "canary-7f3a9c-secret"
PASSWORD = "argv-canary-5e2b"
"""In the reporting process's arguments, as a database URL would be: no mask knows it."""

API_KEY = "ovt_AbCd1234_" + "Zz9-_" * 8
TOKEN = "eyJhbGciOi.canary-token.sig"

# As ``overture serve`` and ``overture worker`` start: the process's log (its SecretFilter
# first in line), then Sentry.
REPORTING = f"""\
import logging, os
import sentry_sdk
from overture.settings import Settings
from overture.telemetry.setup import configure_process

configure_process(Settings(log_format="json"))
log = logging.getLogger("overture.worker")
secret = os.environ["OVERTURE_SECRET_CANARY"]
log.info("calling the agent with %s", secret)  # a breadcrumb
try:
    raise ValueError(
        f"agent refused the key {{secret}} ({API_KEY}, Authorization: Bearer {TOKEN})"
    )
except ValueError:
    log.exception("step failed with %s", secret)
sentry_sdk.flush(10)
"""

# A request whose body holds a canary (not a secret: no mask knows it) fails in an app, and the
# app calls another server on the way: neither the body nor Sentry's trace headers may leave.
REQUEST = """\
import asyncio, os
import httpx, sentry_sdk
from starlette.applications import Starlette
from starlette.routing import Route
from overture.settings import Settings
from overture.telemetry.setup import configure_process

configure_process(Settings(log_format="json"))

async def start(request):
    body = await request.json()
    async with httpx.AsyncClient() as client:  # as a handler or RemoteClient would call out
        await client.get(os.environ["ELSEWHERE"])
    raise RuntimeError("could not start " + body["workflow"])

async def main():
    app = Starlette(routes=[Route("/v1/runs", start, methods=["POST"])])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        body = {"workflow": "w", "input": os.environ["BODY_CANARY"]}
        answer = await client.post("/v1/runs", json=body)
        assert answer.status_code == 500, answer.text

asyncio.run(main())
sentry_sdk.flush(10)
"""


class FakeSentry(ThreadingHTTPServer):
    """Accepts ``POST /api/<project>/envelope/`` and keeps each envelope, decompressed."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.envelopes: list[bytes] = []
        self.paths: list[str] = []
        self.probes: list[dict[str, str]] = []
        """The headers of each ``GET`` received (a process's own outgoing calls)."""

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server_address[1]}/1"

    def items(self, kind: str) -> list[dict[str, Any]]:
        """The payloads of every item of type ``kind`` received."""
        return [p for e in self.envelopes for t, p in parse_envelope(e) if t == kind]


class _Handler(BaseHTTPRequestHandler):
    server: FakeSentry

    def do_GET(self) -> None:
        self.server.probes.append(dict(self.headers))
        self.send_response(204)
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "br":
            import brotli  # type: ignore[import-not-found]

            body = brotli.decompress(body)
        self.server.paths.append(self.path)
        self.server.envelopes.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test says what it needs."""


def parse_envelope(raw: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(item type, payload)`` of each item: a header line, then items, each a header line and
    a payload of ``length`` bytes (or up to the next newline when it gives none)."""
    _, _, rest = raw.partition(b"\n")
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] :].lstrip(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        yield header["type"], json.loads(payload) if payload.strip() else {}


@contextlib.contextmanager
def serving() -> Iterator[FakeSentry]:
    with serving_in_thread(FakeSentry()) as server:
        yield server


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    with serving() as server:
        yield server


@pytest.fixture
def elsewhere() -> Iterator[FakeSentry]:
    """Another server, not Sentry's (Sentry never adds its headers to calls to itself)."""
    with serving() as server:
        yield server


def report(sentry: FakeSentry, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a process reporting to ``sentry``, the canary its secret."""
    env = {
        "PATH": "/usr/bin:/bin",
        "SENTRY_DSN": sentry.dsn,
        "SENTRY_ENVIRONMENT": "test",
        "OVERTURE_SECRET_CANARY": CANARY,
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", script, "--database-url", f"postgresql://u:{PASSWORD}@db/o"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_logged_exception_arrives_once_with_secrets_masked(sentry: FakeSentry) -> None:
    done = report(sentry, REPORTING)

    [event] = sentry.items("event")
    assert sentry.paths and all(p == "/api/1/envelope/" for p in sentry.paths)
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert exception["value"] == (
        f"agent refused the key {REDACTED} (ovt_AbCd1234_{REDACTED}, "
        f"Authorization: Bearer {REDACTED})"
    )
    assert event["logentry"]["formatted"] == f"step failed with {REDACTED}"
    assert (event["environment"], event["release"]) == ("test", f"overture@{__version__}")
    crumbs = [c.get("message") for c in event["breadcrumbs"]["values"]]
    assert f"calling the agent with {REDACTED}" in crumbs
    for raw in sentry.envelopes:
        for leaked in (CANARY, API_KEY, TOKEN, PASSWORD):
            assert leaked.encode() not in raw
    # The same line in the process's log, JSON and masked: the log was set up first.
    logged = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line["message"] for line in logged if line["level"] == "ERROR"] == [
        f"step failed with {REDACTED}"
    ]
    assert CANARY not in done.stderr


def test_a_request_body_and_trace_headers_never_leave(
    sentry: FakeSentry, elsewhere: FakeSentry
) -> None:
    body_canary = "body-canary-4c1d"
    elsewhere_url = f"http://127.0.0.1:{elsewhere.server_address[1]}/"
    report(sentry, REQUEST, ELSEWHERE=elsewhere_url, BODY_CANARY=body_canary)

    [event] = sentry.items("event")
    [exception] = event["exception"]["values"]
    assert exception["value"] == "could not start w"
    assert event["request"]["method"] == "POST"  # the request is described...
    assert not event["request"].get("data")  # ...without its body
    for raw in sentry.envelopes:
        assert body_canary.encode() not in raw
        assert PASSWORD.encode() not in raw
    [probe] = elsewhere.probes
    assert not {"sentry-trace", "baggage"} & {name.lower() for name in probe}


def test_without_a_dsn_nothing_is_initialised() -> None:
    import sentry_sdk

    assert configure_sentry({"SENTRY_DSN": " ", "OVERTURE_SECRET_X": "y"}) is False
    assert configure_sentry({}) is False
    assert not sentry_sdk.get_client().is_active()


def test_a_dsn_without_the_extra_warns_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING, logger="overture.sentry"):
        assert configure_sentry({"SENTRY_DSN": "http://public@127.0.0.1:9/1"}) is False
    assert "pip install 'overture[sentry]'" in caplog.text


def test_authorization_headers_are_dropped_and_secrets_masked_at_any_depth() -> None:
    event = {
        "request": {
            "headers": {"Authorization": "Bearer k-123", "Accept": "application/json"},
            "data": {"nested": ["token k-123 here", 3, None]},
        },
        "extra": {"pair": ("k-123", 1.5)},
    }
    scrubbed = scrub(event, {"KEY": "k-123"})
    assert scrubbed["request"]["headers"] == {"Accept": "application/json"}
    assert scrubbed["request"]["data"] == {"nested": [f"token {REDACTED} here", 3, None]}
    assert scrubbed["extra"] == {"pair": (REDACTED, 1.5)}
    listed = scrub({"request": {"headers": [["authorization", "x"], ["accept", "y"]]}}, {})
    assert listed["request"]["headers"] == [["accept", "y"]]


def test_an_event_is_masked_as_log_lines_are() -> None:
    event = {
        "exception": {
            "values": [
                {
                    "type": "HTTPStatusError",
                    "value": f"401 for abcdefgh, {API_KEY}, Authorization: Basic dXNlcjpwYXNz",
                }
            ]
        },
        "extra": {
            "sys.argv": ["overture", "worker", f"--database-url=postgresql://u:{PASSWORD}@db"]
        },
    }
    # The shorter secret first: masking in that order would leave "efgh" of the longer one.
    scrubbed = scrub(event, {"SHORT": "abcd", "LONG": "abcdefgh"})
    [exception] = scrubbed["exception"]["values"]
    assert exception["value"] == (
        f"401 for {REDACTED}, ovt_AbCd1234_{REDACTED}, Authorization: Basic {REDACTED}"
    )
    assert scrubbed["extra"] == {}

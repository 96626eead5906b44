"""Error reports to Sentry, received by a fake Sentry on 127.0.0.1: a logged exception arrives
once, as an event of its type, with the process's secrets masked everywhere in it.

The reporting process is a subprocess: ``sentry_sdk.init`` is process-global, and this test
run must not report its own errors anywhere.
"""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from overture import __version__
from overture.runtime.redaction import REDACTED
from overture.telemetry.sentry import configure_sentry, scrub

CANARY = "canary-7f3a9c-secret"

REPORTING = """\
import logging, os
import sentry_sdk
from overture.telemetry.sentry import configure_sentry

logging.basicConfig(level="INFO")
assert configure_sentry(os.environ)
log = logging.getLogger("overture.worker")
secret = os.environ["OVERTURE_SECRET_CANARY"]
log.info("calling the agent with %s", secret)  # a breadcrumb
try:
    raise ValueError(f"agent refused the key {secret}")
except ValueError:
    log.exception("step failed with %s", secret)
sentry_sdk.flush(10)
"""


class FakeSentry(ThreadingHTTPServer):
    """Accepts ``POST /api/<project>/envelope/`` and keeps each envelope, decompressed."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.envelopes: list[bytes] = []
        self.paths: list[str] = []

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server_address[1]}/1"

    def items(self, kind: str) -> list[dict[str, Any]]:
        """The payloads of every item of type ``kind`` received."""
        return [p for e in self.envelopes for t, p in parse_envelope(e) if t == kind]


class _Handler(BaseHTTPRequestHandler):
    server: FakeSentry

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


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    server = FakeSentry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_logged_exception_arrives_once_with_secrets_masked(sentry: FakeSentry) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "SENTRY_DSN": sentry.dsn,
        "SENTRY_ENVIRONMENT": "test",
        "OVERTURE_SECRET_CANARY": CANARY,
    }
    done = subprocess.run(
        [sys.executable, "-c", REPORTING],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    [event] = sentry.items("event")
    assert sentry.paths and all(p == "/api/1/envelope/" for p in sentry.paths)
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert exception["value"] == f"agent refused the key {REDACTED}"
    assert event["logentry"]["formatted"] == f"step failed with {REDACTED}"
    assert (event["environment"], event["release"]) == ("test", f"overture@{__version__}")
    crumbs = [c.get("message") for c in event["breadcrumbs"]["values"]]
    assert f"calling the agent with {REDACTED}" in crumbs
    for raw in sentry.envelopes:
        assert CANARY.encode() not in raw


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

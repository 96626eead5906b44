"""Real servers for the ``http`` handler's tests, and one attempt of an ``http`` step.

``serve_target(host)`` runs a Starlette app (uvicorn, in a thread) that records every request it
received; ``listening(host)`` is a bare TCP listener that counts the connections it accepted, so a
test can show that the SSRF guard refused an address before any connection was made;
``self_signed(...)`` makes a certificate for a TLS target.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import shutil
import socket
import subprocess
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from overture.core.events import ErrorInfo
from overture.demo.server import serving
from overture.handlers.http import HTTP_INPUT, HTTP_OUTPUT, HttpHandler, HttpSettings
from overture.handlers.http_guard import Resolver, resolve_host
from overture.handlers.registry import HandlerRegistry
from overture.runtime.context import StepContext
from overture.runtime.executor import Outcome, execute
from overture.serde import JSON
from overture.testing import FakeClock

KEY = "default:run-1:fetch"
"""The idempotency key of ``context()``'s step."""
LOOPBACK = HttpSettings(allow=("127.0.0.1",))
CHUNK = b"x" * 65536


# --- a server that shows what it received ------------------------------------------------------


@dataclass
class Target:
    """A server on a loopback address, the requests it received, and what it streamed."""

    url: str
    received: list[Request] = field(default_factory=list)
    streamed: list[int] = field(default_factory=list)
    """Bytes each ``/stream`` response had produced when it ended, or -1 if it got to its end."""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


async def remember(request: Request) -> Request:
    await request.body()
    request.app.state.target.received.append(request)
    return request


async def json(request: Request) -> Response:
    await remember(request)
    headers = {"X-Request-Id": "r-1", "Set-Cookie": "session=abc; Path=/", "X-Other": "x"}
    return JSONResponse({"hello": "world"}, headers=headers)


async def text(request: Request) -> Response:
    await remember(request)
    return PlainTextResponse("plain words")


async def headers(request: Request) -> Response:
    await remember(request)
    return JSONResponse(dict(request.headers))


async def echo(request: Request) -> Response:
    """The method, headers and body as received, for any method."""
    sent = (await (await remember(request)).body()).decode()
    return JSONResponse({"method": request.method, "headers": dict(request.headers), "body": sent})


def _retry_after(request: Request) -> dict[str, str]:
    given = request.query_params.get("retry_after")
    return {} if given is None else {"Retry-After": given}


async def status(request: Request) -> Response:
    await remember(request)
    code = int(request.path_params["code"])
    return PlainTextResponse(
        f"status {code} for you", status_code=code, headers=_retry_after(request)
    )


async def agent(request: Request) -> Response:
    """A 200 whose JSON body is the request's JSON (to show the agents' ``ok`` convention)."""
    answer = await (await remember(request)).json()
    return JSONResponse(answer, headers=_retry_after(request))


async def flaky(request: Request) -> Response:
    """503 (Retry-After: 0) to the first ``fail`` requests with one idempotency key, then 200."""
    await remember(request)
    key = request.headers.get("idempotency-key")
    received = request.app.state.target.received
    seen = sum(1 for r in received if r.headers.get("idempotency-key") == key)
    if seen <= int(request.query_params.get("fail", "2")):
        return PlainTextResponse("busy", status_code=503, headers={"Retry-After": "0"})
    return JSONResponse({"ok": True, "calls": seen})


async def reflect(request: Request) -> Response:
    """A 401 whose page repeats every request header, as careless servers do (``first``: the
    header to repeat first)."""
    await remember(request)
    sent = dict(request.headers)
    first = request.query_params.get("first", "")
    page = {first: sent.pop(first)} if first in sent else {}
    return PlainTextResponse(repr({**page, **sent}), status_code=401)


async def redirect(request: Request) -> Response:
    await remember(request)
    code = int(request.query_params.get("code", "302"))
    return RedirectResponse(request.query_params["to"], status_code=code)


async def slow(request: Request) -> Response:
    await remember(request)
    await asyncio.sleep(2)
    return PlainTextResponse("late")


async def big(request: Request) -> Response:
    await remember(request)
    return PlainTextResponse("x" * 5000)


async def stream(request: Request) -> Response:
    """``size`` bytes in 64 KiB chunks, with no Content-Length (chunked)."""
    await remember(request)
    size = int(request.query_params["size"])
    streamed = request.app.state.target.streamed

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        try:
            while sent < size:
                yield CHUNK
                sent += len(CHUNK)
                await asyncio.sleep(0)
            sent = -1
        finally:
            streamed.append(sent)

    return StreamingResponse(chunks(), media_type="text/plain")


@functools.cache
def gzip_bomb(size: int) -> bytes:
    """A gzip body of ``size`` zero bytes (a multiple of 1 MiB): about a thousandth of that."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(size >> 20)) + packer.flush()


WORDS = b"compressed words " * 100


def encoded(coding: str) -> bytes:
    """``WORDS`` in ``coding``: gzip, deflate (zlib-wrapped), raw-deflate, or anything else
    (sent as it is: the handler cannot read it)."""
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -15}
    if coding not in wbits:
        return WORDS
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits[coding])
    return packer.compress(WORDS) + packer.flush()


async def bomb(request: Request) -> Response:
    """``size`` zero bytes gzipped, sent although the request asked for identity."""
    await remember(request)
    body = gzip_bomb(int(request.query_params["size"]))
    return Response(body, media_type="text/plain", headers={"Content-Encoding": "gzip"})


async def compressed(request: Request) -> Response:
    """``WORDS`` in the ``coding`` asked for (the header says ``deflate`` for raw-deflate)."""
    await remember(request)
    coding = request.query_params["coding"]
    said = "deflate" if coding == "raw-deflate" else coding
    code = int(request.query_params.get("status", "200"))
    return Response(
        encoded(coding),
        status_code=code,
        media_type="text/plain",
        headers={"Content-Encoding": said},
    )


async def trickle(request: Request) -> Response:
    """``count`` bytes, one every ``every`` seconds: each read is quick, the whole is slow."""
    await remember(request)
    count, every = int(request.query_params["count"]), float(request.query_params["every"])

    async def drops() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"."
            await asyncio.sleep(every)

    return StreamingResponse(drops(), media_type="text/plain")


def target_app(target: Target) -> Starlette:
    """The app that records what ``target`` received."""
    app = Starlette(
        routes=[
            Route("/json", json),
            Route("/text", text),
            Route("/headers", headers, methods=["GET", "POST"]),
            Route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE"]),
            Route("/status/{code}", status),
            Route("/agent", agent, methods=["POST"]),
            Route("/flaky", flaky, methods=["GET", "POST"]),
            Route("/reflect", reflect),
            Route("/redirect", redirect, methods=["GET", "POST", "PUT"]),
            Route("/slow", slow),
            Route("/big", big),
            Route("/stream", stream),
            Route("/bomb", bomb),
            Route("/compressed", compressed),
            Route("/trickle", trickle),
        ]
    )
    app.state.target = target
    return app


def serve_target(host: str, **config: Any) -> Iterator[Target]:
    """A generator for a fixture: the target on ``host`` for the test's duration."""
    target = Target("")
    with serving(target_app(target), host=host, **config) as url:
        target.url = url
        yield target


# --- a certificate ------------------------------------------------------------------------------


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` and its key, made with ``cryptography`` if it is
    installed, else the ``openssl`` command (the test is skipped if neither is there)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if importlib.util.find_spec("cryptography") is not None:
        _self_signed_with_cryptography(cert, key, host)
    elif shutil.which("openssl") is not None:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={host}",
             "-addext", f"subjectAltName=DNS:{host}"],
            check=True, capture_output=True,
        )  # fmt: skip
    else:
        pytest.skip("making a certificate needs the cryptography package or openssl")
    return cert, key


def _self_signed_with_cryptography(cert: Path, key: Path, host: str) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(private.public_key()), False
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


# --- a listener that counts connections --------------------------------------------------------


@dataclass
class Listener:
    """A TCP listener on ``host`` that counts the connections it accepted, and answers each
    with a small JSON 200 so that a call that does get through ends cleanly."""

    host: str
    port: int
    accepted: int = 0

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


REACHED = b'{"reached":true}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(REACHED), REACHED)
)


@contextmanager
def listening(host: str) -> Iterator[Listener]:
    """A ``Listener`` on ``host`` and a free port for the duration of the block."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, 0))
    server.listen()
    server.settimeout(0.05)
    listener = Listener(host, server.getsockname()[1])
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            listener.accepted += 1
            with connection:
                connection.settimeout(5)
                request = b""
                try:
                    while b"\r\n\r\n" not in request and (chunk := connection.recv(4096)):
                        request += chunk
                    connection.sendall(ANSWER)
                except OSError:
                    pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(5)
        server.close()


# --- calling the handler -----------------------------------------------------------------------


def context(attempt: int = 1, *, secrets: dict[str, str] | None = None) -> StepContext:
    """The attempt's context as a worker makes it: the process's secrets masked in its logs."""
    return StepContext(
        run_id="run-1",
        step_id="fetch",
        attempt=attempt,
        workflow="w",
        clock=FakeClock(),
        secrets=secrets or {},
    )


async def attempt(
    inputs: dict[str, JSON],
    settings: HttpSettings | None = None,
    *,
    ctx: StepContext | None = None,
    secrets: dict[str, str] | None = None,
    resolve: Resolver = resolve_host,
) -> Outcome:
    """One attempt of an ``http`` step, as a worker makes it."""
    handler = HttpHandler(settings, resolve=resolve)
    registry = HandlerRegistry()
    spec = registry.register(
        "http", handler.http, input_schema=HTTP_INPUT, output_schema=HTTP_OUTPUT
    )
    try:
        return await execute(spec, inputs, ctx or context(secrets=secrets), secrets or {})
    finally:
        await handler.aclose()


async def failure(
    inputs: dict[str, JSON], settings: HttpSettings | None = None, **kw: Any
) -> ErrorInfo:
    """How the attempt failed (it must fail)."""
    outcome = await attempt(inputs, settings, **kw)
    assert outcome.error is not None, outcome.output
    return outcome.error


async def output(inputs: dict[str, JSON], settings: HttpSettings | None = None, **kw: Any) -> Any:
    """The attempt's output (it must succeed)."""
    outcome = await attempt(inputs, settings, **kw)
    assert outcome.error is None, outcome.error
    return outcome.output

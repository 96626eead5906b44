"""A ``http.server`` server answering from a thread of the test process, for the local fakes
of the services Overture calls (a counter, an OTLP collector, Sentry)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from typing import TypeVar

Server = TypeVar("Server", bound=HTTPServer)


@contextmanager
def serving_in_thread(server: Server) -> Iterator[Server]:
    """``server`` answering until the block ends; then it stops and its socket is closed."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def url_of(server: HTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"

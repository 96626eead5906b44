"""A counter service on 127.0.0.1 that steps call over real HTTP, so a test can see from outside
the workers how many calls were in flight at once, when each arrived, and when it failed them.

``POST /call?key=K&hold=S`` holds the call ``S`` seconds while counting it in flight for ``K``;
``failing`` makes every call answer 503 until cleared.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.support.threaded import serving_in_thread, url_of


@dataclass
class Counter:
    url: str = ""
    in_flight: dict[str, int] = field(default_factory=dict)
    most: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[float, str, int]] = field(default_factory=list)
    """(monotonic time, key, status) of every call, in arrival order."""
    failing: bool = False
    healthy_hold: float = 0.0
    """Seconds a call is held while not failing (lets a test see a half-open circuit)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls_of(self, key: str) -> list[tuple[float, str, int]]:
        with self.lock:
            return [c for c in self.calls if c[1] == key]


def _handler(counter: Counter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            query = parse_qs(urlsplit(self.path).query)
            key = query.get("key", ["-"])[0]
            hold = float(query.get("hold", ["0"])[0])
            with counter.lock:
                status = 503 if counter.failing else 200
                counter.calls.append((time.monotonic(), key, status))
                now = counter.in_flight.get(key, 0) + 1
                counter.in_flight[key] = now
                counter.most[key] = max(counter.most.get(key, 0), now)
                if status == 200:
                    hold = max(hold, counter.healthy_hold)
            try:
                time.sleep(hold)
            finally:
                with counter.lock:
                    counter.in_flight[key] -= 1
            body = json.dumps({"ok": status == 200, "key": key}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def counting() -> Iterator[Counter]:
    counter = Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(counter))
    server.daemon_threads = True
    counter.url = url_of(server)
    with serving_in_thread(server):
        yield counter

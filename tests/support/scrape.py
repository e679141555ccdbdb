"""Reading live /metrics pages and standing in for a Pushgateway, for the tests
that check the metrics contract against running processes."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics_text(port: int) -> str:
    """The text of http://127.0.0.1:PORT/metrics (raises OSError while nothing serves it)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
    return text


def serving(port: int) -> bool:
    try:
        metrics_text(port)
        return True
    except OSError:
        return False


@dataclass
class Push:
    method: str
    path: str
    body: str


@dataclass
class FakePushgateway:
    """Records what a process pushes (``PUT/POST /metrics/job/...``) and answers 200."""

    url: str
    pushes: list[Push] = field(default_factory=list)


@contextmanager
def fake_pushgateway() -> Iterator[FakePushgateway]:
    gateway = FakePushgateway(url="")

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            gateway.pushes.append(Push(self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        do_PUT = do_POST = _record  # http.server's method names

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gateway.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()

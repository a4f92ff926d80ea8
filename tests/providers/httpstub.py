"""A tiny programmable HTTP server for webhook and proxy tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    """One request received by a test HTTP server."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """What the server sends: after `delay` seconds, `status` and `body`.

    `trickle` > 0 sends the answer one byte every `trickle` seconds (status line and
    headers too, unless `trickle_body_only`): a server that is never silent for long,
    so no per-read timeout fires, yet takes as long as it likes to finish.
    """

    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    trickle: float = 0.0
    trickle_body_only: bool = False

    def head(self) -> bytes:
        """Status line and headers, as sent on the wire (HTTP/1.0: one answer a connection)."""
        phrase = HTTPStatus(self.status).phrase
        return (
            f"HTTP/1.0 {self.status} {phrase}\r\nContent-Length: {len(self.body)}\r\n\r\n"
        ).encode("ascii")

    def trickled(self) -> bytes:
        """The part of the answer sent a byte at a time."""
        return self.body if self.trickle_body_only else self.head() + self.body


@dataclass
class Receiver:
    """A local HTTP server answering per path with programmable replies."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    routes: dict[str, Callable[[Recorded], Reply]] = field(default_factory=dict)

    def route(self, path: str, reply: Reply | Callable[[Recorded], Reply]) -> str:
        """Answer `path` with `reply`; returns the full URL."""
        self.routes[path] = reply if callable(reply) else (lambda _req: reply)
        return self.url + path

    def hits(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]


def _trickle(out: Any, reply: Reply) -> None:
    """Send `reply` a byte at a time, `reply.trickle` seconds apart, until the client goes."""
    try:
        if reply.trickle_body_only:
            out.write(reply.head())
        for byte in reply.trickled():
            out.write(bytes([byte]))
            time.sleep(reply.trickle)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up: what the tests want


def serve(handle: Callable[[Recorded], Reply]) -> Iterator[str]:
    """Serve `handle` on a free local port until the generator is closed; yields the URL."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = Recorded(
                self.command, self.path, dict(self.headers.items()), self.rfile.read(length)
            )
            reply = handle(request)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.trickle:
                _trickle(self.wfile, reply)
                return
            try:
                self.send_response(reply.status)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

        do_GET = do_POST = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()

"""A tiny TCP round-robin balancer on loopback, for tests: connection n goes to backend
n % len(backends), like kube-proxy spreading connections over a Service's endpoints
(but deterministic, so a split can be checked exactly)."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class RoundRobin:
    """Accepts on 127.0.0.1 and pipes each connection to the next backend in turn."""

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            backend = self.backends[self.accepted % len(self.backends)]
            self.accepted += 1
            threading.Thread(target=self._serve, args=(client, backend), daemon=True).start()

    def _serve(self, client: socket.socket, backend: tuple[str, int]) -> None:
        try:
            upstream = socket.create_connection(backend, timeout=5)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join(timeout=30)
        client.close()
        upstream.close()

    def close(self) -> None:
        """Stop accepting (open connections finish on their own)."""
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RoundRobin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy until src closes, then half-close dst so the other side sees the end."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

"""HTTP calls bounded in all: connect, request, status line, headers and body by one deadline.

httpx's timeouts bound each network operation (one connect, one read, one write), not a
whole call, and httpx has no total timeout (encode/httpx#1450): a server that sends its
answer a byte at a time, each byte within the read timeout, holds the caller as long as it
likes. Measured before this module: a webhook trickling its 40-byte answer one byte every
0.5 s held a call made with a 1 s budget for 19.5 s (and its late 200 opened the gate); a
Prometheus trickling its JSON the same way, 33.5 s.

A tick holds a lease and must not be held like that. So the network backend under httpx's
transport (httpcore's extension point for custom networking) gives every socket operation
of a call made inside `deadline(seconds)` at most the time left until that deadline. A
trickled status line, headers or body then ends in httpx's ReadTimeout at the deadline,
like any other timeout, and the connection is closed. Pooled connections are bounded too:
the deadline is read at each operation, from a context variable (so per thread).

Not bounded: name resolution (the system resolver's own timeouts apply; it is no socket
operation of ours), and the CPU time of parsing what arrived.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

__all__ = ["client", "deadline", "post"]

#: Monotonic time by which every socket operation of the current call must end (None: none).
_DEADLINE: ContextVar[float | None] = ContextVar("canaryctl_http_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound every socket operation inside the block to end within `seconds` from now.

    Only clients made by `client()` obey it. Nested deadlines never extend an outer one.
    """
    at = time.monotonic() + max(seconds, 0.0)
    outer = _DEADLINE.get()
    token = _DEADLINE.set(at if outer is None else min(outer, at))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def post(http: httpx.Client, url: str, *, seconds: float, **options: Any) -> httpx.Response:
    """POST and read the whole answer within `seconds` in all (a `client()`'s client).

    Raises httpx's TimeoutException subclasses when the time runs out, whichever phase it
    runs out in (ConnectTimeout, WriteTimeout, ReadTimeout, PoolTimeout)."""
    with deadline(seconds):
        # The per-operation timeouts too: they also bound the wait for a pooled connection.
        return http.post(url, timeout=seconds, **options)


def client(*, transport: httpx.BaseTransport | None = None, **options: Any) -> httpx.Client:
    """An httpx.Client whose calls `deadline` bounds in all; `options` go to httpx.Client.

    Proxies from the environment are kept (their transports are bounded the same way). A
    given `transport` (a test's MockTransport, which has no sockets) is used as it is.
    """
    http = httpx.Client(transport=transport, **options)
    if transport is None:
        # httpx builds its transports (the default one and one per environment proxy) in
        # its constructor and offers no parameter for the network backend under them.
        transports: Iterable[Any] = (http._transport, *http._mounts.values())
        for each in transports:
            if each is not None:
                _bound(each)
    return http


def _bound(transport: Any) -> None:
    """Put the deadline-aware backend under one of httpx's own transports."""
    pool = getattr(transport, "_pool", None)
    inner = getattr(pool, "_network_backend", None)
    if not isinstance(inner, httpcore.NetworkBackend):
        # Never a silently unbounded client: an httpx upgrade that moves these fails here.
        raise TypeError(f"cannot bound the calls of {type(transport).__name__}: no backend")
    if not isinstance(inner, _Backend):
        pool._network_backend = _Backend(inner)


def _clamp(timeout: float | None, error: type[Exception]) -> float | None:
    """`timeout` cut to what is left of the deadline; `error` when nothing is left."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        wait = _clamp(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, wait))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's backend, with connects and every later socket operation clamped."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        wait = _clamp(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, wait, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        wait = _clamp(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, wait, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

"""Whole HTTP calls bounded by one deadline (`providers._deadline`), against real local
servers that send their answers a byte at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from canaryctl.providers import _deadline
from providers.httpstub import Reply, serve

#: 40 bytes, one every 10 ms: 0.4 s in all.
QUICK = Reply(200, b"ok", trickle=0.01)
#: 40 bytes, one every 0.5 s: 20 s in all.
SLOW = Reply(200, b"ok", trickle=0.5)


@pytest.fixture(scope="module")
def trickling() -> Iterator[str]:
    """`/quick` answers QUICK, anything else SLOW (proxied requests too)."""
    yield from serve(lambda req: QUICK if req.path.endswith("/quick") else SLOW)


def test_without_a_deadline_a_trickled_answer_is_read_whole(trickling: str) -> None:
    with _deadline.client(timeout=5.0) as http:
        began = time.monotonic()
        answer = http.post(f"{trickling}/quick")
        assert (answer.status_code, answer.content) == (200, b"ok")
        assert time.monotonic() - began >= len(QUICK.trickled()) * QUICK.trickle * 0.9
        # A deadline longer than the answer takes changes nothing.
        assert _deadline.post(http, f"{trickling}/quick", seconds=5.0).content == b"ok"


def test_a_deadline_cuts_a_trickled_answer_with_a_read_timeout(trickling: str) -> None:
    with _deadline.client() as http:
        began = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            _deadline.post(http, f"{trickling}/slow", seconds=0.6)
        took = time.monotonic() - began
    assert 0.55 < took < 0.9, f"cut after {took:.2f}s, deadline 0.6 s (the answer takes 20 s)"


def test_a_nested_deadline_never_extends_the_outer_one(trickling: str) -> None:
    with _deadline.client() as http, _deadline.deadline(0.4):
        began = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            _deadline.post(http, f"{trickling}/slow", seconds=5.0)
        assert time.monotonic() - began < 0.7


def test_calls_through_an_environment_proxy_are_bounded_too(
    trickling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is honoured as before, and the proxy's transport obeys the deadline: the
    trickling server here is the proxy (it answers the proxied request itself)."""
    monkeypatch.setenv("HTTP_PROXY", trickling)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with _deadline.client() as http:
        assert http.post("http://hook.invalid/quick").content == b"ok", "through the proxy"
        began = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            _deadline.post(http, "http://hook.invalid/slow", seconds=0.5)
        assert time.monotonic() - began < 0.8


def test_a_given_transport_is_used_as_it_is() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    with _deadline.client(transport=transport) as http:
        assert _deadline.post(http, "http://anywhere/", seconds=1.0).status_code == 204

"""PrometheusClient validation, retries and auth, against canned HTTP answers."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from canaryctl.errors import AnalysisError, SpecError
from canaryctl.providers.prometheus import Auth, PrometheusClient, SecretRef, redact_url
from providers.httpstub import Reply, serve

URL = "http://prom.example:9090"
QUERY = 'sum(increase(http_requests_total{version="v2"}[30s]))'


def answer(result_type: str, result: Any, status: int = 200) -> httpx.Response:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    return httpx.Response(status, json=body)


def vector(*values: str) -> httpx.Response:
    samples = [{"metric": {"version": f"v{i}"}, "value": [1.0, v]} for i, v in enumerate(values)]
    return answer("vector", samples)


def client_for(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> PrometheusClient:
    kwargs.setdefault("backoff", 0.0)
    transport = httpx.MockTransport(handler)
    return PrometheusClient(kwargs.pop("url", URL), transport=transport, **kwargs)


def test_single_sample_vector_yields_its_value() -> None:
    assert client_for(lambda _r: vector("42.5")).query(QUERY) == 42.5


def test_scalar_yields_its_value() -> None:
    assert client_for(lambda _r: answer("scalar", [1.0, "3"])).query("1+2") == 3.0


def test_empty_vector_is_no_data() -> None:
    assert client_for(lambda _r: vector()).query(QUERY) is None


@pytest.mark.parametrize("raw", ["NaN", "+Inf", "-Inf"])
def test_nan_and_infinities_are_no_data_never_a_value(raw: str) -> None:
    assert client_for(lambda _r: vector(raw)).query(QUERY) is None
    assert client_for(lambda _r: answer("scalar", [1.0, raw])).query(QUERY) is None


def test_query_is_posted_as_form_with_optional_evaluation_time() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return vector("1")

    prom = client_for(handler, url="http://prom.example/prefix/")
    prom.query(QUERY)
    prom.query(QUERY, at=1700000000.25)
    assert [r.method for r in seen] == ["POST", "POST"]
    assert seen[0].url.path == "/prefix/api/v1/query"
    assert parse_qs(seen[0].content.decode()) == {"query": [QUERY]}
    assert parse_qs(seen[1].content.decode())["time"] == ["1700000000.250"]


def test_several_series_is_an_error_naming_the_query_and_suggesting_sum() -> None:
    prom = client_for(lambda _r: vector("1", "2"))
    with pytest.raises(AnalysisError) as err:
        prom.query(QUERY)
    message = str(err.value)
    assert QUERY in message and URL in message
    assert "2 series" in message and "sum(" in message
    assert 'version="v0"' in message


def test_range_vector_is_an_error_explaining_instant_queries() -> None:
    prom = client_for(lambda _r: answer("matrix", [{"metric": {}, "values": [[1, "1"]]}]))
    with pytest.raises(AnalysisError, match="range vector"):
        prom.query("up[5m]")


def test_prometheus_error_answer_is_reported_with_its_reason() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}
    prom = client_for(lambda _r: httpx.Response(400, json=body))
    with pytest.raises(AnalysisError, match="bad_data: parse error at char 5") as err:
        prom.query("sum(")
    assert "'sum('" in str(err.value)


@pytest.mark.parametrize(
    "body",
    [
        {"status": "success"},
        {"status": "success", "data": {"resultType": "vector", "result": {}}},
        {"status": "success", "data": {"resultType": "vector", "result": [5]}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1]}]}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, 2]}]}},
        {"status": "success", "data": {"resultType": "scalar", "result": [1, "abc"]}},
        {"status": "success", "data": {"resultType": "string", "result": [1, "x"]}},
        {"status": "weird", "data": {"resultType": "scalar", "result": [1, "1"]}},
        ["not", "an", "object"],
    ],
)
def test_malformed_answers_raise_analysis_error_naming_query_and_url(body: Any) -> None:
    prom = client_for(lambda _r: httpx.Response(200, json=body))
    with pytest.raises(AnalysisError) as err:
        prom.query(QUERY)
    assert QUERY in str(err.value) and URL in str(err.value)


def test_non_json_answer_is_an_error() -> None:
    prom = client_for(lambda _r: httpx.Response(404, text="404 page not found"))
    with pytest.raises(AnalysisError, match="HTTP 404, not a JSON answer: '404 page not found'"):
        prom.query(QUERY)


def test_connection_errors_are_retried_then_reported_as_unreachable() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    prom = client_for(handler, retries=2)
    with pytest.raises(AnalysisError, match=rf"prometheus unreachable at {URL}: ConnectError"):
        prom.query(QUERY)
    assert len(calls) == 3


def test_timeouts_are_retried_and_a_later_success_is_returned() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            raise httpx.ReadTimeout("timed out", request=request)
        return vector("7")

    assert client_for(handler, retries=2).query(QUERY) == 7.0
    assert len(calls) == 3


def test_a_timeout_says_prometheus_was_slow_not_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(AnalysisError, match=r"gave no answer within 5s: ReadTimeout.*2 attempts"):
        client_for(handler, retries=1).query(QUERY)


def test_queries_within_a_budget_stop_retrying_when_it_is_used_up() -> None:
    """Regression: a slow Prometheus held a tick for every attempt (3 x 5 s + backoff),
    longer than the driver's 15 s lease; a look now has one budget for all its queries."""
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.extensions["timeout"]["read"])
        time.sleep(0.3)
        raise httpx.ReadTimeout("timed out", request=request)

    prom = client_for(handler, retries=5, timeout=5.0)
    started = time.monotonic()
    with prom.within(0.5), pytest.raises(AnalysisError, match=r"budget of 0.5s is used up"):
        prom.query(QUERY)
        prom.query(QUERY)
    assert time.monotonic() - started < 1.5
    assert len(calls) <= 2 and all(t <= 0.5 for t in calls), "attempts get what is left"
    # Outside the block, no budget: every attempt has the full timeout again.
    calls.clear()
    with pytest.raises(AnalysisError, match=r"6 attempts"):
        client_for(handler, retries=5, timeout=5.0).query(QUERY)
    assert calls == [5.0] * 6


#: A Prometheus answer sent one byte every 0.5 s after prompt headers: 38.5 s in all.
TRICKLED = Reply(
    200,
    json.dumps(
        {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "7"]}}
    ).encode(),
    trickle=0.5,
    trickle_body_only=True,
)


@pytest.fixture(scope="module")
def trickling_prometheus() -> Iterator[str]:
    """A real HTTP server answering every query with TRICKLED."""
    yield from serve(lambda _req: TRICKLED)


def test_a_prometheus_trickling_its_answer_is_cut_at_the_budget(trickling_prometheus: str) -> None:
    """A slow proxy or an overloaded Prometheus sending its JSON a byte at a time: no read
    ever times out, yet the answer takes 38.5 s. The look's budget bounds the whole answer:
    the query fails at 1 s, saying the budget is used up (a missing look: never a
    promotion), not after 38.5 s with a value."""
    assert len(TRICKLED.trickled()) * 0.5 == 38.5
    prom = PrometheusClient(trickling_prometheus, timeout=5.0, retries=2, backoff=0.0)
    began = time.monotonic()
    with prom.within(1.0), pytest.raises(AnalysisError) as failed:
        prom.query(QUERY)
    took = time.monotonic() - began
    print(f"trickling Prometheus: cut after {took:.2f}s (1 s budget)")
    assert took < 1.6, f"the query took {took:.2f}s in a 1 s budget"
    message = str(failed.value)
    assert "gave no answer within 1s: ReadTimeout" in message
    assert "budget of 1s is used up" in message


def test_unavailable_answers_are_retried_and_the_last_one_reported() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, text="<html>overloaded</html>")

    with pytest.raises(AnalysisError, match="HTTP 503"):
        client_for(handler, retries=1).query(QUERY)
    assert len(calls) == 2


def test_rejected_credentials_are_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401, text="unauthorized")

    with pytest.raises(AnalysisError, match=r"credentials rejected \(HTTP 401\)"):
        client_for(handler).query(QUERY)
    assert len(calls) == 1


def test_urls_with_credentials_or_query_are_refused_without_echoing_them() -> None:
    for url in ("https://alice:hunter2@prom.example:8443/p", "https://prom.example/p?token=abc"):
        with pytest.raises(SpecError, match="use auth") as err:
            PrometheusClient(url)
        assert "hunter2" not in str(err.value) and "abc" not in str(err.value)


def test_redact_url_keeps_scheme_host_port_and_path_only() -> None:
    assert redact_url("http://u:p@[::1]:9090/x?q=1#f") == "http://[::1]:9090/x"
    assert redact_url("http://host/prom") == "http://host/prom"


@pytest.mark.parametrize(
    ("url", "kwargs"),
    [("ftp://host", {}), ("not a url", {}), (URL, {"timeout": 0}), (URL, {"retries": -1})],
)
def test_invalid_client_settings_are_spec_errors(url: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        PrometheusClient(url, **kwargs)


# --- auth -------------------------------------------------------------------------


def capture_auth(auth: Auth, **kwargs: Any) -> tuple[PrometheusClient, list[str | None]]:
    headers: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers.get("Authorization"))
        return vector("1")

    return client_for(handler, auth=auth, **kwargs), headers


def test_bearer_token_file_is_sent_and_reread_on_each_query(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    prom, headers = capture_auth(Auth(bearer_token_file=str(token)))
    prom.query(QUERY)
    token.write_text("rotated-token")
    prom.query(QUERY)
    assert headers == ["Bearer first-token", "Bearer rotated-token"]


def basic(userpass: str) -> str:
    return "Basic " + base64.b64encode(userpass.encode()).decode()


def test_basic_auth_from_file_and_from_username_with_password_file(tmp_path: Path) -> None:
    (tmp_path / "basic").write_text("alice:pa:ss\n")
    (tmp_path / "pw").write_text("hunter2\n")
    prom, headers = capture_auth(Auth(basic_auth_file=str(tmp_path / "basic")))
    prom.query(QUERY)
    prom2, headers2 = capture_auth(Auth(username="bob", password_file=str(tmp_path / "pw")))
    prom2.query(QUERY)
    assert headers == [basic("alice:pa:ss")]
    assert headers2 == [basic("bob:hunter2")]


def test_secret_ref_is_resolved_through_the_given_reader() -> None:
    reads = []

    def secrets(name: str, key: str) -> bytes:
        reads.append((name, key))
        return b"tok-from-secret" if key == "token" else b"carol:pw"

    prom, headers = capture_auth(Auth(secret_ref=SecretRef("prom-auth", "token")), secrets=secrets)
    prom.query(QUERY)
    basic_auth = Auth(secret_ref=SecretRef("prom-auth", "basic"), secret_scheme="basic")
    prom2, headers2 = capture_auth(basic_auth, secrets=secrets)
    prom2.query(QUERY)
    assert headers == ["Bearer tok-from-secret"] and headers2 == [basic("carol:pw")]
    assert reads == [("prom-auth", "token"), ("prom-auth", "basic")]


def test_secret_ref_without_a_reader_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"auth\.secretRef"):
        PrometheusClient(URL, auth=Auth(secret_ref=SecretRef("s", "k")))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"bearer_token_file": "/a", "basic_auth_file": "/b"},
        {"username": "bob"},
        {"password_file": "/pw"},
        {"secret_ref": SecretRef("", "k")},
        {"secret_ref": SecretRef("s", "k"), "secret_scheme": "digest"},
    ],
)
def test_auth_needs_exactly_one_complete_source(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        Auth(**kwargs)


def test_auth_from_camel_case_mapping() -> None:
    spec = {"secretRef": {"name": "prom", "key": "creds"}, "scheme": "basic"}
    assert Auth.from_mapping(spec) == Auth(
        secret_ref=SecretRef("prom", "creds"), secret_scheme="basic"
    )
    assert Auth.from_mapping({"bearerTokenFile": "/t"}) == Auth(bearer_token_file="/t")
    with pytest.raises(SpecError, match=r"auth\.token: unknown field"):
        Auth.from_mapping({"token": "inline-secrets-are-not-accepted"})


def test_unreadable_or_empty_credentials_fail_without_showing_content(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    prom, _ = capture_auth(Auth(bearer_token_file=str(missing)))
    with pytest.raises(AnalysisError, match=r"cannot read credential file .*missing"):
        prom.query(QUERY)
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    prom, _ = capture_auth(Auth(bearer_token_file=str(empty)))
    with pytest.raises(AnalysisError, match="is empty"):
        prom.query(QUERY)
    broken = tmp_path / "broken"
    broken.write_text("abc\x01def")
    prom, _ = capture_auth(Auth(bearer_token_file=str(broken)))
    with pytest.raises(AnalysisError, match="control characters") as err:
        prom.query(QUERY)
    assert "abc" not in str(err.value)


def test_credentials_never_reach_messages_reprs_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "tok-ABCDEF-123456"
    (tmp_path / "token").write_text(secret)
    auth = Auth(bearer_token_file=str(tmp_path / "token"))

    def echoing_proxy(request: httpx.Request) -> httpx.Response:
        # A careless proxy echoing request headers in its error page.
        return httpx.Response(502, text=f"bad gateway: got {request.headers['authorization']}")

    prom = client_for(echoing_proxy, auth=auth, retries=1)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AnalysisError) as err:
        prom.query(QUERY)
    assert "<redacted>" in str(err.value)
    for text in (str(err.value), repr(prom), repr(auth), caplog.text):
        assert secret not in text


def grouped(*pairs: tuple[str, str]) -> httpx.Response:
    samples = [{"metric": {"le": le}, "value": [1.0, v]} for le, v in pairs]
    return answer("vector", samples)


def test_grouped_query_maps_label_values_to_values_and_drops_nan() -> None:
    prom = client_for(lambda _r: grouped(("0.1", "5"), ("+Inf", "9"), ("1", "NaN")))
    assert prom.query_by("sum by (le) (x)", "le") == {"0.1": 5.0, "+Inf": 9.0}


def test_grouped_query_of_nothing_is_empty() -> None:
    assert client_for(lambda _r: grouped()).query_by("sum by (le) (x)", "le") == {}


@pytest.mark.parametrize(
    "response",
    [
        answer("vector", [{"metric": {}, "value": [1.0, "1"]}]),
        grouped(("0.1", "1"), ("0.1", "2")),
        answer("scalar", [1.0, "3"]),
    ],
)
def test_grouped_query_without_the_label_duplicates_or_scalars_is_an_error(response) -> None:
    with pytest.raises(AnalysisError):
        client_for(lambda _r: response).query_by("sum by (le) (x)", "le")

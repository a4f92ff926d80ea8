"""Webhooks against a real local HTTP receiver."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from canaryctl.errors import SpecError
from canaryctl.providers.webhooks import (
    DEFAULT_TIMEOUT,
    GATES,
    HookType,
    Webhook,
    WebhookClient,
    payload,
)
from providers.httpstub import Receiver, Reply

RUN = {"name": "cart", "namespace": "shop", "phase": "Progressing"}


@pytest.fixture
def client() -> Iterator[WebhookClient]:
    with WebhookClient(backoff=0.0) as hooks:
        yield hooks


def hook(url: str, hook_type: HookType = HookType.ROLLOUT, **kwargs) -> Webhook:
    return Webhook(name=f"{hook_type}-hook", url=url, type=hook_type, **kwargs)


def test_200_passes_and_the_flagger_payload_is_posted(
    client: WebhookClient, receiver: Receiver
) -> None:
    url = receiver.route("/load", Reply(200, b"started"))
    load = hook(url, metadata={"cmd": "hey -z 1m http://cart-canary/"})
    result = client.call(load, payload(load, **RUN, checksum="abc123"))
    assert result.passed and result.status_code == 200
    assert result.message == "HTTP 200: started" and result.duration > 0
    (request,) = receiver.hits("/load")
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "name": "cart",
        "namespace": "shop",
        "phase": "Progressing",
        "checksum": "abc123",
        "type": "rollout",
        "metadata": {"cmd": "hey -z 1m http://cart-canary/"},
    }


def test_500_fails_with_the_response_body_in_the_message(
    client: WebhookClient, receiver: Receiver
) -> None:
    url = receiver.route("/test", Reply(500, b"3 tests failed"))
    result = client.call(hook(url, retries=0), payload(hook(url), **RUN))
    assert not result.passed
    assert (result.status_code, result.message) == (500, "HTTP 500: 3 tests failed")


def test_timeout_fails_and_is_not_retried(client: WebhookClient, receiver: Receiver) -> None:
    url = receiver.route("/slow", Reply(200, b"late", delay=1.0))
    slow = hook(url, timeout=0.2, retries=3)
    result = client.call(slow, payload(slow, **RUN))
    assert not result.passed and result.status_code is None
    assert result.message == "timed out after 0.2s"
    assert len(receiver.hits("/slow")) == 1
    assert result.duration < 0.9


def test_unreachable_hook_fails_after_retries(client: WebhookClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = hook(f"http://127.0.0.1:{port}/", retries=2)
    result = client.call(dead, payload(dead, **RUN))
    assert not result.passed and result.status_code is None
    assert result.message.startswith("unreachable: ConnectError")


def test_gateway_errors_are_retried_until_the_hook_answers(
    client: WebhookClient, receiver: Receiver
) -> None:
    replies = iter([Reply(503), Reply(502), Reply(200, b"ok")])
    url = receiver.route("/flaky", lambda _req: next(replies))
    result = client.call(hook(url, retries=2), payload(hook(url), **RUN))
    assert result.passed and len(receiver.hits("/flaky")) == 3


def test_redirects_are_not_followed(client: WebhookClient, receiver: Receiver) -> None:
    url = receiver.route("/moved", Reply(302))
    result = client.call(hook(url), payload(hook(url), **RUN))
    assert not result.passed and result.status_code == 302


@pytest.mark.parametrize(("status", "opens"), [(200, True), (202, True), (403, False)])
def test_gates_open_only_on_200_to_202(
    client: WebhookClient, receiver: Receiver, status: int, opens: bool
) -> None:
    url = receiver.route("/gate", Reply(status))
    gate = hook(url, HookType.CONFIRM_PROMOTION)
    (result,) = client.run([gate], HookType.CONFIRM_PROMOTION, **RUN)
    assert gate.type in GATES and result.passed is opens
    assert receiver.hits("/gate")[0].json()["type"] == "confirm-promotion"


@pytest.mark.parametrize(("status", "rollback"), [(200, True), (403, False), (500, False)])
def test_rollback_hook_asks_for_rollback_only_when_it_answers_ok(
    client: WebhookClient, receiver: Receiver, status: int, rollback: bool
) -> None:
    url = receiver.route("/rollback", Reply(status))
    (result,) = client.run([hook(url, HookType.ROLLBACK, retries=0)], HookType.ROLLBACK, **RUN)
    assert result.rollback_requested is rollback


def test_a_passing_rollout_hook_never_requests_rollback(
    client: WebhookClient, receiver: Receiver
) -> None:
    url = receiver.route("/ok", Reply(200))
    (result,) = client.run([hook(url)], HookType.ROLLOUT, **RUN)
    assert result.passed and not result.rollback_requested


def test_run_calls_only_hooks_of_the_requested_type_in_order(
    client: WebhookClient, receiver: Receiver
) -> None:
    hooks = [
        hook(receiver.route("/a", Reply(200)), HookType.PRE_ROLLOUT),
        hook(receiver.route("/b", Reply(200)), HookType.ROLLOUT),
        Webhook("second", receiver.route("/c", Reply(500)), HookType.PRE_ROLLOUT, retries=0),
    ]
    results = client.run(hooks, HookType.PRE_ROLLOUT, **RUN)
    assert [(r.name, r.passed) for r in results] == [("pre-rollout-hook", True), ("second", False)]
    assert [r.path for r in receiver.requests] == ["/a", "/c"]


def test_event_hooks_get_the_event_in_metadata_and_failures_are_only_logged(
    client: WebhookClient, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    ok = Webhook(
        "slack",
        receiver.route("/events", Reply(200)),
        HookType.EVENT,
        metadata={"channel": "#deploys", "eventType": "ignored: event fields win"},
    )
    broken = Webhook("broken", receiver.route("/broken", Reply(500)), HookType.EVENT, retries=0)
    caplog.set_level(logging.WARNING)
    results = client.notify(
        [ok, broken, hook(receiver.route("/x", Reply(200)))],
        **RUN,
        message="weight 10% -> 20%",
        event_type="Normal",
        timestamp_ms=1700000000123,
    )
    assert [r.passed for r in results] == [True, False]
    assert receiver.hits("/events")[0].json() == {
        **RUN,
        "type": "event",
        "metadata": {
            "channel": "#deploys",
            "eventMessage": "weight 10% -> 20%",
            "eventType": "Normal",
            "timestamp": "1700000000123",
        },
    }
    assert "event hook broken failed: HTTP 500" in caplog.text
    assert not receiver.hits("/x")


def test_metadata_is_never_shown_in_repr() -> None:
    secret_hook = Webhook("h", "http://hook.local/", metadata={"token": "very-secret"})
    assert "very-secret" not in repr(secret_hook)


def test_webhook_from_resource_form_parses_durations_and_defaults() -> None:
    parsed = Webhook.from_mapping(
        {"name": "helm", "type": "pre-rollout", "url": "http://t/", "timeout": "1m30s"}
    )
    assert (parsed.type, parsed.timeout, parsed.retries) == (HookType.PRE_ROLLOUT, 90.0, 2)
    default = Webhook.from_mapping({"name": "load", "url": "http://t/"})
    assert (default.type, default.timeout) == (HookType.ROLLOUT, DEFAULT_TIMEOUT)


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "h", "url": "http://t/", "type": "pre-promotion"},
        {"name": "h", "url": "http://t/", "timeout": "10"},
        {"name": "h", "url": "http://t/", "timeout": "0s"},
        {"name": "h", "url": "http://t/", "retries": "3"},
        {"name": "h", "url": "http://t/", "metadata": ["a"]},
        {"name": "h", "url": "http://t/", "metadata": {"n": 1}},
        {"name": "h", "url": "ftp://t/"},
        {"name": "", "url": "http://t/"},
        {"name": "h", "url": "http://t/", "header": "x"},
    ],
)
def test_invalid_webhook_specs_are_spec_errors(spec: dict) -> None:
    with pytest.raises(SpecError):
        Webhook.from_mapping(spec)


# --- a budget shared by the calls of one tick -----------------------------------------


def test_a_slow_hook_is_cut_at_the_budget_and_the_next_is_not_called(
    client: WebhookClient, receiver: Receiver
) -> None:
    """A hook answering after 3 s, with its own 10 s timeout, inside a 0.5 s budget: the call
    fails at the budget (a failed call, like any timeout), and a hook after it is not made."""
    slow = hook(receiver.route("/slow", Reply(200, b"late", delay=3.0)), timeout=10.0)
    after = hook(receiver.route("/after", Reply(200)), HookType.CONFIRM_PROMOTION)
    with client.within(0.5):
        (cut,) = client.run([slow], HookType.ROLLOUT, **RUN)
        (skipped,) = client.run([after], HookType.CONFIRM_PROMOTION, **RUN)
    assert not cut.passed and cut.status_code is None
    assert cut.message.startswith("timed out after 0.5s, what was left of this tick's budget")
    assert cut.message.endswith("(hook timeout 10s)")
    assert cut.duration < 1.0
    assert not skipped.passed and skipped.message.startswith("not called: no time left")
    assert receiver.hits("/after") == []


def test_retries_stop_when_the_budget_is_spent(receiver: Receiver) -> None:
    url = receiver.route("/busy", Reply(503, b"busy", delay=0.2))
    busy = hook(url, retries=10)
    started = time.monotonic()
    with WebhookClient(backoff=0.1) as hooks, hooks.within(0.6):
        result = hooks.call(busy, payload(busy, **RUN))
    assert not result.passed and "not retried: no time left" in result.message
    assert 1 <= len(receiver.hits("/busy")) < 4
    assert time.monotonic() - started < 1.0


def test_a_nested_budget_never_extends_the_outer_one(
    client: WebhookClient, receiver: Receiver
) -> None:
    slow = hook(receiver.route("/slow", Reply(200, delay=3.0)), timeout=10.0)
    started = time.monotonic()
    with client.within(0.3), client.within(5.0):
        result = client.call(slow, payload(slow, **RUN))
    assert not result.passed and time.monotonic() - started < 0.8

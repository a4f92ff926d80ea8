"""Flagger-compatible webhooks: gates, load-test hooks, rollback requests, events.

Every call yields a `WebhookResult`; `passed` is True only for HTTP 200-202
(Flagger's rule). A timeout, a connection error or any other status is a failed
call, never a pass. What a pass means depends on the hook type:

- gates (`confirm-rollout`, `confirm-traffic-increase`, `confirm-promotion`): open
  on a pass, otherwise the rollout keeps waiting;
- checks (`pre-rollout`, `rollout`): a failure counts as a failed check;
- `rollback`: a pass asks for a rollback;
- `post-rollout` and `event`: informative; failures are logged, never acted on.

An attempt is bounded in all by its timeout: connect, request, status line, headers and
body (`_deadline`; Flagger's Go client bounds its calls the same way), not only each read,
so a hook trickling its answer a byte at a time is cut like a silent one.

Calls made inside `WebhookClient.within(seconds)` share that budget: each attempt's
timeout is capped at what is left, retries stop when it is spent, and a hook reached with
no time left is not called. A cut-short call is a failed call like any timeout (a driver
ticks under a lease: a slow hook must not hold a tick until another process takes over).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import httpx

from canaryctl.core.models import field_path
from canaryctl.errors import SpecError
from canaryctl.providers import _deadline
from canaryctl.providers.prometheus import redact_url

__all__ = [
    "DEFAULT_TIMEOUT",
    "GATES",
    "HookType",
    "Webhook",
    "WebhookClient",
    "WebhookResult",
    "event_payload",
    "payload",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds per attempt when a hook sets none; Flagger's default too."""

_PASS_STATUSES = range(200, 203)
# Worth another attempt: the request never reached the hook, or a gateway in front
# of it could not reach it. Hooks are called every interval anyway, so they must
# tolerate being called twice.
_RETRY_STATUSES = frozenset({502, 503, 504})
_BODY_SNIPPET = 300
#: Seconds below which a budget counts as spent (too little for a request and its answer).
_MIN_LEFT = 0.05
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class HookType(StrEnum):
    """When a hook runs (names as in Flagger)."""

    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    ROLLBACK = "rollback"
    EVENT = "event"


GATES = frozenset(
    {HookType.CONFIRM_ROLLOUT, HookType.CONFIRM_TRAFFIC_INCREASE, HookType.CONFIRM_PROMOTION}
)


def _seconds(text: str, field_name: str) -> float:
    """Parse a Go-style duration such as "15s", "3m" or "1m30s"."""
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text) or total <= 0:
        raise SpecError(field_name, f"{text!r} is not a positive duration like 10s or 1m")
    return total


@dataclass(frozen=True)
class Webhook:
    """One configured hook. `metadata` is sent as-is and never logged (it may hold tokens)."""

    name: str
    url: str
    type: HookType = HookType.ROLLOUT
    timeout: float = DEFAULT_TIMEOUT
    retries: int = 2
    metadata: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)

    def __post_init__(self) -> None:
        where = f"webhooks.{self.name or '?'}"
        if not self.name:
            raise SpecError("webhooks", "every webhook needs a name")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SpecError(f"{where}.url", f"not an http(s) URL: {redact_url(self.url)}")
        if not isinstance(self.type, HookType):
            raise SpecError(f"{where}.type", f"unknown type {self.type!r}")
        if not self.timeout > 0:
            raise SpecError(f"{where}.timeout", "must be positive")
        if self.retries < 0:
            raise SpecError(f"{where}.retries", "must be >= 0")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()):
            raise SpecError(f"{where}.metadata", "keys and values must be strings")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @classmethod
    def from_mapping(
        cls,
        spec: Mapping[str, Any],
        *,
        where: str | None = None,
        max_timeout: float | None = None,
        why: str = "",
    ) -> Webhook:
        """Build from the resource form: name, url, type, timeout ("10s"), retries, metadata.

        `where` names the hook in errors (default `webhooks.<name>`; a spec's list gives
        e.g. `analysis.webhooks[2]`). With `max_timeout`, a longer `timeout` is refused
        (`why`: what the limit is, e.g. "a tick may spend on calls") and a hook without one
        gets the default cut to it.
        """
        name = str(spec.get("name", ""))
        named = f"webhooks.{name or '?'}"
        where = where or named
        unknown = sorted(set(spec) - {"name", "url", "type", "timeout", "retries", "metadata"})
        if unknown:
            raise SpecError(field_path((where, unknown[0])), "unknown field")
        try:
            hook_type = HookType(spec.get("type", HookType.ROLLOUT.value))
        except ValueError:
            known = ", ".join(t.value for t in HookType)
            raise SpecError(f"{where}.type", f"must be one of {known}") from None
        timeout = spec.get("timeout")
        retries = spec.get("retries", 2)
        if not isinstance(retries, int) or isinstance(retries, bool):
            raise SpecError(f"{where}.retries", "must be an integer")
        metadata = spec.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise SpecError(f"{where}.metadata", "must be a mapping of strings")
        if timeout is None:
            seconds = DEFAULT_TIMEOUT if max_timeout is None else min(DEFAULT_TIMEOUT, max_timeout)
        else:
            seconds = _seconds(str(timeout), f"{where}.timeout")
            if max_timeout is not None and seconds > max_timeout:
                raise SpecError(
                    f"{where}.timeout",
                    f"{timeout} exceeds the {max_timeout:g}s {why or 'limit'}; "
                    f"use at most {max_timeout:g}s",
                )
        try:
            return cls(
                name=name,
                url=str(spec.get("url", "")),
                type=hook_type,
                timeout=seconds,
                retries=retries,
                metadata=dict(metadata),
            )
        except SpecError as exc:
            # Checked by the constructor, named as the caller names the hook.
            if where == named or not exc.field.startswith(named):
                raise
            raise SpecError(where + exc.field[len(named) :], exc.reason) from None


@dataclass(frozen=True)
class WebhookResult:
    """The outcome of one hook call; `duration` in seconds, all attempts included."""

    name: str
    type: HookType
    passed: bool
    status_code: int | None
    message: str
    duration: float

    @property
    def rollback_requested(self) -> bool:
        """A rollback hook that answered 200-202 asks to roll back."""
        return self.type is HookType.ROLLBACK and self.passed


def payload(
    hook: Webhook,
    *,
    name: str,
    namespace: str,
    phase: str,
    checksum: str | None = None,
) -> dict[str, Any]:
    """The JSON body of a hook call, as Flagger sends it."""
    body: dict[str, Any] = {"name": name, "namespace": namespace, "phase": phase}
    if checksum is not None:
        body["checksum"] = checksum
    body["type"] = hook.type.value
    body["metadata"] = dict(hook.metadata)
    return body


def event_payload(
    hook: Webhook,
    *,
    name: str,
    namespace: str,
    phase: str,
    message: str,
    event_type: str,
    timestamp_ms: int,
    checksum: str | None = None,
) -> dict[str, Any]:
    """The body of an event hook: the event in `metadata`, the hook's own metadata
    added without overriding the event fields (as Flagger does)."""
    body = payload(hook, name=name, namespace=namespace, phase=phase, checksum=checksum)
    event = {"eventMessage": message, "eventType": event_type, "timestamp": str(timestamp_ms)}
    body["metadata"] = {**hook.metadata, **event}
    return body


class WebhookClient:
    """Calls hooks over HTTP POST with JSON bodies; never raises for a failing hook."""

    def __init__(
        self, *, backoff: float = 0.5, transport: httpx.BaseTransport | None = None
    ) -> None:
        """`backoff * 2**n` seconds separate retries of one call."""
        self._backoff = backoff
        # Redirects are not followed: a hook answers for itself.
        self._http = _deadline.client(transport=transport, follow_redirects=False)
        # Monotonic time by which the calls of the current budget must be done (`within`).
        self._deadline: float | None = None

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    def __enter__(self) -> WebhookClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """Bound every call made inside the block, retries included, to `seconds` in all.

        Nested budgets never extend an outer one. A call cut short by the budget fails,
        saying so; a hook reached with nothing left is not called (and fails the same way).
        """
        outer = self._deadline
        deadline = time.monotonic() + max(seconds, 0.0)
        if outer is None or deadline < outer:
            self._deadline = deadline
        try:
            yield
        finally:
            self._deadline = outer

    def _left(self) -> float | None:
        """Seconds the current budget has left (None: no budget)."""
        if self._deadline is None:
            return None
        return self._deadline - time.monotonic()

    def call(self, hook: Webhook, body: Mapping[str, Any]) -> WebhookResult:
        """POST `body` to the hook; retries connection failures and 502/503/504."""
        started = time.monotonic()
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        attempts = hook.retries + 1
        status: int | None = None
        message = ""
        spent = "no time left in this tick's budget"
        for attempt in range(attempts):
            if attempt:
                pause = self._backoff * 2 ** (attempt - 1)
                left = self._left()
                if left is not None and left - pause <= _MIN_LEFT:
                    message += f"; not retried: {spent}"
                    break
                time.sleep(pause)
            left = self._left()
            if left is not None and left <= _MIN_LEFT:
                if not attempt:
                    status, message = None, f"not called: {spent}"
                break
            timeout = hook.timeout if left is None else min(hook.timeout, left)
            try:
                # The whole call within `timeout`, the body included: a hook trickling its
                # answer must not hold the tick past its budget.
                response = _deadline.post(
                    self._http, hook.url, seconds=timeout, content=data, headers=headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                status, message = None, f"unreachable: {type(exc).__name__}: {exc}"
                continue
            except httpx.TimeoutException:
                # The hook may be working on it (a load test): calling again would
                # start the work twice, so a read timeout is final.
                if timeout < hook.timeout:
                    message = (
                        f"timed out after {timeout:.1f}s, what was left of this tick's budget "
                        f"(hook timeout {hook.timeout:g}s)"
                    )
                else:
                    message = f"timed out after {timeout:g}s"
                status = None
                break
            except httpx.TransportError as exc:
                status, message = None, f"failed: {type(exc).__name__}: {exc}"
                break
            status = response.status_code
            snippet = response.text.strip()[:_BODY_SNIPPET]
            message = f"HTTP {status}" + (f": {snippet}" if snippet else "")
            if status not in _RETRY_STATUSES:
                break
        passed = status is not None and status in _PASS_STATUSES
        return WebhookResult(
            name=hook.name,
            type=hook.type,
            passed=passed,
            status_code=status,
            message=message,
            duration=time.monotonic() - started,
        )

    def run(
        self,
        hooks: Iterable[Webhook],
        hook_type: HookType,
        *,
        name: str,
        namespace: str,
        phase: str,
        checksum: str | None = None,
    ) -> list[WebhookResult]:
        """Call every hook of `hook_type` in order and return all results."""
        results = []
        for hook in hooks:
            if hook.type is not hook_type:
                continue
            body = payload(hook, name=name, namespace=namespace, phase=phase, checksum=checksum)
            result = self.call(hook, body)
            level = logging.DEBUG if result.passed else logging.INFO
            log.log(level, "webhook %s (%s): %s", hook.name, hook.type, result.message)
            results.append(result)
        return results

    def notify(
        self,
        hooks: Iterable[Webhook],
        *,
        name: str,
        namespace: str,
        phase: str,
        message: str,
        event_type: str = "Normal",
        timestamp_ms: int | None = None,
        checksum: str | None = None,
    ) -> list[WebhookResult]:
        """Send one event to every `event` hook; failures are logged, never raised."""
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        results = []
        for hook in hooks:
            if hook.type is not HookType.EVENT:
                continue
            body = event_payload(
                hook,
                name=name,
                namespace=namespace,
                phase=phase,
                message=message,
                event_type=event_type,
                timestamp_ms=stamp,
                checksum=checksum,
            )
            result = self.call(hook, body)
            if result.passed:
                log.debug("event hook %s: %s", hook.name, result.message)
            else:
                log.warning("event hook %s failed: %s", hook.name, result.message)
            results.append(result)
        return results

"""Webhooks inside a tick's budget, against a real slow HTTP server in this process.

A tick holds the lease (15 s); hooks used to run outside the look's budget, so three slow
hooks with the default 10 s timeout could hold one tick for 30 s while another process
took over. Now a tick's hooks and queries share one budget, and a hook cut short counts as
a failed call: gates stay shut, a rollback hook asks for nothing, a rollout hook counts a
failure, and nothing is promoted on the missing answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from canaryctl.core.models import CanaryStatus, Phase, parse_spec
from canaryctl.driver import analysis as analysis_module
from canaryctl.driver.analysis import TICK_SECONDS, Analysis
from canaryctl.kube.store import LEASE_SECONDS
from canaryctl.providers.webhooks import WebhookClient
from providers.httpstub import Reply, serve

#: Each hook answers 200 (gate open, load test passed, rollback asked) after this long.
DELAY = 4.0


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    """A real HTTP server that answers every request with 200 after DELAY seconds."""
    yield from serve(lambda _req: Reply(200, b"ok", delay=DELAY))


def analysis(url: str, *types: str) -> Analysis:
    hooks: list[dict[str, Any]] = [
        {"name": t, "type": t, "url": f"{url}/{t}", "timeout": "10s", "retries": 0} for t in types
    ]
    spec = parse_spec(
        {
            "name": "app",
            "stable": "app-v1",
            "canary": "app-v2",
            "service": "app",
            "steps": [{"setWeight": 10}, {"pause": {}}],
            "analysis": {"interval": "1s", "webhooks": hooks},
        }
    )
    built = Analysis.from_spec(spec)
    assert built is not None
    built.hooks = WebhookClient(backoff=0.0)
    return built


def first_look(a: Analysis) -> CanaryStatus:
    status = CanaryStatus(phase=Phase.PROGRESSING)
    started = a.evaluate(status, 1000.0, ("v1", "v2"))  # opens the first window
    return status.model_copy(update={"analysis_state": started.state})


def test_the_tick_budget_is_half_the_lease() -> None:
    assert TICK_SECONDS == LEASE_SECONDS / 2


def test_slow_hooks_share_the_tick_budget_and_count_as_failed_calls(slow_url: str) -> None:
    a = analysis(slow_url, "rollout", "rollback", "confirm-promotion")
    status = first_look(a)
    began = time.monotonic()
    with a.tick_budget(1.0):
        result = a.evaluate(status, 1002.0, ("v1", "v2"))
    took = time.monotonic() - began
    # Three hooks of 10 s each would have held the tick 12 s (3 x DELAY); the budget holds.
    assert took < 1.6, f"the look took {took:.2f}s in a 1 s budget"
    state = result.state or {}
    assert state["rolloutFailures"] == 1, "a cut-short rollout hook is a failed check"
    assert state["rollbackRequested"] is None, "no answer is no rollback request"
    assert state["promotionConfirmed"] is False, "no answer never opens the promotion gate"
    assert result.verdict is not None and not result.verdict.promotion_allowed
    messages = {c.name: c.message for c in result.verdict.checks}
    assert "what was left of this tick's budget" in messages["webhook rollout (rollout)"]
    assert messages["webhook confirm-promotion (confirm-promotion)"].startswith("not called")


def test_a_look_without_a_tick_budget_gets_the_look_budget_in_all(
    slow_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside `tick_budget` (a look evaluated on its own) the look has LOOK_SECONDS in all
    (made 0.5 s here to keep the test short): two slow hooks do not get it twice."""
    monkeypatch.setattr(analysis_module, "LOOK_SECONDS", 0.5)
    a = analysis(slow_url, "rollout", "confirm-promotion")
    status = first_look(a)
    began = time.monotonic()
    result = a.evaluate(status, 1002.0, ("v1", "v2"))
    assert time.monotonic() - began < 1.0
    assert result.verdict is not None and not result.verdict.promotion_allowed


def test_event_hooks_after_the_look_get_only_what_is_left(slow_url: str) -> None:
    a = analysis(slow_url, "event", "event")
    began = time.monotonic()
    with a.tick_budget(0.5):
        a.notify("Progressing", "Normal", "WeightSet: 10%")
        a.notify("Progressing", "Normal", "Paused")
    assert time.monotonic() - began < 1.0

"""Webhooks inside a tick's budget, against a real slow HTTP server in this process.

A tick holds the lease (15 s); hooks used to run outside the look's budget, so three slow
hooks with the default 10 s timeout could hold one tick for 30 s while another process
took over. Now a tick's hooks and queries share one budget, and a hook cut short counts as
a failed call: gates stay shut, a rollback hook asks for nothing, a rollout hook counts a
failure, and nothing is promoted on the missing answers.

The budget bounds whole calls, not each read: a hook that trickled its answer a byte at a
time used to hold a call with a 1 s budget for 19.5 s, and its late 200 opened the gate.
A timeout the budget could never grant is refused when the spec is read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from canaryctl.core.models import CanarySpec, CanaryStatus, Phase, parse_spec
from canaryctl.driver import analysis as analysis_module
from canaryctl.driver.analysis import TICK_SECONDS, Analysis
from canaryctl.errors import SpecError
from canaryctl.kube.store import LEASE_SECONDS
from canaryctl.providers.webhooks import HookType, WebhookClient
from providers.httpstub import Reply, serve

#: Each hook answers 200 (gate open, load test passed, rollback asked) after this long.
DELAY = 4.0
#: The trickling hook sends one byte this often; its answer is 40 bytes, so 20 s in all.
TRICKLE = 0.5


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    """A real HTTP server that answers every request with 200 after DELAY seconds."""
    yield from serve(lambda _req: Reply(200, b"ok", delay=DELAY))


#: Two ways of trickling 40 bytes: the whole answer (status line and headers too), or a
#: prompt status line and headers followed by a trickled body.
TRICKLED = {
    "/whole": Reply(200, b"ok", trickle=TRICKLE),
    "/body": Reply(200, b"x" * 40, trickle=TRICKLE, trickle_body_only=True),
}


@pytest.fixture(scope="module")
def trickle_url() -> Iterator[str]:
    """A real HTTP server that answers 200 one byte every TRICKLE seconds (path: how)."""
    yield from serve(lambda req: TRICKLED["/" + req.path.split("/")[1]])


def canary(analysis_block: dict[str, Any]) -> CanarySpec:
    return parse_spec(
        {
            "name": "app",
            "stable": "app-v1",
            "canary": "app-v2",
            "service": "app",
            "steps": [{"setWeight": 10}, {"pause": {}}],
            "analysis": analysis_block,
        }
    )


def analysis(url: str, *types: str) -> Analysis:
    """Hooks of `types` at `url`/<type>, each with the longest timeout allowed (7.5 s)."""
    hooks: list[dict[str, Any]] = [
        {"name": t, "type": t, "url": f"{url}/{t}", "timeout": "7.5s", "retries": 0} for t in types
    ]
    built = Analysis.from_spec(canary({"interval": "1s", "webhooks": hooks}))
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
    # Three hooks of 7.5 s each would have held the tick 12 s (3 x DELAY); the budget holds.
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


# --- whole calls, not single reads --------------------------------------------------------


@pytest.mark.parametrize("how", ["/whole", "/body"])
def test_a_hook_trickling_its_answer_is_cut_at_the_budget_and_keeps_the_gate_shut(
    trickle_url: str, how: str
) -> None:
    """One byte every 0.5 s for 20 s never lets a read time out; the budget still holds.
    The gate's 200 would come at the end: cut at 1 s, the call failed and the gate is shut."""
    reply = TRICKLED[how]
    assert len(reply.trickled()) * TRICKLE == 20.0
    a = analysis(f"{trickle_url}{how}", "confirm-promotion")
    status = first_look(a)
    began = time.monotonic()
    with a.tick_budget(1.0):
        result = a.evaluate(status, 1002.0, ("v1", "v2"))
    took = time.monotonic() - began
    print(f"trickled {how}: cut after {took:.2f}s (1 s budget; the answer takes 20 s)")
    assert took < 1.6, f"the look took {took:.2f}s in a 1 s budget"
    assert (result.state or {})["promotionConfirmed"] is False, "a cut answer opens no gate"
    assert result.verdict is not None and not result.verdict.promotion_allowed
    (check,) = result.verdict.checks
    assert not check.passed
    assert check.message.startswith("timed out after 1.0s, what was left of this tick's budget")


def test_a_trickling_prometheus_is_a_missing_look_within_the_tick_budget(
    trickle_url: str,
) -> None:
    """The same through the look's Prometheus queries: cut at the budget, the look has no
    data, its warning says why, and nothing is promoted on it."""
    a = Analysis.from_spec(canary({"interval": "1s", "prometheus": {"url": f"{trickle_url}/body"}}))
    assert a is not None
    status = first_look(a)
    began = time.monotonic()
    with a.tick_budget(1.0):
        result = a.evaluate(status, 1002.0, ("v1", "v2"))
    took = time.monotonic() - began
    print(f"trickling Prometheus in a tick: cut after {took:.2f}s (1 s budget)")
    assert took < 1.6, f"the look took {took:.2f}s in a 1 s budget"
    assert result.verdict is None, "no verdict (and no promotion) on a missing look"
    assert "gave no answer within" in (result.warning or "")
    assert (result.state or {})["invalidLook"] is True


# --- timeouts the budget could never grant ------------------------------------------------


@pytest.mark.parametrize("hook_type", [t.value for t in HookType])
def test_a_hook_timeout_above_the_tick_budget_is_refused_naming_the_hook(hook_type: str) -> None:
    """Every hook type runs inside a tick's budget (pre-rollout and post-rollout too), so a
    timeout above it would be cut silently: refused instead, naming the hook's place."""
    hooks = [
        {"name": "fast", "type": hook_type, "url": "http://hook/", "timeout": "2s"},
        {"name": "helm-test", "type": hook_type, "url": "http://hook/", "timeout": "20s"},
    ]
    with pytest.raises(SpecError) as refused:
        Analysis.from_spec(canary({"webhooks": hooks}))
    assert refused.value.field == "analysis.webhooks[1].timeout"
    assert refused.value.reason == (
        "20s exceeds the 7.5s a tick may spend on webhooks and Prometheus queries in all "
        "(half the 15s lease); use at most 7.5s"
    )


def test_the_longest_hook_timeout_is_the_budget_and_the_default_is_cut_to_it() -> None:
    hooks = [
        {"name": "max", "url": "http://hook/", "timeout": "7.5s"},
        {"name": "millis", "url": "http://hook/", "timeout": "7500ms"},
        {"name": "default", "url": "http://hook/"},  # Flagger's 10 s, cut to the budget
    ]
    built = Analysis.from_spec(canary({"webhooks": hooks}))
    assert built is not None
    assert [h.timeout for h in built.webhooks] == [TICK_SECONDS] * 3


def test_other_hook_errors_name_the_hook_by_its_place_too() -> None:
    hooks = [{"name": "a", "url": "http://hook/"}, {"name": "b", "url": "ftp://hook/"}]
    with pytest.raises(SpecError) as refused:
        Analysis.from_spec(canary({"webhooks": hooks}))
    assert refused.value.field == "analysis.webhooks[1].url"


@pytest.mark.parametrize("timeout", [7.6, 20])
def test_a_prometheus_timeout_above_the_tick_budget_is_refused(timeout: float) -> None:
    block = {"prometheus": {"url": "http://prometheus:9090", "timeout": timeout}}
    with pytest.raises(SpecError) as refused:
        Analysis.from_spec(canary(block))
    assert refused.value.field == "analysis.prometheus.timeout"
    assert refused.value.reason.startswith(f"{timeout:g} exceeds the 7.5s a tick may spend")
    block["prometheus"]["timeout"] = 7.5
    assert Analysis.from_spec(canary(block)) is not None

"""Webhooks in a real rollout: a confirm-promotion gate, a rollback request, event and
post-rollout notifications (Flagger-compatible semantics)."""

from __future__ import annotations

import time

import pytest
from lightkube import Client
from lightkube.resources.apps_v1 import Deployment

from canaryctl.core.models import CanaryStatus, Phase, parse_spec
from canaryctl.driver.engine import Engine
from canaryctl.kube import manifests
from helpers import EXAMPLES, wait_until
from providers.httpstub import Receiver, Reply

pytestmark = pytest.mark.integration
SEED = EXAMPLES / "pulpocon-app"


def _seed(kube: Client, ns: str) -> None:
    files = [SEED / "service.yaml", SEED / "app-v1.yaml", SEED / "app-v2.yaml"]
    manifests.apply(kube, manifests.load(files), ns)
    wait_until(
        lambda: kube.get(Deployment, "pulpocon-app-v1", namespace=ns).status.readyReplicas == 10,
        timeout=60,
    )


def _spec(ns: str, hooks: list[dict]):
    return parse_spec(
        {
            "name": "hooked",
            "namespace": ns,
            "stable": "pulpocon-app-v1",
            "canary": "pulpocon-app-v2",
            "service": "pulpocon-app",
            "steps": [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}],
            "analysis": {"interval": "1s", "webhooks": hooks},
        }
    )


def test_confirm_promotion_gate_holds_until_it_answers_200_and_events_are_sent(
    kube: Client, namespace: str, receiver: Receiver
) -> None:
    _seed(kube, namespace)
    gate_open = {"value": False}
    receiver.route("/gate", lambda _r: Reply(200 if gate_open["value"] else 403))
    receiver.route("/events", Reply(202))
    receiver.route("/post", Reply(200))
    hooks = [
        {"name": "gate", "type": "confirm-promotion", "url": receiver.url + "/gate"},
        {"name": "slack", "type": "event", "url": receiver.url + "/events"},
        {"name": "done", "type": "post-rollout", "url": receiver.url + "/post"},
    ]
    engine = Engine(kube, _spec(namespace, hooks), record_events=False)
    deadline = time.monotonic() + 20
    status = engine.run(0.3, should_stop=lambda: time.monotonic() > deadline)
    assert status.phase is not Phase.SUCCEEDED, "the gate has not said yes"
    assert len(receiver.hits("/gate")) >= 2
    gate_open["value"] = True
    deadline = time.monotonic() + 60
    status = engine.run(0.3, should_stop=lambda: time.monotonic() > deadline)
    assert status.phase is Phase.SUCCEEDED
    events = [r.json() for r in receiver.hits("/events")]
    assert any("Succeeded" in e["metadata"]["eventMessage"] for e in events), events[-1]
    assert len(receiver.hits("/post")) == 1


def _failed_checks(status: CanaryStatus) -> list[str]:
    """Checks whose latest record failed: what `canaryctl get` shows as holding."""
    latest = {c.name: c.passed for c in status.history}
    return sorted(name for name, passed in latest.items() if not passed)


def test_rollout_and_traffic_gates_hold_the_canary_until_each_answers_200(
    kube: Client, namespace: str, receiver: Receiver
) -> None:
    _seed(kube, namespace)
    gates = {"/start": False, "/more": False}
    for path in gates:
        receiver.route(path, lambda r: Reply(200 if gates[r.path] else 403))
    hooks = [
        {"name": "start", "type": "confirm-rollout", "url": receiver.url + "/start"},
        {"name": "more", "type": "confirm-traffic-increase", "url": receiver.url + "/more"},
    ]
    engine = Engine(kube, _spec(namespace, hooks), record_events=False)

    def run_for(seconds: float):
        deadline = time.monotonic() + seconds
        return engine.run(0.3, should_stop=lambda: time.monotonic() > deadline)

    status = run_for(5)
    assert (status.phase, status.weight, status.canary_replicas) == (Phase.PENDING, 0, 0)
    assert _failed_checks(status) == ["webhook start (confirm-rollout)"], status.history
    assert len(receiver.hits("/start")) >= 2
    assert receiver.hits("/more") == [], "nothing else is asked before the rollout gate"
    gates["/start"] = True
    status = run_for(5)
    assert (status.phase, status.step_index, status.weight) == (Phase.PROGRESSING, 0, 0)
    assert status.canary_replicas == 0, "no canary pod for a rise the gate has not allowed"
    assert "webhook more (confirm-traffic-increase)" in _failed_checks(status), status.history
    assert len(receiver.hits("/more")) >= 2
    gates["/more"] = True
    status = run_for(60)
    assert status.phase is Phase.SUCCEEDED, status.message


def test_rollback_webhook_answering_200_rolls_back(
    kube: Client, namespace: str, receiver: Receiver
) -> None:
    _seed(kube, namespace)
    receiver.route("/rollback", Reply(200))
    hooks = [{"name": "kill", "type": "rollback", "url": receiver.url + "/rollback"}]
    spec = _spec(namespace, hooks)
    status = Engine(kube, spec, record_events=False).run(0.3)
    assert status.phase is Phase.ROLLED_BACK
    assert "rollback requested by webhook kill" in status.message
    assert kube.get(Deployment, "pulpocon-app-v1", namespace=namespace).status.readyReplicas == 10

"""A tick whose reads and store took longer than STALE_AFTER (a request held by an API
server that lost etcd) stores its decision but does not act on it; the next tick, from
fresh reads, does. On the real local cluster; only the engine's clock is moved."""

from __future__ import annotations

from lightkube import Client, codecs

from canaryctl.core.models import parse_spec
from canaryctl.driver.engine import STALE_AFTER, Engine
from canaryctl.kube.store import ConfigMapStore, Record
from helpers import app_deployment, app_service, replicas, wait_until


class HeldStore(ConfigMapStore):
    """The real ConfigMap store, whose writes "take" `hold` seconds of the engine's clock."""

    def __init__(self, client: Client, clock: list[float]) -> None:
        super().__init__(client)
        self.clock, self.hold = clock, 0.0

    def update(self, record: Record) -> Record:
        stored = super().update(record)
        self.clock[0] += self.hold
        return stored


def test_a_tick_slower_than_stale_after_stores_but_acts_only_on_fresh_reads(
    kube: Client, namespace: str
) -> None:
    for doc in (
        app_service(),
        app_deployment("app-v1", "v1", 3),
        app_deployment("app-v2", "v2", 0),
    ):
        kube.create(codecs.from_dict(doc), namespace=namespace)
    wait_until(lambda: replicas(kube, namespace, "app-v1") == (3, 3))
    spec = parse_spec({
        "name": "app", "namespace": namespace, "stable": "app-v1", "canary": "app-v2",
        "service": "app", "steps": [{"setWeight": 30}, {"setWeight": 100}],
    })  # fmt: skip
    now = [1_800_000_000.0]
    store = HeldStore(kube, now)
    engine = Engine(kube, spec, store=store, clock=lambda: now[0], record_events=False)
    engine.start()

    store.hold = STALE_AFTER + 1
    held = engine.tick()
    assert not held.acted
    assert replicas(kube, namespace, "app-v2")[0] == 0  # nothing scaled on stale reads
    stored = store.get("app", namespace)
    assert stored is not None and stored.status is not None  # the decision is stored

    store.hold = 0.0
    fresh = engine.tick()
    assert fresh.acted
    assert replicas(kube, namespace, "app-v2")[0] >= 1  # the same step, now acted on

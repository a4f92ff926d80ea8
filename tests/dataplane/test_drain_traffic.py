"""No request lost while a replica rollout moves capacity: the seed's app on the real node,
requests from the host through kube-proxy the whole time, counted by the probe.

The seed example carries a readiness probe and a 5 s preStop sleep (what the
graceful-shutdown warning asks for); canaryctl narrows the Service before a version
loses all its pods and waits for the EndpointSlices plus the drain delay.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from lightkube import Client

from canaryctl.core.models import CanaryStatus, Phase, parse_spec
from canaryctl.core.traffic import Outcome, Schedule, SplitMeter
from canaryctl.driver.engine import Engine
from canaryctl.driver.probe import ProbeSettings, run_probe
from canaryctl.kube.store import Store
from canaryctl.testenv import ClusterState, LocalCluster, images
from canaryctl.testenv.dataplane import on_real_node
from helpers import EXAMPLES, wait_until
from realnode import apply, available, cluster_ip, split

pytestmark = [pytest.mark.dataplane, pytest.mark.integration]
SEED = EXAMPLES / "pulpocon-app"
N = 4  # stable replicas (the example's 10, scaled down to spare the shared node)
RATE = 50.0  # requests per second during the rollout


def _docs() -> list[dict[str, Any]]:
    docs = []
    for name in ("service.yaml", "app-v1.yaml", "app-v2.yaml"):
        for doc in yaml.safe_load_all((SEED / name).read_text()):
            if doc["kind"] == "Deployment":
                doc = on_real_node(doc)
                doc["spec"]["replicas"] = N if doc["metadata"]["name"].endswith("v1") else 0
            docs.append(doc)
    return docs


@dataclass
class Traffic:
    """The probe running in a thread until stopped; failures kept with their time."""

    url: str
    meter: SplitMeter = field(default_factory=SplitMeter)
    failures: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        settings = ProbeSettings(self.url, Schedule(rate=RATE, duration=900), allow_remote=True)

        def keep(outcome: Outcome) -> None:
            if outcome.failed:
                self.failures.append(outcome)

        self.thread = threading.Thread(
            target=run_probe,
            args=(settings, self.meter),
            kwargs={"on_outcome": keep, "stop": self.stop},
            daemon=True,
        )
        self.thread.start()

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout=30)
        return self.meter.report(0.0)


@pytest.fixture
def seed(
    dataplane_cluster: ClusterState, dataplane_kube: Client, dataplane_namespace: str
) -> Iterator[Traffic]:
    """The seed's app (v1 x N ready, v2 x 0) on the real node, and traffic to its Service."""
    LocalCluster(dataplane_cluster.name).load_image(images.app_image())
    apply(dataplane_kube, dataplane_namespace, *_docs())
    wait_until(lambda: available(dataplane_kube, "pulpocon-app-v1", dataplane_namespace) == N,
               timeout=180)  # fmt: skip
    url = f"http://{cluster_ip(dataplane_kube, 'pulpocon-app', dataplane_namespace)}/"
    wait_until(lambda: split(url, 1, lambda r: r.headers["X-App-Version"])[0], timeout=30)
    traffic = Traffic(url)
    traffic.start()
    yield traffic
    traffic.stop.set()


def _spec(namespace: str, steps: list[dict[str, Any]]) -> Any:
    return parse_spec(
        {
            "name": "seed",
            "namespace": namespace,
            "stable": "pulpocon-app-v1",
            "canary": "pulpocon-app-v2",
            "service": "pulpocon-app",
            "steps": steps,
            "health": {"readyDeadline": "90s"},
        }
    )


def _report(what: str, took: float, report: dict[str, Any], failures: list[Outcome]) -> None:
    split_by = {v: s["requests"] for v, s in report["versions"].items()}
    print(
        f"\n{what}: {report['requests']} requests in {took:.0f}s, {report['failed']} failed "
        f"{[(round(f.sent, 1), f.status, f.error) for f in failures[:5]]}; by version {split_by}"
    )


def test_a_replica_rollout_with_traffic_running_loses_no_request(
    dataplane_kube: Client, dataplane_namespace: str, seed: Traffic
) -> None:
    steps = [{"setWeight": 25}, {"pause": "5s"}, {"setWeight": 50}, {"pause": "5s"},
             {"setWeight": 100}]  # fmt: skip
    started = time.monotonic()
    status = Engine(dataplane_kube, _spec(dataplane_namespace, steps), record_events=False).run(0.5)
    time.sleep(2)  # traffic after the old version is gone
    report = seed.finish()
    _report("rollout 25/50/100", time.monotonic() - started, report, seed.failures)
    assert status.phase is Phase.SUCCEEDED, status.message
    assert set(report["versions"]) == {"v1.0.0", "v2.0.0"}
    assert report["failed"] == 0, seed.failures[:10]


def test_an_aborted_replica_rollout_with_traffic_running_loses_no_request(
    dataplane_kube: Client, dataplane_namespace: str, seed: Traffic
) -> None:
    spec = _spec(dataplane_namespace, [{"setWeight": 50}, {"pause": {}}])
    engine = Engine(dataplane_kube, spec, record_events=False)
    result: list[CanaryStatus] = []
    runner = threading.Thread(target=lambda: result.append(engine.run(0.5)), daemon=True)
    started = time.monotonic()
    runner.start()
    store = Store(dataplane_kube)

    def paused() -> bool:
        record = store.get("seed", dataplane_namespace)
        return bool(record and record.status and record.status.get("phase") == "Paused")

    wait_until(paused, timeout=180)
    time.sleep(3)  # traffic on both versions for a while
    store.send_command("seed", dataplane_namespace, "abort")
    runner.join(timeout=180)
    time.sleep(2)
    report = seed.finish()
    _report("abort at 50%", time.monotonic() - started, report, seed.failures)
    assert result and result[0].phase is Phase.ROLLED_BACK, result
    assert report["versions"]["v2.0.0"]["requests"] > 0, "the canary served before the abort"
    assert report["failed"] == 0, seed.failures[:10]

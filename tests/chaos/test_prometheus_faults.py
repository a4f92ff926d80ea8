"""Prometheus faults: a proxy in front of the real Prometheus breaks its answers the way
real incidents do; canaryctl never promotes on them, names what was wrong, and goes on
when good data returns. Timeouts are kept short (1 s) so the suite stays quick."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from canaryctl.core.models import CanaryStatus, Phase, parse_spec
from canaryctl.driver.analysis import Analysis, parse_analysis
from canaryctl.driver.engine import Engine
from canaryctl.errors import AnalysisError
from canaryctl.providers.prometheus import PrometheusClient
from canaryctl.providers.templates import Target, error_batch
from canaryctl.testenv.fakeapp import FakeApp, Traffic
from canaryctl.testenv.prometheus import PrometheusServer, ScrapeTarget
from chaos.promfaults import FAULTS, FaultProxy, fault_proxy
from helpers import app_deployment, app_service, replicas, wait_until

pytestmark = pytest.mark.prometheus
NAMESPACE, APP = "faults", "app"
TARGET = Target(namespace=NAMESPACE, app=APP, canary="v2", stable="v1")
#: What the verdict must say for each fault (None: the look has no data).
NAMED = {
    "paused": r"gave no answer within",
    "slow": r"gave no answer within",
    "html": r"not a JSON answer: '<html>",
    "truncated": r"not a JSON answer",
    "matrix": r"returned a range vector",
    "nan": r"no data from Prometheus for this look \(empty, NaN or Inf\)",
    "negative": r"returned a negative count",
}


@pytest.fixture(scope="module")
def app() -> Iterator[FakeApp]:
    traffic = {"v1": Traffic(rate=400, error_rate=0.01), "v2": Traffic(rate=400, error_rate=0.01)}
    with FakeApp(traffic, seed=3) as fake:
        yield fake


@pytest.fixture(scope="module")
def prometheus(app: FakeApp) -> Iterator[PrometheusServer]:
    server = PrometheusServer([ScrapeTarget(app.address, {"namespace": NAMESPACE, "app": APP})])
    server.start()
    with PrometheusClient(server.url) as prom:
        # Most of a 10 s window scraped: increase() over it is a full count.
        query = f'min(count_over_time(up{{namespace="{NAMESPACE}"}}[10s]))'
        wait_until(lambda: (prom.query(query) or 0) >= 8, timeout=30)
    yield server
    server.stop()


@pytest.fixture
def proxy(prometheus: PrometheusServer) -> Iterator[FaultProxy]:
    with fault_proxy(prometheus.url, delay=30.0) as p:
        yield p


def test_every_fault_is_an_error_or_no_data_naming_it_and_good_data_comes_back(
    proxy: FaultProxy,
) -> None:
    prom = PrometheusClient(proxy.url, timeout=1.0, retries=1, backoff=0.05)
    for fault in FAULTS:
        proxy.set(fault)
        started = time.monotonic()
        with prom.within(2.5):
            if fault == "nan":
                assert error_batch(prom, TARGET, "10s") is None, "NaN is no data, not a count"
            else:
                with pytest.raises(AnalysisError, match=NAMED[fault]):
                    error_batch(prom, TARGET, "10s")
        assert time.monotonic() - started < 5, f"{fault}: one look stays within its budget"
        proxy.set(None)
        batch = error_batch(prom, TARGET, "10s")
        assert batch is not None and batch.canary_requests > 1000, f"after {fault}: real data"
        assert batch.stable_requests > 1000 and batch.problem() is None
    assert proxy.faulted >= len(FAULTS)


def test_the_analysis_holds_on_each_fault_names_it_and_resumes_on_good_data(
    proxy: FaultProxy,
) -> None:
    spec = parse_spec(
        {
            "name": "app",
            "namespace": NAMESPACE,
            "stable": "app-v1",
            "canary": "app-v2",
            "service": APP,
            "steps": [{"setWeight": 50}],
            "analysis": {"prometheus": {"url": proxy.url, "timeout": 1}, "interval": "2s"},
        }
    )
    config = parse_analysis(spec)
    assert config is not None
    analysis = Analysis.from_spec(spec)
    assert analysis is not None
    state: dict = {}

    def look(now: float) -> tuple:
        nonlocal state
        if state:
            # The interval has passed (as if the driver had waited 3 s between looks).
            state = {**state, "lastLook": now - 3}
        status = CanaryStatus(phase=Phase.PROGRESSING, weight=50, analysis_state=state)
        result = analysis.evaluate(status, now, ("v1", "v2"))
        state = result.state or {}
        return result.verdict, result.warning

    look(time.time() - 10)  # the first window starts
    # "paused" answers like "slow" here (both time out); the test above covers both.
    faults = [f for f in FAULTS if f != "paused"]
    for fault in faults:
        proxy.set(fault)
        verdict, warning = look(time.time())
        assert verdict is None or verdict.decision != "promote", fault
        assert warning is not None and re.search(NAMED[fault], warning), (fault, warning)
        assert state["invalidLook"], "holds until a look brings valid data"
        proxy.set(None)
        verdict, warning = look(time.time())
        assert warning is None, (fault, warning)
        assert not state["invalidLook"]
        assert verdict is None or verdict.decision != "rollback", "equal error rates"
    assert len(state["looks"]["errors"]) == len(faults), "one good look after each fault"


def test_a_counter_reset_by_an_app_restart_is_counted_not_negative(
    app: FakeApp, prometheus: PrometheusServer
) -> None:
    """The app restarts (its counters start again from 0) inside a look's window: the
    real Prometheus' increase() reads the drop as a reset, so the look is a plausible
    count, never negative garbage and never an error."""
    host, port = app.address.rsplit(":", 1)
    before = app.totals("v2")[0]
    app.stop()
    fresh = FakeApp(app.traffic(), seed=4, host=host, port=int(port)).start()
    try:
        assert fresh.totals("v2")[0] < before, "the counters really started again"
        with PrometheusClient(prometheus.url) as prom:
            restarted = f'resets(http_requests_total{{namespace="{NAMESPACE}",version="v2"}}[20s])'
            wait_until(lambda: (prom.query(f"sum({restarted})") or 0) >= 1, timeout=20)
            time.sleep(2)  # two scrapes after the reset
            batch = error_batch(prom, TARGET, "10s")
        assert batch is not None and batch.problem() is None
        # 400 requests/s over 10 s, within extrapolation slack.
        assert 2000 < batch.canary_requests < 6000, batch
        assert batch.canary_errors <= batch.canary_requests
    finally:
        fresh.stop()


@pytest.mark.chaos
@pytest.mark.integration
def test_a_rollout_never_promotes_through_faults_and_finishes_when_data_returns(
    kube: Client, proxy: FaultProxy
) -> None:
    """The whole engine on the local cluster (replica router, KWOK pods), its analysis
    reading the real Prometheus through the proxy: every fault in turn for two looks
    while the last pause runs out, then good data."""
    namespace = NAMESPACE  # the series carry namespace="faults" (the scrape's label)
    try:
        kube.delete(Namespace, namespace)
        wait_until(lambda: not _exists(kube, namespace), timeout=60)
    except ApiError:
        pass
    kube.create(Namespace(metadata=ObjectMeta(name=namespace)))
    try:
        wait_until(lambda: list(kube.list(ServiceAccount, namespace=namespace)), timeout=30)
        for doc in (
            app_service(),
            app_deployment("app-v1", "v1", 2),
            app_deployment("app-v2", "v2", 0),
        ):
            kube.create(codecs.from_dict(doc), namespace=namespace)
        wait_until(lambda: replicas(kube, namespace, "app-v1") == (2, 2), timeout=60)
        spec = parse_spec(
            {
                "name": "app",
                "namespace": namespace,
                "stable": "app-v1",
                "canary": "app-v2",
                "service": APP,
                "steps": [{"setWeight": 50}, {"pause": "10s"}, {"setWeight": 100}],
                "analysis": {
                    "prometheus": {"url": proxy.url, "timeout": 1},
                    "interval": "2s",
                    "judge": "threshold",
                },
            }
        )
        engine = Engine(kube, spec, record_events=False)
        engine.start()
        seen: dict[str, str] = {}
        promoted_during_fault: list[str] = []
        for fault in FAULTS:
            proxy.set(fault)
            # two looks or more, and on a busy machine until the fault is named (up to 15 s)
            until = time.monotonic() + 5
            while time.monotonic() < until or (fault not in seen and time.monotonic() < until + 10):
                status = engine.tick().status
                if status.phase in (Phase.PROMOTING, Phase.SUCCEEDED):
                    promoted_during_fault.append(fault)
                warning = (status.last_verdict or {}).get("warning") or ""
                if re.search(NAMED[fault], warning):
                    seen[fault] = warning
                time.sleep(0.3)
        assert not promoted_during_fault, promoted_during_fault
        assert set(seen) == set(FAULTS), f"faults not named: {set(FAULTS) - set(seen)}"
        proxy.set(None)
        deadline = time.monotonic() + 120
        status = engine.tick().status
        while not status.phase.terminal and time.monotonic() < deadline:
            time.sleep(0.3)
            status = engine.tick().status
        print({"faults named": len(seen), "final": status.phase, "reason": status.reason})
        assert status.phase is Phase.SUCCEEDED, status.message
    finally:
        kube.delete(Namespace, namespace)


def _exists(kube: Client, name: str) -> bool:
    try:
        kube.get(Namespace, name)
        return True
    except ApiError:
        return False

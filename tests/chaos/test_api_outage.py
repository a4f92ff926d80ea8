"""API server outages mid-rollout: kube-apiserver (and, separately, etcd) of the local
cluster is stopped at a seeded random instant for a few seconds and started again, while the
same `canaryctl rollout` process keeps going. It must retry (with backoff and a status line),
never exit 1 or print a traceback, and end as the scenario's health says, with every
invariant of the kill tests kept (tests/chaos_kills.py: capacity sampled every 100 ms, every
write recorded through a watch that resumes after the outage, no step repeated or skipped,
nothing left behind). CANARYCTL_OUTAGE_RUNS sets the long variant's runs per component,
CANARYCTL_CHAOS_SEED replays a seed.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from lightkube import Client

from canaryctl.testenv import ClusterState, LocalCluster
from chaos_kills import Run, one_run

pytestmark = pytest.mark.integration

#: The canary's readyDeadline: the outage plus the control plane's catch-up (the ReplicaSet
#: controller backs off while the API server is down) must not count as an unready canary,
#: which a 30 s deadline did after a 17 s outage (docs/reliability.md, limits).
READY_DEADLINE = "120s"

#: Seconds into the rollout the outage may start: a rolled-back run takes about 4.5 s here,
#: a promoted one about 10 s, so the outage always falls mid-rollout.
HORIZON = 3.0


def outage_campaign(
    kube: Client,
    cluster: ClusterState,
    component: str,
    runs: int,
    folder: Path,
    down: tuple[float, float],
) -> list[Run]:
    """`runs` rollouts, each with `component` down for a seeded random while mid-rollout."""
    seed = int(os.environ.get("CANARYCTL_CHAOS_SEED", time.time()))
    print(f"{component} outage campaign: seed {seed} (CANARYCTL_CHAOS_SEED={seed} replays it)")
    rng = random.Random(seed)
    bed = LocalCluster(cluster.name)
    results = []
    for index in range(runs):
        down_for = rng.uniform(*down)

        def outage(down_for: float = down_for) -> None:
            # SIGKILL: a crash, and an outage of a known length (a graceful stop of
            # kube-apiserver alone takes over 10 s).
            bed.restart_component(component, down_for=down_for, grace=0.0)

        run = one_run(
            kube, cluster, rng, HORIZON, folder, outage=outage, ready_deadline=READY_DEADLINE
        )
        run.outage, run.down_for = component, down_for
        results.append(run)
        print(
            f"run {index + 1}/{runs}: {run.scenario}, {component} down at {run.kill_at:.2f}s "
            f"({'mid-rollout' if run.disrupted else 'after the end'}) "
            f"for {down_for:.1f}s, {run.retries} retries, exits {run.exit_codes}, "
            f"{run.duration:.1f}s, min capacity {run.min_capacity} over {run.samples} "
            f"samples, violations {run.violations}"
        )
    violations = sum(len(r.violations) for r in results)
    print(f"{component} outage campaign: seed {seed}: {runs} runs, {violations} violations")
    return results


def _assert_clean(results: list[Run]) -> None:
    broken = [(i + 1, r.violations) for i, r in enumerate(results) if r.violations]
    assert not broken, f"invariant violations (run, what): {broken}"
    assert all(r.disrupted for r in results), "an outage fell after the rollout's end"
    assert all(r.exit_codes and r.exit_codes[-1] in (0, 3) for r in results)


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_rollout_survives_a_control_plane_restart_mid_rollout(
    kube: Client, local_cluster: ClusterState, tmp_path: Path, component: str
) -> None:
    _assert_clean(outage_campaign(kube, local_cluster, component, 1, tmp_path, (3.0, 5.0)))


@pytest.mark.chaos
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_chaos_control_plane_restarts_mid_rollout(
    kube: Client, local_cluster: ClusterState, tmp_path: Path, component: str
) -> None:
    runs = int(os.environ.get("CANARYCTL_OUTAGE_RUNS", "20"))
    _assert_clean(outage_campaign(kube, local_cluster, component, runs, tmp_path, (2.0, 30.0)))


def partition_campaign(
    kube: Client, cluster: ClusterState, runs: int, folder: Path, down: tuple[float, float]
) -> list[Run]:
    """`runs` rollouts whose CLI reaches the API server through a proxy partitioned a while."""
    from chaos.tcpproxy import partitionable

    seed = int(os.environ.get("CANARYCTL_CHAOS_SEED", time.time()))
    print(f"partition campaign: seed {seed} (CANARYCTL_CHAOS_SEED={seed} replays it)")
    rng = random.Random(seed)
    proxy, through = partitionable(cluster, folder)
    results = []
    try:
        for index in range(runs):
            down_for = rng.uniform(*down)

            def partition(down_for: float = down_for) -> None:
                proxy.pause()
                time.sleep(down_for)
                proxy.resume()

            run = one_run(
                kube, cluster, rng, HORIZON, folder, outage=partition,
                ready_deadline=READY_DEADLINE, cli_kubeconfig=through,
            )  # fmt: skip
            run.outage, run.down_for = "partition", down_for
            results.append(run)
            print(
                f"run {index + 1}/{runs}: {run.scenario}, partitioned at {run.kill_at:.2f}s "
                f"for {down_for:.1f}s, {run.retries} retries, exits {run.exit_codes}, "
                f"{run.duration:.1f}s, min capacity {run.min_capacity}, "
                f"violations {run.violations}"
            )
    finally:
        proxy.close()
    violations = sum(len(r.violations) for r in results)
    print(f"partition campaign: seed {seed}: {runs} runs, {violations} violations")
    return results


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_chaos_partition_between_the_cli_and_the_api_server(
    kube: Client, local_cluster: ClusterState, tmp_path: Path
) -> None:
    runs = int(os.environ.get("CANARYCTL_OUTAGE_RUNS", "20"))
    _assert_clean(partition_campaign(kube, local_cluster, runs, tmp_path, (5.0, 30.0)))


@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_a_partitioned_process_whose_lease_expired_does_not_write_after_a_takeover(
    kube: Client, local_cluster: ClusterState, tmp_path: Path
) -> None:
    """CLI A drives through a proxy; the proxy is partitioned past A's lease; CLI B (direct)
    takes over; the partition heals. From the record's watched writes: once B wrote as
    holder, no write names A until B released the lease, and B finishes the rollout."""
    import json
    import subprocess
    import sys
    import uuid

    import yaml
    from lightkube import codecs
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Namespace

    from canaryctl.kube.store import HOLDER, LEASE_SECONDS
    from chaos.tcpproxy import partitionable
    from chaos_kills import CLI, WATCHER, _events
    from helpers import app_deployment, app_service, replicas, wait_until

    namespace = f"p-{uuid.uuid4().hex[:8]}"
    kube.create(Namespace(metadata=ObjectMeta(name=namespace)))
    log = tmp_path / "watch.jsonl"
    watcher = subprocess.Popen(
        [sys.executable, str(WATCHER), str(local_cluster.kubeconfig), namespace, str(log)]
    )
    proxy, through = partitionable(local_cluster, tmp_path)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        docs = [app_service(), app_deployment("app-v1", "v1", 3), app_deployment("app-v2", "v2", 0)]
        for doc in docs:
            kube.create(codecs.from_dict(doc), namespace=namespace)
        wait_until(lambda: replicas(kube, namespace, "app-v1") == (3, 3), timeout=60)
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump({
            "name": "app", "namespace": namespace, "stable": "app-v1", "canary": "app-v2",
            "service": "app", "steps": [{"setWeight": 30}, {"pause": "5s"}, {"setWeight": 60},
            {"pause": "5s"}, {"setWeight": 100}], "drainDelay": "0s",
            "health": {"readyDeadline": "120s"},
        }))  # fmt: skip

        def cli(kubeconfig: Path, out: str) -> subprocess.Popen[bytes]:
            argv = [CLI, "rollout", "-f", str(spec), "--kubeconfig", str(kubeconfig),
                    "--interval", "0.2", "-o", "plain", "--api-timeout", "5m"]  # fmt: skip
            sink = open(tmp_path / out, "w")  # noqa: SIM115 (the child keeps it)
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
            procs.append(proc)
            return proc

        def holders() -> list[str | None]:
            return [
                e["annotations"].get(HOLDER)
                for e in _events(log)
                if e["kind"] == "ConfigMap" and e["name"] == "canaryctl-app"
                and e["event"] != "DELETED"
            ]  # fmt: skip

        a = cli(through, "a.out")
        wait_until(lambda: any(h and h.endswith(f"/{a.pid}") for h in holders()), timeout=60)
        time.sleep(1.0)
        proxy.pause()
        time.sleep(LEASE_SECONDS + 2)
        b = cli(local_cluster.kubeconfig, "b.out")
        wait_until(lambda: any(h and h.endswith(f"/{b.pid}") for h in holders()), timeout=60)
        proxy.resume()
        assert b.wait(timeout=300) == 0, (tmp_path / "b.out").read_text()
        time.sleep(1.0)  # the last writes reach the watch
        seq = holders()
        first_b = next(i for i, h in enumerate(seq) if h and h.endswith(f"/{b.pid}"))
        after = seq[first_b:]
        released = next((i for i, h in enumerate(after) if h is None), len(after))
        by_a = [h for h in after[:released] if h and h.endswith(f"/{a.pid}")]
        print(f"record writes: {len(seq)}, by B from #{first_b}, by A while B held: {len(by_a)}")
        assert not by_a, f"A wrote the record while B held the lease: {json.dumps(seq)}"
        assert "waiting: rollout is driven by" in (tmp_path / "a.out").read_text() or (
            a.poll() is not None
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        proxy.close()
        watcher.terminate()
        watcher.wait(10)
        kube.delete(Namespace, namespace)

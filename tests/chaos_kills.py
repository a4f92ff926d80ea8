"""Kill `canaryctl rollout` at a uniformly random instant, run it again, check invariants.

One run: a fresh namespace with Service `app`, `app-v1` (N ready) and `app-v2` (0; its pods
crash-loop in a "bad" scenario). `canaryctl rollout` starts as a real process and gets
SIGKILL at an instant drawn uniformly from [0, horizon) (a seeded random.Random); then the
same command runs again to its end. Meanwhile a sampler counts, every 100 ms, the Ready pods
the Service selects, and a watcher process records every write to the namespace's
Deployments, Services and ConfigMaps. Afterwards the invariants are checked from what the
cluster itself recorded; `Run.violations` lists every breach.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Service, ServiceAccount

from canaryctl.kube.client import TRANSPORT_ERRORS
from canaryctl.testenv import ClusterState
from helpers import app_deployment, app_service, replicas, route_objects, wait_until

WATCHER = Path(__file__).parent / "chaos" / "watcher.py"
CLI = str(Path(sys.executable).with_name("canaryctl"))
N = 3
MAX_WEIGHT = 70
STEPS = [{"setWeight": 30}, {"setWeight": 60}, {"setWeight": 100}]
CRASHLOOP = {"canaryctl.dev/simulate": "crashloop"}
ROUTERS = {
    "replicas": {"kind": "replicas"},
    "nginx": {"kind": "nginx", "ingress": "app"},
    "istio": {"kind": "istio", "virtualService": "app", "destinationRule": "app"},
    "gateway": {"kind": "gateway", "httproute": "app"},
}
ROUTING_KIND = {"nginx": "Ingress", "istio": "VirtualService", "gateway": "HTTPRoute"}
NGINX_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"


@dataclass
class Run:
    """What one run did and every invariant it broke."""

    scenario: str
    router: str = "replicas"
    kill_at: float | None = None
    killed: bool = False
    #: Outage runs: the component stopped at kill_at, for how long, and the CLI's retries.
    outage: str | None = None
    down_for: float = 0.0
    retries: int = 0
    disrupted: bool = False
    exit_codes: list[int] = field(default_factory=list)
    duration: float = 0.0
    min_capacity: int | None = None
    samples: int = 0
    violations: list[str] = field(default_factory=list)


def _spec(namespace: str, router: str, ready_deadline: str = "30s") -> dict[str, Any]:
    return {
        "name": "app", "namespace": namespace, "stable": "app-v1", "canary": "app-v2",
        "service": "app", "steps": STEPS, "maxWeight": MAX_WEIGHT, "drainDelay": "0s",
        "health": {"readyDeadline": ready_deadline}, "router": ROUTERS[router],
    }  # fmt: skip


def router_weight(ev: dict[str, Any]) -> int | None:
    """The canary weight a write to a routing object set (None: it sets none)."""
    if ev["kind"] == "Ingress":
        if ev["name"] != "app-canary":
            return None
        return int(ev["annotations"].get(NGINX_WEIGHT, 0))
    if ev["kind"] == "VirtualService":
        weights = [
            d.get("weight", 100)
            for route in ev["spec"].get("http") or []
            if route.get("name") == "main"
            for d in route.get("route") or []
            if d["destination"].get("subset") == "v2"
        ]
        return sum(weights)
    if ev["kind"] == "HTTPRoute":
        rules = ev["spec"].get("rules") or []
        refs = rules[-1].get("backendRefs") or [] if rules else []
        return sum(b.get("weight", 1) for b in refs if b["name"] == "app-canary")
    return None


class Sampler(threading.Thread):
    """Ready, not terminating pods the Service selects, every 100 ms."""

    def __init__(self, kube: Client, namespace: str, router: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.namespace, self.router = kube, namespace, router
        self.counts: list[int] = []
        self.stop = threading.Event()

    def count(self) -> int:
        # Weight routers send traffic through the Service and a canary Service: every pod
        # of the app counts; the replicas router serves what the Service selects.
        selector = {"app": "app"}
        if self.router == "replicas":
            selector = self.kube.get(Service, "app", namespace=self.namespace).spec.selector
        pods = self.kube.list(Pod, namespace=self.namespace, labels=dict(selector))
        return sum(
            1
            for p in pods
            if p.metadata.deletionTimestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        )

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            # A sample lost to the API server (or to its outage) is not a capacity measurement.
            with contextlib.suppress(ApiError, *TRANSPORT_ERRORS):
                self.counts.append(self.count())
            self.stop.wait(max(0.0, 0.1 - (time.monotonic() - started)))


def _events(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _check_writes(events: list[dict[str, Any]], bad: bool) -> list[str]:
    """Weights and replicas ever written, and the stored step history, from the watch."""
    found: list[str] = []
    statuses = []
    for ev in events:
        written = ev["kind"] == "Deployment" and ev["event"] != "DELETED"
        if written and not 0 <= (ev["replicas"] or 0) <= N:
            found.append(f"{ev['name']} written with {ev['replicas']} replicas (0..{N})")
        if ev["kind"] == "ConfigMap" and ev["name"] == "canaryctl-app" and "status" in ev["data"]:
            statuses.append(json.loads(ev["data"]["status"]))
    promoting = False
    for ev in sorted(events, key=lambda e: int(e.get("rv") or 0)):
        if ev["kind"] == "ConfigMap" and "status" in ev.get("data", {}):
            promoting |= json.loads(ev["data"]["status"])["phase"] in ("Promoting", "Succeeded")
        weight = router_weight(ev) if ev["event"] != "DELETED" else None
        if weight is not None and not (0 <= weight <= MAX_WEIGHT or (weight == 100 and promoting)):
            found.append(f"{ev['kind']}/{ev['name']} written with weight {weight}")
    last_step, last_weight, phases = 0, 0, []
    for st in statuses:
        weight, step, phase = st["weight"], st["stepIndex"], st["phase"]
        phases.append(phase)
        leaving = phase in ("RollingBack", "RolledBack")
        final = phase in ("Promoting", "Succeeded")
        if not (0 <= weight <= MAX_WEIGHT or (weight == 100 and final)):
            found.append(f"weight {weight} stored in phase {phase} (0..{MAX_WEIGHT})")
        if step < last_step:
            found.append(f"step {step} stored after step {last_step} (repeated)")
        if step > last_step + 1:
            found.append(f"step {step} stored after step {last_step} (skipped)")
        if weight < last_weight and not leaving:
            found.append(f"weight fell from {last_weight} to {weight} in phase {phase}")
        last_step, last_weight = max(last_step, step), weight
    if bad and "Succeeded" in phases:
        found.append("a crash-looping canary was promoted")
    if not bad and "RolledBack" in phases:
        found.append("a healthy canary was rolled back")
    return found


def _check_leftovers(
    kube: Client, namespace: str, bad: bool, router: str, before: dict[str, Any] | None
) -> list[str]:
    found: list[str] = []
    if router in ROUTING_KIND:
        after = _routing(kube, namespace, router)
        ours = [k for k in (after["metadata"].get("annotations") or {}) if "canaryctl" in k]
        ours += [k for k in (after["metadata"].get("labels") or {}) if "canaryctl" in k]
        if ours:
            found.append(f"{ROUTING_KIND[router]}/app keeps {ours}")
        if router != "istio" and after.get("spec") != (before or {}).get("spec"):
            found.append(f"{ROUTING_KIND[router]}/app changed: {after.get('spec')}")
        if router == "nginx":
            from lightkube.resources.networking_v1 import Ingress

            left = [i.metadata.name for i in kube.list(Ingress, namespace=namespace)]
            if left != ["app"]:
                found.append(f"Ingresses left: {left}")
    svc = kube.get(Service, "app", namespace=namespace)
    if dict(svc.spec.selector or {}) != {"app": "app"}:
        found.append(f"Service selector left as {svc.spec.selector}")
    for obj in [svc, *kube.list(Deployment, namespace=namespace)]:
        ours = [k for k in obj.metadata.annotations or {} if "canaryctl" in k]
        ours += [k for k in obj.metadata.labels or {} if "canaryctl" in k]
        if ours:
            found.append(f"{obj.kind}/{obj.metadata.name} keeps {ours}")
    extra = [s.metadata.name for s in kube.list(Service, namespace=namespace)]
    if extra != ["app"]:
        found.append(f"Services left: {extra}")
    records = [
        c.metadata.name
        for c in kube.list(ConfigMap, namespace=namespace)
        if (c.metadata.labels or {}).get("app.kubernetes.io/managed-by") == "canaryctl"
    ]
    if records != ["canaryctl-app"]:
        found.append(f"ConfigMaps of canaryctl: {records} (only the record canaryctl-app)")
    want = {"app-v1": (N, N), "app-v2": (0, 0)} if bad else {"app-v1": None, "app-v2": (N, N)}
    for name, expected in want.items():
        got = replicas(kube, namespace, name)
        if got != expected:
            found.append(f"{name}: (desired, ready) {got}, expected {expected}")
    return found


def _routing(kube: Client, namespace: str, router: str) -> dict[str, Any]:
    from lightkube.resources.networking_v1 import Ingress

    from canaryctl.routers._patch import HTTPRoute, VirtualService

    res = {"nginx": Ingress, "istio": VirtualService, "gateway": HTTPRoute}[router]
    return kube.get(res, "app", namespace=namespace).to_dict()


def one_run(
    kube: Client,
    cluster: ClusterState,
    rng: random.Random,
    horizon: float | None,
    folder: Path,
    router: str = "replicas",
    outage: Callable[[], None] | None = None,
    ready_deadline: str = "30s",
    cli_kubeconfig: Path | None = None,
) -> Run:
    """One scenario: kill at a random instant in [0, horizon) (None: no kill), rerun, check.

    With `outage`, the CLI is not killed: `outage()` runs at that instant instead (e.g. stop
    and restart the API server) while the same CLI process keeps going to its end.
    """
    bad = rng.random() < 0.25
    run = Run(scenario="bad" if bad else "good", router=router)
    namespace = f"k-{uuid.uuid4().hex[:8]}"
    kube.create(Namespace(metadata=ObjectMeta(name=namespace)))
    log = folder / f"{namespace}.watch"
    watch = [sys.executable, str(WATCHER), str(cluster.kubeconfig), namespace, str(log), router]
    watcher = subprocess.Popen(watch)
    sampler = Sampler(kube, namespace, router)
    try:
        wait_until(lambda: list(kube.list(ServiceAccount, namespace=namespace)), timeout=30)
        canary = app_deployment("app-v2", "v2", 0)
        if bad:
            canary["spec"]["template"]["metadata"]["labels"].update(CRASHLOOP)
        docs = [app_service(), app_deployment("app-v1", "v1", N), canary]
        docs += route_objects(router) if router in ROUTING_KIND else []
        for doc in docs:
            kube.create(codecs.from_dict(doc), namespace=namespace)
        wait_until(lambda: replicas(kube, namespace, "app-v1") == (N, N), timeout=60)
        before = _routing(kube, namespace, router) if router in ROUTING_KIND else None
        kinds = ["Deployment", "Service", "ConfigMap"]
        kinds += [ROUTING_KIND[router]] if router in ROUTING_KIND else []
        wait_until(lambda: {e["kind"] for e in _events(log)} >= set(kinds), timeout=30)
        spec = folder / f"{namespace}.yaml"
        spec.write_text(yaml.safe_dump(_spec(namespace, router, ready_deadline)))
        kubeconfig = cli_kubeconfig or cluster.kubeconfig
        argv = [CLI, "rollout", "-f", str(spec), "--kubeconfig", str(kubeconfig),
                "--interval", "0.2", "-o", "json"]  # fmt: skip
        sampler.start()
        started = time.monotonic()
        out = open(folder / f"{namespace}.out", "w")  # noqa: SIM115 (closed below)
        try:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            if horizon is not None:
                run.kill_at = rng.uniform(0, horizon)
                try:
                    proc.wait(timeout=run.kill_at)
                except subprocess.TimeoutExpired:
                    if outage is not None:
                        outage()
                        run.disrupted = True
                    else:
                        proc.kill()
                        run.killed = True
            proc.wait(timeout=180)
            run.exit_codes.append(proc.returncode)
            if run.killed:
                again = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=180)
                run.exit_codes.append(again.returncode)
        finally:
            out.close()
        run.duration = time.monotonic() - started
        output = (folder / f"{namespace}.out").read_text()
        run.retries = output.count("API server unreachable since")
        if "Traceback" in output:
            run.violations.append(f"a traceback in the CLI's output: {output[-1500:]}")
        time.sleep(0.5)  # the last writes reach the watch
        sampler.stop.set()
        sampler.join(5)
        expected = 3 if bad else 0
        if run.exit_codes[-1] != expected:
            tail = (folder / f"{namespace}.out").read_text()[-1500:]
            run.violations.append(f"exit {run.exit_codes[-1]}, expected {expected}: {tail}")
        run.samples = len(sampler.counts)
        run.min_capacity = min(sampler.counts) if sampler.counts else None
        if run.min_capacity is not None and run.min_capacity < N:
            run.violations.append(f"serving capacity fell to {run.min_capacity} (< {N})")
        run.violations += _check_writes(_events(log), bad)
        run.violations += _check_leftovers(kube, namespace, bad, router, before)
    finally:
        sampler.stop.set()
        watcher.terminate()
        watcher.wait(10)
        kube.delete(Namespace, namespace)
    return run


def campaign(
    kube: Client,
    cluster: ClusterState,
    runs: int,
    folder: Path,
    seed: int | None = None,
    router: str = "replicas",
) -> list[Run]:
    """`runs` runs: the first without a kill (its duration is the horizon kills are drawn from)."""
    seed = seed if seed is not None else int(os.environ.get("CANARYCTL_CHAOS_SEED", time.time()))
    print(f"kill campaign ({router}): seed {seed} (CANARYCTL_CHAOS_SEED={seed} replays it)")
    rng = random.Random(seed)
    results: list[Run] = []
    horizon = None
    for index in range(runs):
        run = one_run(kube, cluster, rng, horizon, folder, router)
        if horizon is None and run.scenario == "good" and not run.violations:
            horizon = run.duration
        results.append(run)
        print(f"run {index + 1}/{runs}: {run.scenario}, kill at "
              f"{'-' if run.kill_at is None else f'{run.kill_at:.2f}s'}, killed {run.killed}, "
              f"exits {run.exit_codes}, {run.duration:.1f}s, min capacity {run.min_capacity} "
              f"over {run.samples} samples, violations {run.violations}")  # fmt: skip
    kills = sum(r.killed for r in results)
    violations = sum(len(r.violations) for r in results)
    print(
        f"kill campaign ({router}): seed {seed}: {runs} runs, {kills} kills, "
        f"{violations} violations"
    )
    return results

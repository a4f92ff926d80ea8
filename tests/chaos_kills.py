"""Kill `canaryctl rollout` at a uniformly random instant, run it again, check invariants.

One run: a fresh namespace with Service `app`, `app-v1` (N ready) and `app-v2` (0; its pods
crash-loop in a "bad" scenario). `canaryctl rollout` starts as a real process and gets
SIGKILL at an instant drawn uniformly from [0, horizon) (a seeded random.Random); then the
same command runs again to its end. Meanwhile a sampler counts, every 100 ms, the Ready pods
the Service selects, and a watcher process records every write to the namespace's
Deployments, Services and ConfigMaps. Afterwards the invariants are checked from what the
cluster itself recorded; `Run.violations` lists every breach.

A campaign runs several of these at once (`concurrency`, CANARYCTL_CHAOS_CONCURRENCY): each
run has its own namespace, client, sampler and watcher, and every check reads only its own
namespace, so runs side by side cannot hide or cause each other's breaches. Each run draws
its scenario and kill instant from its own seed, derived from the printed campaign seed;
CANARYCTL_CHAOS_RUN_SEED (with CANARYCTL_CHAOS_HORIZON) replays one run alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Service, ServiceAccount
from lightkube.types import PatchType

# Defines the generic resources (VirtualService, HTTPRoute, ...) that codecs.from_dict needs
# for the route objects: a campaign of one router alone must not depend on what else ran.
import canaryctl.routers._patch  # noqa: F401
from canaryctl.kube.client import TRANSPORT_ERRORS, make_client
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
#: The test's own annotation, written after a run to know the watch has caught up.
FLUSHED = "chaos.test/flushed"


@dataclass
class Run:
    """What one run did and every invariant it broke."""

    scenario: str
    router: str = "replicas"
    #: The run's own seed (its scenario and kill instant) and the horizon the instant was
    #: drawn from (None: not killed): together they replay the run alone.
    seed: int | None = None
    horizon: float | None = None
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
    #: The longest time between two capacity samples (seconds): what "every 100 ms" was.
    max_gap: float | None = None
    violations: list[str] = field(default_factory=list)
    #: The harness itself failed (e.g. a set-up timeout): no verdict on canaryctl.
    error: str | None = None


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
        self.times: list[float] = []
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
                self.times.append(time.monotonic())
            self.stop.wait(max(0.0, 0.1 - (time.monotonic() - started)))

    def max_gap(self) -> float | None:
        """The longest time between two samples (None: fewer than two)."""
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        return max(gaps) if gaps else None


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


def _routing_resource(router: str) -> Any:
    from lightkube.resources.networking_v1 import Ingress

    from canaryctl.routers._patch import HTTPRoute, VirtualService

    return {"nginx": Ingress, "istio": VirtualService, "gateway": HTTPRoute}[router]


def _routing(kube: Client, namespace: str, router: str) -> dict[str, Any]:
    return kube.get(_routing_resource(router), "app", namespace=namespace).to_dict()


def _flush_watch(kube: Client, namespace: str, router: str, log: Path) -> list[str]:
    """Wait until the watch has recorded every write made so far (a violation if it never does).

    Writes an annotation of the test's own to one object of each watched kind (and creates a
    ConfigMap): each kind's watch delivers the namespace's events in resourceVersion order, so
    once it records the marker it has recorded every earlier write of that kind. A fixed
    sleep would let a loaded machine (or runs side by side) drop the last writes unchecked.
    """
    token = uuid.uuid4().hex[:8]
    patch = {"metadata": {"annotations": {FLUSHED: token}}}
    # app-v2: the Deployment left in both outcomes (a promotion deletes app-v1).
    kinds = {"Deployment": (Deployment, "app-v2"), "Service": (Service, "app")}
    if router in ROUTING_KIND:
        kinds[ROUTING_KIND[router]] = (_routing_resource(router), "app")
    for res, name in kinds.values():
        kube.patch(res, name, patch, namespace=namespace, patch_type=PatchType.MERGE)
    meta = ObjectMeta(name=f"flushed-{token}", annotations={FLUSHED: token})
    kube.create(ConfigMap(metadata=meta), namespace=namespace)
    wanted = {*kinds, "ConfigMap"}

    def recorded() -> bool:
        seen = {e["kind"] for e in _events(log) if e["annotations"].get(FLUSHED) == token}
        return seen >= wanted

    try:
        wait_until(recorded, timeout=60)
    except AssertionError:
        return [f"the watch did not record the writes of {sorted(wanted)} within 60 s"]
    return []


def draw(rng: random.Random, horizon: float | None) -> tuple[bool, float | None]:
    """A run's scenario (True: a crash-looping canary) and kill instant in [0, horizon)."""
    bad = rng.random() < 0.25
    return bad, None if horizon is None else rng.uniform(0, horizon)


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
    bad, kill_at = draw(rng, horizon)
    run = Run(scenario="bad" if bad else "good", router=router, horizon=horizon)
    namespace = f"k-{uuid.uuid4().hex[:8]}"
    kube.create(Namespace(metadata=ObjectMeta(name=namespace)))
    log = folder / f"{namespace}.watch"
    watch = [sys.executable, str(WATCHER), str(cluster.kubeconfig), namespace, str(log), router]
    watcher = subprocess.Popen(watch)
    sampler = Sampler(kube, namespace, router)
    try:
        wait_until(lambda: list(kube.list(ServiceAccount, namespace=namespace)), timeout=60)
        canary = app_deployment("app-v2", "v2", 0)
        if bad:
            canary["spec"]["template"]["metadata"]["labels"].update(CRASHLOOP)
        docs = [app_service(), app_deployment("app-v1", "v1", N), canary]
        docs += route_objects(router) if router in ROUTING_KIND else []
        for doc in docs:
            kube.create(codecs.from_dict(doc), namespace=namespace)
        wait_until(lambda: replicas(kube, namespace, "app-v1") == (N, N), timeout=120)
        before = _routing(kube, namespace, router) if router in ROUTING_KIND else None
        kinds = ["Deployment", "Service", "ConfigMap"]
        kinds += [ROUTING_KIND[router]] if router in ROUTING_KIND else []
        wait_until(lambda: {e["kind"] for e in _events(log)} >= set(kinds), timeout=60)
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
            if kill_at is not None:
                run.kill_at = kill_at
                try:
                    proc.wait(timeout=run.kill_at)
                except subprocess.TimeoutExpired:
                    if outage is not None:
                        outage()
                        run.disrupted = True
                    else:
                        proc.kill()
                        run.killed = True
            proc.wait(timeout=300)
            run.exit_codes.append(proc.returncode)
            if run.killed:
                again = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=300)
                run.exit_codes.append(again.returncode)
        finally:
            out.close()
        run.duration = time.monotonic() - started
        output = (folder / f"{namespace}.out").read_text()
        run.retries = output.count("API server unreachable since")
        if "Traceback" in output:
            run.violations.append(f"a traceback in the CLI's output: {output[-1500:]}")
        sampler.stop.set()
        sampler.join(5)
        expected = 3 if bad else 0
        if run.exit_codes[-1] != expected:
            tail = (folder / f"{namespace}.out").read_text()[-1500:]
            run.violations.append(f"exit {run.exit_codes[-1]}, expected {expected}: {tail}")
        run.samples = len(sampler.counts)
        run.max_gap = sampler.max_gap()
        run.min_capacity = min(sampler.counts) if sampler.counts else None
        if run.min_capacity is not None and run.min_capacity < N:
            run.violations.append(f"serving capacity fell to {run.min_capacity} (< {N})")
        run.violations += _flush_watch(kube, namespace, router, log)
        run.violations += _check_writes(_events(log), bad)
        run.violations += _check_leftovers(kube, namespace, bad, router, before)
    finally:
        sampler.stop.set()
        watcher.terminate()
        watcher.wait(10)
        kube.delete(Namespace, namespace)
    return run


def run_seeds(seed: int, runs: int) -> list[int]:
    """Each run's seed, drawn from the campaign's: run i's depends only on (seed, i)."""
    master = random.Random(seed)
    return [master.getrandbits(32) for _ in range(runs)]


def schedule(
    runs: int,
    concurrency: int,
    execute: Callable[[int, float | None], Run],
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Run]:
    """`execute(index, horizon)` for every run index, `concurrency` at a time, in index order.

    Kill instants are drawn over the length of an unkilled run measured under the same load:
    until a horizon is known, runs go unkilled in batches of `concurrency`; the horizon is
    the median duration of their healthy, clean runs (sequentially: the first such run).
    With a `deadline` (on `clock`), no run starts after it: the runs done are returned (the
    campaign reports how many of `runs` that was).
    """
    results: dict[int, Run] = {}

    def start(index: int, horizon: float | None) -> Run | None:
        if deadline is not None and clock() >= deadline:
            return None
        return execute(index, horizon)

    def collect(indexes: range, horizon: float | None) -> None:
        ran = pool.map(lambda i: start(i, horizon), indexes)
        for index, run in zip(indexes, ran, strict=True):
            if run is not None:
                results[index] = run

    horizon: float | None = None
    first = 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while horizon is None and first < runs:
            batch = range(first, min(runs, first + concurrency))
            collect(batch, None)
            first = batch.stop
            clean = [results[i].duration for i in batch if i in results and _clean(results[i])]
            horizon = statistics.median(clean) if clean else None
        collect(range(first, runs), horizon)
    return [results[i] for i in sorted(results)]


def _clean(run: Run) -> bool:
    """A healthy canary's run that broke nothing: its length is a kill horizon."""
    return run.scenario == "good" and not run.violations and run.error is None


def _line(run: Run) -> str:
    kill = "-" if run.kill_at is None else f"{run.kill_at:.2f}s"
    gap = "-" if run.max_gap is None else f"{run.max_gap * 1000:.0f} ms"
    if run.error is not None:
        return f"seed {run.seed}: harness error {run.error}"
    return (
        f"seed {run.seed}: {run.scenario}, kill at {kill}, killed {run.killed}, "
        f"exits {run.exit_codes}, {run.duration:.1f}s, min capacity {run.min_capacity} "
        f"over {run.samples} samples (longest gap {gap}), violations {run.violations}"
    )


def replay_hint(run: Run) -> str:
    """The environment that replays this run alone (same scenario, same kill instant)."""
    hint = f"CANARYCTL_CHAOS_RUN_SEED={run.seed}"
    if run.horizon is not None:
        hint += f" CANARYCTL_CHAOS_HORIZON={run.horizon!r}"
    return hint


def campaign(
    kube: Client,
    cluster: ClusterState,
    runs: int,
    folder: Path,
    seed: int | None = None,
    router: str = "replicas",
    concurrency: int | None = None,
) -> list[Run]:
    """`runs` runs, `concurrency` at a time; the first unkilled ones set the kill horizon.

    CANARYCTL_CHAOS_RUN_SEED replays one run alone instead (its horizon from
    CANARYCTL_CHAOS_HORIZON; without it, unkilled). CANARYCTL_CHAOS_BUDGET (seconds) starts
    no run after that time, and says how many were made.
    """
    del kube  # each run has a client of its own (runs may go side by side)
    if concurrency is None:
        concurrency = int(os.environ.get("CANARYCTL_CHAOS_CONCURRENCY", "1"))
    lock = threading.Lock()

    def execute(index: int, run_seed: int, horizon: float | None, total: int) -> Run:
        try:
            run = one_run(
                make_client(cluster.kubeconfig), cluster, random.Random(run_seed), horizon,
                folder, router,
            )  # fmt: skip
        except Exception as exc:  # recorded as the run's error: the campaign fails on it
            run = Run(scenario="?", router=router, horizon=horizon, error=repr(exc))
        run.seed = run_seed
        with lock:
            print(f"run {index + 1}/{total}: {_line(run)}", flush=True)
            if run.violations or run.error:
                print(f"  replay alone: {replay_hint(run)}", flush=True)
        return run

    replay = os.environ.get("CANARYCTL_CHAOS_RUN_SEED")
    if replay:
        horizon = os.environ.get("CANARYCTL_CHAOS_HORIZON")
        print(f"kill campaign ({router}): replaying run seed {replay}, horizon {horizon}")
        return [execute(0, int(replay), float(horizon) if horizon else None, 1)]
    seed = seed if seed is not None else int(os.environ.get("CANARYCTL_CHAOS_SEED", time.time()))
    print(
        f"kill campaign ({router}): seed {seed} (CANARYCTL_CHAOS_SEED={seed} replays it), "
        f"{runs} runs, {concurrency} at a time, load average {os.getloadavg()[0]:.1f}"
    )
    seeds = run_seeds(seed, runs)
    started = time.monotonic()
    budget = os.environ.get("CANARYCTL_CHAOS_BUDGET")
    deadline = started + float(budget) if budget else None
    results = schedule(runs, concurrency, lambda i, h: execute(i, seeds[i], h, runs), deadline)
    print(summary(results, router, seed, concurrency, time.monotonic() - started))
    if len(results) < runs:
        print(f"kill campaign ({router}): time budget of {budget} s spent: "
              f"{len(results)} of {runs} runs made")  # fmt: skip
    return results


def summary(results: list[Run], router: str, seed: int, concurrency: int, wall: float) -> str:
    """The campaign's counts and times, one line."""
    done = [r for r in results if r.error is None]
    kills = sum(r.killed for r in results)
    violations = sum(len(r.violations) for r in results)
    errors = len(results) - len(done)
    durations = sorted(r.duration for r in done) or [0.0]
    gaps = [r.max_gap for r in done if r.max_gap is not None] or [0.0]
    horizon = next((r.horizon for r in results if r.horizon is not None), None)
    return (
        f"kill campaign ({router}): seed {seed}: {len(results)} runs "
        f"({sum(r.scenario == 'bad' for r in done)} crash-looping), {kills} kills, "
        f"{violations} violations, {errors} harness errors; {concurrency} at a time, "
        f"{wall:.0f} s in all ({wall / max(1, len(results)):.1f} s per run), "
        f"run length {durations[0]:.1f}-{durations[-1]:.1f} s "
        f"(median {statistics.median(durations):.1f}), horizon "
        f"{'-' if horizon is None else f'{horizon:.1f} s'}, longest sample gap "
        f"{max(gaps) * 1000:.0f} ms, load average {os.getloadavg()[0]:.1f}"
    )

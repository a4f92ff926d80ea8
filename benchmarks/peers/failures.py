"""Failure handling on the control plane alone: canaryctl's operator and Flagger, side by side.

For each scenario and each tool, a fresh KWOK-only cluster (`compare.fresh_cluster`) with
the same workload (`compare.workload`): Service `app` (selects `app: app`), Deployment
`app` with 2 replicas (`app: app, track: main`, image `app:1`) and one Canary; the tool
is started (`compare.start_tool`, its own client identity, audited), waited on until
initialised (`app-primary` serving 2 ready pods, `app` at 0, Flagger's phase
`Initialized`), then the image is bumped to `app:2` (what Flux or Argo CD do) and:

* crashloop: the new template carries `canaryctl.dev/simulate: crashloop`, the test bed's
  KWOK stage for a container that keeps crashing (never Ready, restartCount growing every
  few seconds, `CrashLoopBackOff`);
* unready: `canaryctl.dev/simulate: unready` (Running, never Ready, no restarts);
* scale: a good version; once the rollout is under way (phase Progressing, a new pod
  Ready) the stable (`app-primary`) is scaled from 2 to 4 through its scale subresource,
  as an HPA would (KWOK has no metrics, so no HPA can decide it here, and canaryctl's
  replicas router refuses an HPA on the target);
* kill: a good version; at the same point the tool's process gets SIGKILL and is started
  again 5 s later (a pod's restart).

The same labels and stages serve both tools, so the scenarios are identical. A daemon
thread reads the cluster every 0.5 s (`safety.Sample`: the Service's EndpointSlices split
by the version of the pod behind each endpoint, the new version's pods, both Deployments'
replicas, the tool's phase); `safety` defines *safe*, *traffic-safe* and *promoted* and
times them from the cluster's samples, not from what the tool says. The tool's final
phase, its status conditions and the Events about its Canary are recorded beside them.

Tools (each as its documentation recommends, never tuned to lose):

* canaryctl: `canaryctl operator`, managed mode (`targetRef`), replicas router, steps
  `[{setWeight: 50}, {pause: {duration: 30s}}]`, default health gates (`readyDeadline: 2m`,
  `maxRestarts: 0`);
* flagger: Flagger -mesh-provider=kubernetes (blue/green), `analysis: {interval: 10s,
  threshold: 2, iterations: 3}`, `progressDeadlineSeconds` unset (its default, 600 s);
* flagger-pd60: the same with `progressDeadlineSeconds: 60`, the value of its tutorials.

Run: make bench-failures, or
  .venv/bin/python benchmarks/peers/failures.py --runs canaryctl:crashloop,flagger:crashloop
  .venv/bin/python benchmarks/peers/failures.py --table benchmarks/results/failures-X.json
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event, Pod
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # as in compare.py
import compare
import report
import safety
from compare import NS, TOOLS, FlaggerCanary, Tool, say
from sampling import Sampler

from canaryctl.kube.canary import Canary
from canaryctl.kube.client import make_client

APP = "app"
PRIMARY = f"{APP}-primary"
REPLICAS = 2
SCALED = 4  # the stable's count after the mid-rollout scale-up
OLD, NEW = "app:1", "app:2"
RESTART_AFTER = 5.0  # seconds between the SIGKILL and the new process
SIMULATE = {
    "crashloop": {"canaryctl.dev/simulate": "crashloop"},
    "unready": {"canaryctl.dev/simulate": "unready"},
}
#: The phases after which each tool acts no more until the next change.
TERMINAL = {"Succeeded", "RolledBack", "Failed"}
STEPS = [{"setWeight": 50}, {"pause": {"duration": "30s"}}]


def _canaryctl_canary(name: str) -> Any:
    spec = {"targetRef": {"kind": "Deployment", "name": name}, "service": name, "steps": STEPS}
    return Canary(metadata=ObjectMeta(name=name, namespace=NS), spec=spec)


def _flagger_canary(deadline: int | None) -> Callable[[str], Any]:
    def canary(name: str) -> Any:
        spec: dict[str, Any] = {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": {"port": 80},
            "analysis": {"interval": "10s", "threshold": 2, "iterations": 3},
        }
        if deadline is not None:
            spec["progressDeadlineSeconds"] = deadline
        return FlaggerCanary(metadata=ObjectMeta(name=name, namespace=NS), spec=spec)

    return canary


_FLAGGER = (
    "Flagger -mesh-provider=kubernetes (blue/green) -log-level=info, defaults otherwise; "
    "analysis interval 10s, 3 iterations, threshold 2, no metrics"
)
FAILURE_TOOLS: dict[str, Tool] = {
    "canaryctl": replace(
        TOOLS["canaryctl"],
        canary=_canaryctl_canary,
        config="canaryctl operator, managed mode (targetRef), replicas router, steps "
        "[setWeight 50, pause 30s], default health gates (readyDeadline 2m, maxRestarts 0)",
    ),
    "flagger-pd60": replace(
        TOOLS["flagger"],
        name="flagger-pd60",
        canary=_flagger_canary(60),
        config=_FLAGGER + "; progressDeadlineSeconds 60 (its tutorials' value)",
    ),
    "flagger": replace(
        TOOLS["flagger"],
        canary=_flagger_canary(None),
        config=_FLAGGER + "; progressDeadlineSeconds unset (default 600 s)",
    ),
}
#: Default order: short runs first, Flagger's 10-minute deadline last.
DEFAULT_RUNS = (
    "canaryctl:crashloop,canaryctl:unready,canaryctl:scale,canaryctl:kill,"
    "flagger-pd60:crashloop,flagger-pd60:unready,flagger:scale,flagger:kill,"
    "flagger:crashloop,flagger:unready"
)


# --- reading the cluster -----------------------------------------------------------------


def _ready(pod: Pod) -> bool:
    conds = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conds)


class Watcher:
    """Daemon thread: a `safety.Sample` of the cluster every `every` seconds."""

    def __init__(self, client: Client, kind: Any, every: float = 0.5) -> None:
        self.client = client
        self.kind = kind
        self.samples: list[safety.Sample] = []
        self.new_ready_pods = 0  # of the last sample: the rollout is under way once > 0
        self.errors = 0
        self._images: dict[str, str] = {}  # every pod ever seen: its image
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def stop(self) -> list[safety.Sample]:
        self._stop.set()
        self._thread.join(timeout=10)
        return list(self.samples)

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.samples.append(self.read())
            except Exception:  # the API server busy or restarting: read again next time
                self.errors += 1
            self._stop.wait(max(0.0, every - (time.monotonic() - started)))

    def read(self) -> safety.Sample:
        at = time.time()
        pods_new = new_ready = 0
        for pod in self.client.list(Pod, namespace=NS):
            image = pod.spec.containers[0].image
            self._images[pod.metadata.name] = image
            if image == NEW and pod.metadata.deletionTimestamp is None:
                pods_new += 1
                new_ready += _ready(pod)
        ready = {OLD: 0, NEW: 0}
        slices = self.client.list(
            EndpointSlice, namespace=NS, labels={"kubernetes.io/service-name": APP}
        )
        for sl in slices:
            for ep in sl.endpoints or []:
                # `ready` unset means ready (the API's convention); terminating: False
                if ep.conditions is not None and ep.conditions.ready is False:
                    continue
                image = self._images.get(ep.targetRef.name if ep.targetRef else "")
                if image in ready:  # a pod not seen yet is counted from the next sample
                    ready[image] += 1
        replicas = {
            d.metadata.name: (d.spec.replicas or 0)
            for d in self.client.list(Deployment, namespace=NS)
        }
        phase = ""
        for obj in self.client.list(self.kind, namespace=NS):
            phase = str((obj.status or {}).get("phase") or "")
        self.new_ready_pods = new_ready
        return safety.Sample(
            at=at,
            phase=phase,
            ready_stable=ready[OLD],
            ready_new=ready[NEW],
            pods_new=pods_new,
            target_replicas=replicas.get(APP, 0),
            primary_replicas=replicas.get(PRIMARY, 0),
        )


def canary_events(client: Client, since: float) -> list[dict[str, Any]]:
    """Events about the Canary last seen at or after `since`, oldest first (times from
    `since`)."""
    out = []
    for ev in client.list(Event, namespace=NS):
        if ev.involvedObject.kind != "Canary" or ev.involvedObject.name != APP:
            continue
        first = ev.firstTimestamp or ev.eventTime or ev.metadata.creationTimestamp
        last = ev.lastTimestamp or first
        if last is None or last.timestamp() < since - 1:
            continue
        out.append(
            {
                "type": ev.type,
                "reason": ev.reason,
                "message": ev.message,
                "count": ev.count or 1,
                "first_s": round(first.timestamp() - since, 1) if first else None,
                "last_s": round(last.timestamp() - since, 1),
            }
        )
    return sorted(out, key=lambda e: (e["first_s"] is None, e["first_s"]))


def _quiet(samples: list[safety.Sample], settle: float, phases: set[str] = TERMINAL) -> bool:
    """The tool's phase one of `phases` and nothing changed in the last `settle` seconds."""
    if not samples or samples[-1].at - samples[0].at < settle:
        return False
    last = samples[-1]
    recent = [s for s in samples if s.at >= last.at - settle]
    return last.phase in phases and all(_state(s) == _state(last) for s in recent)


def _state(s: safety.Sample) -> tuple[Any, ...]:
    return (s.phase, s.ready_stable, s.ready_new, s.pods_new, s.target_replicas, s.primary_replicas)


def _wait(
    what: str,
    cond: Callable[[], bool],
    timeout: float,
    proc: subprocess.Popen[bytes] | None,
    log_path: Path,
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the tool exited ({proc.returncode}) before {what}; {log_path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not {what} within {timeout:.0f} s; see {log_path}")
        time.sleep(0.5)


# --- one run -----------------------------------------------------------------------------


def run_one(tool: Tool, scenario: str, bound: float, settle: float) -> dict[str, Any]:
    """One tool, one scenario, on a fresh cluster; the cluster and the tool are stopped."""
    say(f"{tool.name} {scenario}: cluster up")
    probe = Sampler()
    cluster, state = compare.fresh_cluster(f"bench-fail-{tool.name}-{scenario}", tool)
    proc: subprocess.Popen[bytes] | None = None
    log_path = Path(state.folder) / f"{tool.name}.log"
    watcher: Watcher | None = None
    extra: dict[str, Any] = {}
    try:
        client = make_client(state.kubeconfig)
        compare.prepare_namespace(client, tool)
        for obj in compare.workload(APP, REPLICAS, OLD):
            client.create(obj, namespace=NS)
        client.create(tool.canary(APP), namespace=NS)
        port = compare.free_port()
        proc = compare.start_tool(tool, state, log_path, port)
        probe.attach(proc.pid)
        watcher = Watcher(make_client(state.kubeconfig), tool.canary_kind)

        def initialised() -> bool:
            s = watcher.samples[-1] if watcher.samples else None
            return (
                s is not None
                and s.primary_replicas == REPLICAS
                and s.ready_stable >= REPLICAS
                and s.target_replicas == 0
                and (tool.canary_kind is not FlaggerCanary or s.phase == "Initialized")
            )

        _wait("initialised", initialised, 240, proc, log_path)
        time.sleep(3)  # the last writes of the initialisation settle
        say(f"{tool.name} {scenario}: initialised; bumping the image")
        patch: dict[str, Any] = {
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": NEW}]}}}
        }
        if scenario in SIMULATE:
            patch["spec"]["template"]["metadata"] = {"labels": SIMULATE[scenario]}
        bumped = time.time()
        client.patch(Deployment, APP, patch, namespace=NS, patch_type=PatchType.STRATEGIC)
        t0 = bumped
        if scenario in ("scale", "kill"):

            def under_way() -> bool:
                s = watcher.samples[-1] if watcher.samples else None
                return s is not None and s.phase == "Progressing" and watcher.new_ready_pods > 0

            _wait("under way", under_way, 240, proc, log_path)
            extra["under_way_s"] = round(time.time() - bumped, 1)
            if scenario == "scale":
                t0 = time.time()
                client.patch(
                    Deployment.Scale,
                    PRIMARY,
                    {"spec": {"replicas": SCALED}},
                    namespace=NS,
                    patch_type=PatchType.MERGE,
                )
                say(f"{tool.name} {scenario}: {PRIMARY} scaled to {SCALED}")
            else:
                t0 = time.time()
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                say(f"{tool.name} {scenario}: SIGKILL; restart in {RESTART_AFTER:.0f} s")
                time.sleep(RESTART_AFTER)
                extra["restarted_at"] = time.time()
                proc = compare.start_tool(tool, state, log_path, compare.free_port(), True)
                probe.attach(proc.pid)
        deadline = t0 + bound
        while time.time() < deadline and not _quiet(list(watcher.samples), settle):
            if proc.poll() is not None:
                raise RuntimeError(f"{tool.name} exited ({proc.returncode}); see {log_path}")
            if (
                scenario == "scale"
                and tool.canary_kind is Canary
                and "user_resumed_s" not in extra
                and _quiet(list(watcher.samples), 3 * settle, {"Paused"})
            ):
                # canaryctl pauses when another actor scales the stable and its Event asks
                # the user to run `canaryctl resume`: do that, and see what it does next
                extra["paused_primary"] = watcher.samples[-1].primary_replicas
                subprocess.run(
                    [compare.CLI, "resume", APP, "-n", NS, "--kubeconfig", str(state.kubeconfig)],
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
                extra["user_resumed_s"] = round(time.time() - t0, 1)
                say(f"{tool.name} {scenario}: paused; resumed as its Event asks")
            time.sleep(1)
        timed_out = time.time() >= deadline
        samples = watcher.stop()
        events = canary_events(client, bumped)
        status = dict(client.get(tool.canary_kind, APP, namespace=NS).status or {})
    finally:
        if watcher is not None:
            watcher.stop()
        compare.stop_tool(proc)
        loads = probe.stop()
        audit = report.parse_audit(state.audit_log.read_text(errors="replace").splitlines())
        kept = compare.keep_log(log_path, f"failures-{tool.name}-{scenario}")
        cluster.down()
    resume = None
    if "restarted_at" in extra:
        first = report.first_writes(audit, tool.user, {APP: extra["restarted_at"]})
        resume = first.get(APP)
    return {
        "tool": tool.name,
        "scenario": scenario,
        "version": tool.version or compare._canaryctl_version(),
        "config": tool.config,
        "bound_s": bound,
        "timed_out": timed_out,
        "t0": {"crashloop": "bump", "unready": "bump", "scale": "scale", "kill": "kill"}[scenario],
        "figures": {
            **figures(scenario, samples, t0, resume),
            "terminal_s": safety.settles_at(samples, t0, lambda s: s.phase in TERMINAL),
            **{k: extra[k] for k in ("user_resumed_s", "paused_primary") if k in extra},
        },
        "final_phase": samples[-1].phase if samples else None,
        "phases": safety.phase_timeline(samples, t0),
        "events": events,
        "conditions": status.get("conditions") or [],
        "status": status,
        "load_range": f"{loads['min']:.1f}-{loads['max']:.1f}",
        "load": loads,
        "sample_errors": watcher.errors if watcher else None,
        "samples": [s.to_dict() for s in samples[::4]],  # every 2 s, for a later look
        "log": str(kept),
        "under_way_s": extra.get("under_way_s"),
    }


def figures(
    scenario: str, samples: list[safety.Sample], t0: float, resume: float | None
) -> dict[str, Any]:
    """The scenario's figures from the cluster's samples (see `safety`)."""
    last = samples[-1] if samples else None
    if scenario in SIMULATE:
        safe_s = safety.settles_at(samples, t0, safety.safe(REPLICAS))
        unsafe = safety.traffic_safe(REPLICAS)
        return {
            "safe_s": safe_s,
            "safe_within_bound": safe_s is not None and safe_s <= 600,
            "traffic_unsafe_s": safety.seconds_where(samples, t0, lambda s: not unsafe(s)),
            "max_new_share": safety.max_new_share(samples, t0),
            "min_serving": safety.min_serving(samples, t0),
        }
    if scenario == "scale":
        up = next(
            (s.at for s in samples if s.at >= t0 and s.ready_new + s.ready_stable >= SCALED), None
        )
        return {
            "done_s": safety.settles_at(samples, t0, safety.promoted(SCALED)),
            "serving_reached_4_s": None if up is None else up - t0,
            "min_serving_after_4": None if up is None else safety.min_serving(samples, up),
            "min_primary_after": min(
                (s.primary_replicas for s in samples if s.at >= t0), default=None
            ),
            "final_primary": last.primary_replicas if last else None,
            "final_ready": last.ready_new + last.ready_stable if last else None,
            "kept_count": bool(
                last
                and last.primary_replicas >= SCALED
                and last.ready_new >= SCALED
                and last.ready_stable == 0
            ),
        }
    done = safety.settles_at(samples, t0, safety.promoted(REPLICAS))
    return {
        "resume_s": resume,
        "done_s": done,
        "min_serving": safety.min_serving(samples, t0),
        "completed": bool(last and last.phase == "Succeeded" and done is not None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="tool:scenario,... in order")
    parser.add_argument(
        "--bound",
        type=float,
        default=660.0,
        help="seconds after the failure before a run is stopped",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=10.0,
        help="seconds of a terminal phase with nothing changing that end a run",
    )
    parser.add_argument("--out", type=Path, help="JSON file (runs are added or replaced)")
    parser.add_argument("--table", type=Path, help="only print the tables of a saved file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.table:
        runs = json.loads(args.table.read_text())["runs"]
        print(safety.table(runs))
        print(safety.messages(runs))
        return
    tools = {name: tool.config for name, tool in FAILURE_TOOLS.items()}
    out, record = compare.results(args.out, "failures", "%Y-%m-%d", tools=tools)
    for item in args.runs.split(","):
        name, scenario = item.split(":")
        if scenario not in safety.SCENARIOS:
            raise SystemExit(f"unknown scenario {scenario!r}: one of {', '.join(safety.SCENARIOS)}")
        try:
            row = run_one(FAILURE_TOOLS[name], scenario, args.bound, args.settle)
        except (
            RuntimeError,
            OSError,
            ApiError,
            httpx.HTTPError,
            subprocess.SubprocessError,
        ) as exc:
            # one run's failure is reported as such (its row has no figures) and the
            # next run goes on: a harness error is never a tool's result
            say(f"{name} {scenario}: run failed: {exc}")
            row = {"tool": name, "scenario": scenario, "error": str(exc), "figures": {}}
        record["runs"] = [
            r for r in record["runs"] if (r["tool"], r["scenario"]) != (name, scenario)
        ] + [row]
        out.write_text(json.dumps(record, indent=2, default=str) + "\n")
        brief = {k: row.get(k) for k in ("tool", "scenario", "final_phase", "figures", "error")}
        print(json.dumps(brief, default=str), file=sys.stderr, flush=True)
    print(safety.table(record["runs"]))
    print(safety.messages(record["runs"]))
    print(f"saved {out}")


if __name__ == "__main__":
    main()

"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK simulating nodes and pods, all on 127.0.0.1 with free ports.

State (ports, pids, certificates, logs, kubeconfig) lives in one folder per cluster name;
``up`` is idempotent and ``down`` stops every process it started, by pid, and removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import httpx
import yaml

from canaryctl.errors import TestenvError
from canaryctl.testenv import binaries, pki, versions
from canaryctl.testenv.binaries import Progress

#: Start order; ``down`` stops in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"


@dataclass
class ClusterState:
    """What a running cluster needs to be found and stopped again; saved as state.json."""

    name: str
    folder: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0

    @property
    def kubeconfig(self) -> Path:
        return Path(self.folder) / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"


def state_root() -> Path:
    """Parent folder of every local cluster's state."""
    return binaries.cache_root() / "testenv"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int, folder: str) -> bool:
    """True if pid runs and is ours: its command line names our state folder.

    Checking the command line keeps ``down`` from killing an unrelated process that
    reused a pid after a reboot.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if stat.split(") ", 1)[-1].startswith("Z"):
        return False  # a zombie has exited
    return folder in cmdline


class LocalCluster:
    """Handle on one named local control plane."""

    def __init__(
        self,
        name: str = "default",
        *,
        nodes: int = 2,
        binary_paths: Mapping[str, str | Path] | None = None,
        progress: Progress = print,
    ) -> None:
        self.name = name
        self.nodes = nodes
        self.binary_paths = binary_paths
        self.progress = progress
        self.folder = state_root() / name
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # --- queries -------------------------------------------------------------

    def state(self) -> ClusterState | None:
        """The saved state, or None when this cluster was never started or is down."""
        path = self.folder / "state.json"
        if not path.exists():
            return None
        return ClusterState(**json.loads(path.read_text()))

    @property
    def kubeconfig(self) -> Path:
        """Path of the admin kubeconfig (exists while the cluster is up)."""
        return self.folder / "kubeconfig"

    def status(self) -> dict[str, object]:
        """Per-component pid, liveness and memory, plus API health."""
        state = self.state()
        if state is None:
            return {"name": self.name, "running": False, "components": {}}
        comps: dict[str, object] = {}
        total_rss = 0
        for comp in COMPONENTS:
            pid = state.pids.get(comp)
            alive = bool(pid) and _alive(pid, state.folder)
            rss = _rss_bytes(pid) if alive and pid else 0
            total_rss += rss
            comps[comp] = {"pid": pid, "alive": alive, "rss_mib": round(rss / 2**20, 1)}
        return {
            "name": self.name,
            "running": all(c["alive"] for c in comps.values()),  # type: ignore[index]
            "healthy": self._api_ready(state),
            "server": state.server,
            "kubeconfig": str(state.kubeconfig),
            "components": comps,
            "memory_mib": round(total_rss / 2**20, 1),
            "versions": {
                "kubernetes": versions.KUBERNETES_VERSION,
                "etcd": versions.ETCD_VERSION,
                "kwok": versions.KWOK_VERSION,
            },
        }

    # --- lifecycle -----------------------------------------------------------

    def up(self, timeout: float = 90.0) -> ClusterState:
        """Start the cluster (or return the running one) and wait for Ready nodes."""
        state = self.state()
        if state is not None:
            alive = [c for c in COMPONENTS if _alive(state.pids.get(c, 0), state.folder)]
            if len(alive) == len(COMPONENTS) and self._api_ready(state):
                return state
            self.progress(f"testenv {self.name}: found a partial cluster, restarting it")
            self.down()
        bins = binaries.ensure(self.binary_paths, self.progress)
        started = time.monotonic()
        deadline = started + timeout
        self.folder.mkdir(parents=True, exist_ok=True)
        ports = {
            "etcd": _free_port(),
            "etcd-peer": _free_port(),
            "kube-apiserver": _free_port(),
            "kube-controller-manager": _free_port(),
            "kube-scheduler": _free_port(),
            "kwok": _free_port(),
        }
        state = ClusterState(self.name, str(self.folder), ports, started_at=time.time())
        certs = pki.generate(self.folder / "pki")
        self._write_kubeconfig(state, certs)
        try:
            self._start(state, "etcd", self._etcd_args(bins, state))
            self._wait(lambda: self._etcd_healthy(state), deadline, "etcd health")
            self._start(state, "kube-apiserver", self._apiserver_args(bins, state, certs))
            self._wait(lambda: self._api_ready(state), deadline, "kube-apiserver /readyz")
            self._start(state, "kube-controller-manager", self._kcm_args(bins, state, certs))
            self._start(state, "kube-scheduler", self._scheduler_args(bins, state))
            self._start(state, "kwok", self._kwok_args(bins, state))
            self._create_nodes(state)
            self._wait(lambda: self._ready_nodes(state) >= self.nodes, deadline, "Ready nodes")
            self._wait(lambda: self._default_sa(state), deadline, "default ServiceAccount")
            self._install_canary_crd(state, deadline)
        except BaseException:
            self.down()
            raise
        self.progress(
            f"testenv {self.name}: up in {time.monotonic() - started:.1f}s at {state.server} "
            f"with {self.nodes} KWOK nodes"
        )
        return state

    def down(self) -> None:
        """Stop every process this cluster started and remove its folder."""
        state = self.state()
        if state is not None:
            for comp in reversed(COMPONENTS):
                pid = state.pids.get(comp)
                if pid and _alive(pid, state.folder):
                    _stop(pid, state.folder)
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- process plumbing ----------------------------------------------------

    def _save(self, state: ClusterState) -> None:
        tmp = self.folder / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.replace(tmp, self.folder / "state.json")

    def _start(self, state: ClusterState, comp: str, args: list[str]) -> None:
        log = open(self.folder / f"{comp}.log", "ab")  # noqa: SIM115 - the child keeps it
        # A new session keeps the control plane alive after the CLI that started it exits,
        # and keeps a Ctrl-C in that terminal from reaching it.
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.folder,
        )
        log.close()
        self._procs[comp] = proc
        state.pids[comp] = proc.pid
        self._save(state)  # saved at once, so a crash during up still lets down find it

    def _wait(self, check: object, deadline: float, what: str) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            state = self.state()
            if state is not None:
                # Our own children are asked directly: a process that is just exec'ing can
                # briefly show an empty command line in /proc.
                dead = [
                    c
                    for c, pid in state.pids.items()
                    if (
                        self._procs[c].poll() is not None
                        if c in self._procs
                        else not _alive(pid, state.folder)
                    )
                ]
                if dead:
                    code = self._procs[dead[0]].poll() if dead[0] in self._procs else None
                    raise TestenvError(
                        f"testenv: {', '.join(dead)} exited during start-up (exit status {code}); "
                        f"see {self.folder}/{dead[0]}.log:\n{_tail(self.folder / f'{dead[0]}.log')}"
                    )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.2)
        raise TestenvError(f"testenv: timed out waiting for {what}; logs in {self.folder}")

    # --- component arguments -------------------------------------------------

    def _etcd_args(self, bins: dict[str, Path], state: ClusterState) -> list[str]:
        p = state.ports
        peer = f"http://127.0.0.1:{p['etcd-peer']}"
        client = f"http://127.0.0.1:{p['etcd']}"
        return [
            str(bins["etcd"]),
            "--name=testenv",
            f"--data-dir={state.folder}/etcd",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=testenv={peer}",
            "--listen-metrics-urls=",
            # Throwaway data: skipping fsync makes the control plane several times faster.
            "--unsafe-no-fsync",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ]

    def _apiserver_args(
        self, bins: dict[str, Path], state: ClusterState, certs: pki.Pki
    ) -> list[str]:
        return [
            str(bins["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{state.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={state.ports['kube-apiserver']}",
            f"--cert-dir={state.folder}/pki",
            f"--tls-cert-file={certs.server_cert}",
            f"--tls-private-key-file={certs.server_key}",
            f"--client-ca-file={certs.ca_cert}",
            f"--service-account-key-file={certs.sa_pub}",
            f"--service-account-signing-key-file={certs.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=0",
        ]

    def _kcm_args(self, bins: dict[str, Path], state: ClusterState, certs: pki.Pki) -> list[str]:
        return [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={state.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={state.ports['kube-controller-manager']}",
            "--leader-elect=false",
            f"--service-account-private-key-file={certs.sa_key}",
            f"--root-ca-file={certs.ca_cert}",
            "--use-service-account-credentials=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Fake nodes carry no kubelet; the lease renewals KWOK makes keep them Ready.
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--profiling=false",
        ]

    def _scheduler_args(self, bins: dict[str, Path], state: ClusterState) -> list[str]:
        return [
            str(bins["kube-scheduler"]),
            f"--kubeconfig={state.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={state.ports['kube-scheduler']}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _kwok_args(self, bins: dict[str, Path], state: ClusterState) -> list[str]:
        config = Path(state.folder) / "kwok.yaml"
        docs = [
            {
                "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
                "kind": "KwokConfiguration",
                "options": {
                    "cidr": POD_CIDR,
                    "nodeIP": "10.240.0.1",
                    "nodeLeaseDurationSeconds": 40,
                    "nodeLeaseParallelism": 4,
                    "nodePlayStageParallelism": 4,
                    "podPlayStageParallelism": 8,
                    "podsOnNodeSyncParallelism": 4,
                    "manageNodesWithAnnotationSelector": f"{NODE_ANNOTATION}=fake",
                },
            }
        ]
        stages = resources.files("canaryctl.testenv") / "stages"
        text = "\n---\n".join(yaml.safe_dump(d) for d in docs)
        for name in ("nodes.yaml", "pods.yaml"):
            text += "\n---\n" + (stages / name).read_text()
        config.write_text(text)
        return [
            str(bins["kwok"]),
            f"--kubeconfig={state.kubeconfig}",
            f"--config={config}",
            f"--server-address=127.0.0.1:{state.ports['kwok']}",
        ]

    def _write_kubeconfig(self, state: ClusterState, certs: pki.Pki) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": f"canaryctl-{self.name}",
                    "cluster": {
                        "server": state.server,
                        "certificate-authority": str(certs.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(certs.admin_cert),
                        "client-key": str(certs.admin_key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": f"canaryctl-{self.name}",
                    "context": {"cluster": f"canaryctl-{self.name}", "user": "admin"},
                }
            ],
            "current-context": f"canaryctl-{self.name}",
        }
        state.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        state.kubeconfig.chmod(0o600)

    # --- health --------------------------------------------------------------

    def _http(self, state: ClusterState) -> httpx.Client:
        pki_dir = Path(state.folder) / "pki"
        ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
        return httpx.Client(verify=ctx, timeout=2.0)

    def _etcd_healthy(self, state: ClusterState) -> bool:
        r = httpx.get(f"http://127.0.0.1:{state.ports['etcd']}/health", timeout=2.0)
        return r.status_code == 200 and r.json().get("health") == "true"

    def _api_ready(self, state: ClusterState) -> bool:
        try:
            with self._http(state) as http:
                return http.get(f"{state.server}/readyz").status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    def _create_nodes(self, state: ClusterState) -> None:
        with self._http(state) as http:
            for i in range(self.nodes):
                name = f"kwok-node-{i}"
                body = {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {NODE_ANNOTATION: "fake"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "type": "kwok",
                        },
                    },
                }
                r = http.post(f"{state.server}/api/v1/nodes", json=body)
                if r.status_code not in (201, 409):
                    raise TestenvError(f"testenv: creating node {name} failed: {r.text}")

    def _ready_nodes(self, state: ClusterState) -> int:
        with self._http(state) as http:
            items = http.get(f"{state.server}/api/v1/nodes").json()["items"]
        return sum(
            1
            for node in items
            for cond in node.get("status", {}).get("conditions", [])
            if cond["type"] == "Ready" and cond["status"] == "True"
        )

    def _install_canary_crd(self, state: ClusterState, deadline: float) -> None:
        # canaryctl's own Canary CRD is part of every local cluster: the operator, its tests
        # and `kubectl get canaries` work out of the box (one small apply, no download).
        from canaryctl.kube.client import make_client
        from canaryctl.testenv import crds

        crds.install_canaryctl(
            make_client(state.kubeconfig), timeout=max(deadline - time.monotonic(), 5.0)
        )

    def _default_sa(self, state: ClusterState) -> bool:
        # The ServiceAccount admission plugin rejects pods until the controller made it.
        with self._http(state) as http:
            url = f"{state.server}/api/v1/namespaces/default/serviceaccounts/default"
            return http.get(url).status_code == 200


def _stop(pid: int, folder: str, grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid, folder):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Reap it if it is our child (same process started it), so no zombie is left.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"

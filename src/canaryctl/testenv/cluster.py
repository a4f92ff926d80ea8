"""A real local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK simulating nodes and pods, all on 127.0.0.1 with free ports; with
``dataplane=True`` also one real node (containerd, kubelet, kube-proxy, see ``dataplane``).

Every process is a ``Component`` built by one small function below (or in ``dataplane``);
one ``Runner`` starts them in dependency order, waits for health and stops them in reverse.
State (ports, pids, certificates, logs, kubeconfig) lives in one folder per cluster name;
``up`` is idempotent and ``down`` stops every process it started, by pid, and removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import httpx
import yaml

from canaryctl.errors import TestenvError
from canaryctl.testenv import binaries, images, pki, versions
from canaryctl.testenv.binaries import Progress
from canaryctl.testenv.components import Component, Runner, alive, stop_pid

#: The control plane's components in start order; ``down`` stops in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"

#: Kept for callers of the old private name.
_alive = alive


@dataclass
class ClusterState:
    """What a running cluster needs to be found and stopped again; saved as state.json."""

    name: str
    folder: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    #: True when the cluster has a real node (containerd, kubelet, kube-proxy).
    dataplane: bool = False
    #: kube-proxy's mode on the real node: iptables or nftables.
    proxy_mode: str = "iptables"
    #: Client identities whose requests the API server writes to audit.log (metadata only);
    #: empty: no audit log. Each has its own kubeconfig, see ``user_kubeconfig``.
    audit_users: list[str] = field(default_factory=list)
    #: The one address the API server listens on, and every client's (kubeconfigs, the
    #: node, the health checks): 127.0.0.1, or the node's address with a real node.
    address: str = "127.0.0.1"

    @property
    def kubeconfig(self) -> Path:
        return Path(self.folder) / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.ports['kube-apiserver']}"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (written only when ``audit_users`` is set)."""
        return Path(self.folder) / "audit.log"

    def user_kubeconfig(self, user: str) -> Path:
        """Kubeconfig of one of the ``audit_users`` (cluster-admin under its own name)."""
        return Path(self.folder) / f"kubeconfig-{user}"


def state_root() -> Path:
    """Parent folder of every local cluster's state."""
    return binaries.cache_root() / "testenv"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Bed:
    """What component builders read: binaries, the cluster's state and its certificates."""

    bins: Mapping[str, Path]
    state: ClusterState
    certs: pki.Pki

    @property
    def folder(self) -> Path:
        return Path(self.state.folder)

    def port(self, name: str) -> int:
        """The port named ``name``, picked once and kept in the state."""
        if name not in self.state.ports:
            self.state.ports[name] = free_port()
        return self.state.ports[name]


Builder = Callable[[Bed], Component]


# --- health checks ------------------------------------------------------------


def http_client(state: ClusterState) -> httpx.Client:
    """An HTTP client with the admin certificate of the cluster."""
    pki_dir = Path(state.folder) / "pki"
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    return httpx.Client(verify=ctx, timeout=2.0)


def api_ready(state: ClusterState) -> bool:
    """True when the API server answers /readyz with 200."""
    try:
        with http_client(state) as http:
            return http.get(f"{state.server}/readyz").status_code == 200
    except (httpx.HTTPError, OSError):
        return False


def etcd_healthy(state: ClusterState) -> bool:
    """True when etcd reports itself healthy."""
    r = httpx.get(f"http://127.0.0.1:{state.ports['etcd']}/health", timeout=2.0)
    return r.status_code == 200 and r.json().get("health") == "true"


# --- the control plane's components ---------------------------------------------


def etcd(bed: Bed) -> Component:
    """etcd on 127.0.0.1, throwaway data in the state folder."""
    peer = f"http://127.0.0.1:{bed.port('etcd-peer')}"
    client = f"http://127.0.0.1:{bed.port('etcd')}"
    return Component(
        name="etcd",
        command=(
            str(bed.bins["etcd"]),
            "--name=testenv",
            f"--data-dir={bed.folder}/etcd",
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
        ),
        health=lambda: etcd_healthy(bed.state),
        health_what="etcd health",
    )


def _apiserver_addresses(state: ClusterState) -> list[str]:
    """Where the API server listens, and the address of the `kubernetes` Service's endpoint.

    Without a real node only local processes talk to it: loopback. With one, pods do too
    (an operator in a pod): they reach 10.96.0.1, which kube-proxy forwards to the endpoint
    the API server advertises, so that must be the node's address (a pod's 127.0.0.1 is its
    own). kube-apiserver has a single --bind-address, so it listens on the node's address
    only (not on every interface of the host), and every client on the host uses that
    address too (``ClusterState.address``, in the kubeconfigs and the serving certificate).
    """
    return [f"--bind-address={state.address}", f"--advertise-address={state.address}"]


def kube_apiserver(bed: Bed) -> Component:
    """The API server, RBAC on, serving certificates from the cluster's CA."""
    certs = bed.certs
    args = [
        str(bed.bins["kube-apiserver"]),
        f"--etcd-servers=http://127.0.0.1:{bed.port('etcd')}",
        *_apiserver_addresses(bed.state),
        # Every client has a certificate or a token (kubelet, kube-proxy, controllers,
        # pods, health checks): a request without credentials is refused, not anonymous.
        "--anonymous-auth=false",
        f"--secure-port={bed.port('kube-apiserver')}",
        f"--cert-dir={bed.folder}/pki",
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
    if bed.state.audit_users:
        policy = bed.folder / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(audit_policy(bed.state.audit_users)))
        args += [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={bed.state.audit_log}",
            "--audit-log-format=json",
        ]
    if bed.state.dataplane:
        # `kubectl logs/exec/port-forward` go through the API server to the kubelet: it
        # dials the node's InternalIP with a client certificate the kubelet trusts.
        args += [
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={certs.kubelet_client_cert}",
            f"--kubelet-client-key={certs.kubelet_client_key}",
            f"--kubelet-certificate-authority={certs.ca_cert}",
        ]
    return Component(
        name="kube-apiserver",
        command=tuple(args),
        links=("etcd",),
        health=lambda: api_ready(bed.state),
        health_what="kube-apiserver /readyz",
    )


def audit_policy(users: list[str]) -> dict[str, object]:
    """Request metadata (who, verb, object, code, times) of ``users`` only, one line per
    request: written when the response completes, so a watch counts once, at its end."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [{"level": "Metadata", "users": list(users)}, {"level": "None"}],
    }


def kube_controller_manager(bed: Bed) -> Component:
    """The controllers that do not need a cloud or node IPAM."""
    return Component(
        name="kube-controller-manager",
        command=(
            str(bed.bins["kube-controller-manager"]),
            f"--kubeconfig={bed.state.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={bed.port('kube-controller-manager')}",
            "--leader-elect=false",
            f"--service-account-private-key-file={bed.certs.sa_key}",
            f"--root-ca-file={bed.certs.ca_cert}",
            "--use-service-account-credentials=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Fake nodes carry no kubelet; the lease renewals KWOK makes keep them Ready.
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--profiling=false",
        ),
        links=("kube-apiserver",),
    )


def kube_scheduler(bed: Bed) -> Component:
    """The default scheduler."""
    return Component(
        name="kube-scheduler",
        command=(
            str(bed.bins["kube-scheduler"]),
            f"--kubeconfig={bed.state.kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={bed.port('kube-scheduler')}",
            "--leader-elect=false",
            "--profiling=false",
        ),
        links=("kube-apiserver",),
    )


def kwok(bed: Bed) -> Component:
    """KWOK: simulates the nodes annotated as fake and their pods (stages in stages/)."""
    config = bed.folder / "kwok.yaml"
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
                # Only fake nodes: the real node (if any) belongs to its kubelet.
                "manageNodesWithAnnotationSelector": f"{NODE_ANNOTATION}=fake",
            },
        }
    ]
    stages = resources.files("canaryctl.testenv") / "stages"
    text = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    for name in ("nodes.yaml", "pods.yaml"):
        text += "\n---\n" + (stages / name).read_text()
    return Component(
        name="kwok",
        command=(
            str(bed.bins["kwok"]),
            f"--kubeconfig={bed.state.kubeconfig}",
            f"--config={config}",
            f"--server-address=127.0.0.1:{bed.port('kwok')}",
        ),
        links=("kube-apiserver",),
        files={config: text},
    )


#: Builders of the control plane, in start order.
CONTROL_PLANE: tuple[Builder, ...] = (
    etcd,
    kube_apiserver,
    kube_controller_manager,
    kube_scheduler,
    kwok,
)


class LocalCluster:
    """Handle on one named local control plane (and, optionally, one real node)."""

    def __init__(
        self,
        name: str = "default",
        *,
        nodes: int = 2,
        dataplane: bool = False,
        proxy_mode: str = "iptables",
        audit_users: tuple[str, ...] = (),
        binary_paths: Mapping[str, str | Path] | None = None,
        progress: Progress = print,
    ) -> None:
        self.name = name
        self.nodes = nodes
        self.dataplane = dataplane
        self.proxy_mode = proxy_mode
        #: Benchmarks: an audit log of these client identities' requests (off by default).
        self.audit_users = tuple(audit_users)
        self.binary_paths = binary_paths
        self.progress = progress
        self.folder = state_root() / name
        self._runner = Runner(self.folder, progress)

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

    def builders(self, state: ClusterState) -> list[Builder]:
        """Every component of this cluster: the control plane, then the real node if asked."""
        builders = list(CONTROL_PLANE)
        if state.dataplane:
            from canaryctl.testenv import dataplane, traefik

            builders += [*dataplane.NODE, traefik.traefik]
        return builders

    def status(self) -> dict[str, object]:
        """Per-component pid, liveness and memory, plus API health (and the real node)."""
        state = self.state()
        if state is None:
            return {"name": self.name, "running": False, "components": {}}
        comps = Runner.status(state.pids, state.folder)
        total = sum(float(c["rss_mib"]) for c in comps.values())  # type: ignore[arg-type]
        info: dict[str, object] = {
            "name": self.name,
            "running": bool(comps) and all(c["alive"] for c in comps.values()),
            "healthy": api_ready(state),
            "server": state.server,
            "kubeconfig": str(state.kubeconfig),
            "components": comps,
            "memory_mib": round(total, 1),
            "versions": {
                "kubernetes": versions.KUBERNETES_VERSION,
                "etcd": versions.ETCD_VERSION,
                "kwok": versions.KWOK_VERSION,
            },
        }
        if state.dataplane:
            from canaryctl.testenv import dataplane, traefik

            info["node"] = dataplane.node_status(state, http_client)
            proxy = traefik.state_of(state)
            if proxy is not None:
                info["traefik"] = {"url": proxy.url, "api": proxy.api}
        return info

    # --- lifecycle -----------------------------------------------------------

    def up(self, timeout: float = 90.0) -> ClusterState:
        """Start the cluster (or return the running one) and wait for Ready nodes."""
        state = self.state()
        if state is not None:
            every = state.pids and all(alive(p, state.folder) for p in state.pids.values())
            same = (state.dataplane, state.proxy_mode) == (self.dataplane, self.proxy_mode)
            audited = set(self.audit_users) <= set(state.audit_users)
            if every and (same or not self.dataplane) and audited and api_ready(state):
                return state
            self.progress(f"testenv {self.name}: found a partial or different cluster, restarting")
            self.down()
        names = list(versions.ALL_BINARIES)
        if self.dataplane:
            names += versions.NODE_COMMANDS
        # A first build takes minutes; the start-up timeout counts from after it.
        bins = binaries.ensure(self.binary_paths, self.progress, names=names)
        if self.dataplane:
            from canaryctl.testenv import traefik_build

            # Built apart: its own pinned module, shims and cache folder.
            bins = {**bins, "traefik": traefik_build.ensure(self.progress)}
        started = time.monotonic()
        deadline = started + timeout
        address = "127.0.0.1"
        if self.dataplane:
            from canaryctl.testenv.dataplane import node_ip

            address = node_ip()
        state = ClusterState(
            self.name,
            str(self.folder),
            {},
            started_at=time.time(),
            dataplane=self.dataplane,
            proxy_mode=self.proxy_mode,
            audit_users=list(self.audit_users),
            address=address,
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        certs = pki.generate(self.folder / "pki", addresses=(address,))
        bed = Bed(bins, state, certs)
        try:
            components = [build(bed) for build in self.builders(state)]
            self._write_kubeconfig(state, certs)
            for user in state.audit_users:
                crt, key = pki.issue(
                    self.folder / "pki", f"user-{user}", user, organizations=("system:masters",)
                )
                self._write_kubeconfig(state, certs, user=(user, crt, key))
            self._save(state)
            if self.dataplane:
                from canaryctl.testenv import dataplane

                dataplane.prepare_host(bed)
            self._runner.start(components, state.pids, lambda: self._save(state), deadline)
            self._create_nodes(state)
            want = self.nodes + (1 if self.dataplane else 0)
            self._runner.wait(
                lambda: self._ready_nodes(state) >= want, state.pids, deadline, "Ready nodes"
            )
            self._runner.wait(
                lambda: self._default_sa(state), state.pids, deadline, "default ServiceAccount"
            )
            self._install_canary_crd(state, deadline)
        except BaseException:
            self.down()
            raise
        real = " and a real node" if self.dataplane else ""
        self.progress(
            f"testenv {self.name}: up in {time.monotonic() - started:.1f}s at {state.server} "
            f"with {self.nodes} KWOK nodes{real}"
        )
        return state

    def down(self) -> None:
        """Stop every process this cluster started, put the host back, remove its folder."""
        state = self.state()
        if state is not None:
            hooks: dict[str, Callable[[], None]] = {}
            grace: dict[str, float] = {}
            if state.dataplane:
                from canaryctl.testenv import dataplane

                hooks, grace = dataplane.stop_hooks(state)
            Runner.stop(state.pids, state.folder, hooks, grace)
            if state.dataplane:
                dataplane.restore_host(state)
        shutil.rmtree(self.folder, ignore_errors=True)

    def restart_component(
        self, name: str, down_for: float = 0.0, timeout: float = 60.0, grace: float = 10.0
    ) -> None:
        """Stop one running component, keep it down `down_for` seconds, start it again.

        For outage tests (kube-apiserver, etcd, ...): the process gets SIGTERM, SIGKILL
        after `grace` seconds (0: a crash; kube-apiserver's graceful shutdown outlasts 10 s),
        then the same command line and environment start again, and this returns once the
        component and the API server are healthy. Its pid is saved, so `down` finds it.
        """
        state = self.state()
        if state is None or name not in state.pids:
            raise TestenvError(f"testenv {self.name}: no running component named {name!r}")
        pid = state.pids[name]
        if not alive(pid, state.folder):
            raise TestenvError(f"testenv {self.name}: {name} (pid {pid}) is not running")
        proc = Path(f"/proc/{pid}")
        command = tuple(a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a)
        env = dict(
            item.decode(errors="replace").partition("=")[::2]
            for item in (proc / "environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        stop_pid(pid, state.folder, grace)
        time.sleep(max(0.0, down_for))
        health = {"etcd": etcd_healthy, "kube-apiserver": api_ready}.get(name)
        comp = Component(
            name=name,
            command=command,
            env=env,
            health=(lambda: health(state)) if health else None,
            health_what=f"{name} health after a restart",
        )
        state.pids[name] = self._runner.spawn(comp)
        self._save(state)
        deadline = time.monotonic() + timeout
        self._runner.wait_healthy(comp, state.pids, deadline)
        # The API server serves again only once it reaches etcd (after an etcd restart too).
        self._runner.wait(lambda: api_ready(state), state.pids, deadline, "API server health")

    def load_image(self, image: images.Image) -> None:
        """Import a locally built image into the real node's containerd."""
        state = self.state()
        if state is None or not state.dataplane:
            raise TestenvError(f"testenv {self.name}: no real node to load {image.ref} into")
        from canaryctl.testenv import dataplane

        images.import_image(image, dataplane.socket_address(state.folder))

    def _save(self, state: ClusterState) -> None:
        tmp = self.folder / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.replace(tmp, self.folder / "state.json")

    # --- bootstrap -------------------------------------------------------------

    def _write_kubeconfig(
        self, state: ClusterState, certs: pki.Pki, user: tuple[str, Path, Path] | None = None
    ) -> None:
        """The admin kubeconfig, or with ``user`` = (name, cert, key) that user's own."""
        name, crt, key = user or ("admin", certs.admin_cert, certs.admin_key)
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
                    "name": name,
                    "user": {"client-certificate": str(crt), "client-key": str(key)},
                }
            ],
            "contexts": [
                {
                    "name": f"canaryctl-{self.name}",
                    "context": {"cluster": f"canaryctl-{self.name}", "user": name},
                }
            ],
            "current-context": f"canaryctl-{self.name}",
        }
        path = state.kubeconfig if user is None else state.user_kubeconfig(name)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def _create_nodes(self, state: ClusterState) -> None:
        with http_client(state) as http:
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
        with http_client(state) as http:
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
        with http_client(state) as http:
            url = f"{state.server}/api/v1/namespaces/default/serviceaccounts/default"
            return http.get(url).status_code == 200

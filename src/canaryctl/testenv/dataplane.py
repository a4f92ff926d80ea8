"""One real node next to the KWOK nodes: containerd, kubelet and kube-proxy on this host.

containerd (the Debian package) runs with its own config, root, state and socket in the
cluster's folder; the CNI bridge, host-local, portmap and loopback plugins come from
Debian's containernetworking-plugins (/usr/lib/cni) with a network config of our own. The
kubelet and kube-proxy are built from the same pinned Kubernetes module as the control plane.
Pods run only where a test asks for them: the node carries the label
``canaryctl.dev/node=real`` and the taint ``canaryctl.dev/real=true:NoSchedule`` (see
``REAL_POD_PLACEMENT``); the KWOK nodes keep simulating everything else.

Needs root (network namespaces, iptables, mounts, cgroups). Only one real node per host:
two kube-proxies would rewrite each other's rules. Everything it changes on the host is
saved before it starts and put back by ``restore_host`` (see ``host``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from canaryctl.errors import TestenvError
from canaryctl.testenv import host, images, pki
from canaryctl.testenv.components import Component, alive, names_folder

if TYPE_CHECKING:
    from canaryctl.testenv.cluster import Bed, Builder, ClusterState

NODE_NAME = "real-node"
NODE_LABEL = ("canaryctl.dev/node", "real")
NODE_TAINT = {"key": "canaryctl.dev/real", "value": "true", "effect": "NoSchedule"}
#: Pods of the real node get addresses from this range (KWOK's fake pods use 10.244/16).
NODE_POD_CIDR = "10.245.0.0/24"
BRIDGE = "cnrctl0"
CNI_BIN_DIR = "/usr/lib/cni"
PROXY_MODES = ("iptables", "nftables")
#: Host-wide marker of the one running real node: which cluster folder owns it.
HOST_LOCK = Path("/run/canaryctl-dataplane.json")

#: What a pod spec needs to run on the real node (nodeSelector and toleration).
REAL_POD_PLACEMENT: dict[str, Any] = {
    "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
    "tolerations": [{**NODE_TAINT, "operator": "Equal"}],
}


def on_real_node(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Pod or workload manifest (Deployment, ...) placed on the real node."""
    out = json.loads(json.dumps(doc))
    spec = out["spec"] if out.get("kind") == "Pod" else out["spec"]["template"]["spec"]
    spec.setdefault("nodeSelector", {}).update(REAL_POD_PLACEMENT["nodeSelector"])
    spec.setdefault("tolerations", []).extend(REAL_POD_PLACEMENT["tolerations"])
    return out


def missing_requirements(proxy_mode: str = "iptables") -> list[str]:
    """Why a real node cannot run here (empty when it can): root, tools, kernel features."""
    why = []
    if os.geteuid() != 0:
        why.append("needs root (network namespaces, iptables, mounts, cgroups)")
    tools = ["containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip"]
    tools += ["nft"] if proxy_mode == "nftables" else ["iptables-save", "iptables-restore"]
    for tool in tools:
        if shutil.which(tool) is None:
            why.append(f"{tool} not found (scripts/install-system-deps.sh installs it)")
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not os.access(f"{CNI_BIN_DIR}/{plugin}", os.X_OK):
            why.append(f"CNI plugin {CNI_BIN_DIR}/{plugin} missing (containernetworking-plugins)")
    if not Path("/proc/sys/net/ipv4/ip_forward").exists():
        why.append("no IPv4 forwarding in this kernel/network namespace")
    if "overlay" not in Path("/proc/filesystems").read_text():
        why.append("the kernel has no overlay filesystem (containerd's snapshotter)")
    if not Path("/sys/fs/cgroup").is_dir() or not os.access("/sys/fs/cgroup", os.W_OK):
        why.append("/sys/fs/cgroup is not writable (the kubelet makes pod cgroups)")
    if proxy_mode not in PROXY_MODES:
        why.append(f"proxy mode {proxy_mode!r} is not one of {', '.join(PROXY_MODES)}")
    return why


def node_ip() -> str:
    """The host address the default route leaves from: the node's InternalIP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # connect() on UDP sends nothing; it only picks the route and source address.
        s.connect(("192.0.2.1", 9))
        return str(s.getsockname()[0])


def _paths(folder: Path) -> dict[str, Path]:
    return {
        "containerd": folder / "containerd",
        "socket": folder / "containerd" / "containerd.sock",
        "cni-conf": folder / "cni" / "net.d",
        "cni-data": folder / "cni" / "networks",
        "kubelet": folder / "kubelet",
        "host": folder / "host.json",
    }


def socket_address(folder: Path | str) -> str:
    """Path of the private containerd's socket."""
    return str(_paths(Path(folder))["socket"])


# --- components ----------------------------------------------------------------------


def containerd(bed: Bed) -> Component:
    """containerd with a private config, root, state, socket and CNI config."""
    p = _paths(bed.folder)
    root = p["containerd"]
    pause = images.reference(images.IMAGES_DIR / "pause", "pause")
    config = f"""version = 2
root = "{root}/root"
state = "{root}/state"
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{p["socket"]}"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # Without CAP_SYS_RESOURCE every sandbox fails ("can't get final child's PID from pipe")
  # unless containerd keeps the oom_score_adj it may set.
  restrict_oom_score_adj = true
  # Network namespaces stay in our folder, not /var/run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{root}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{p["cni-conf"]}"
    max_conf_num = 1
"""
    cni = {
        "cniVersion": "1.0.0",
        "name": "canaryctl",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    # Address leases in our folder, not /var/lib/cni/networks.
                    "dataDir": str(p["cni-data"]),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    address = str(p["socket"])

    def healthy() -> bool:
        return _ctr(address, "version").returncode == 0

    def load_pause() -> None:
        images.import_image(images.pause_image(), address)

    return Component(
        name="containerd",
        command=("containerd", "--config", str(root / "config.toml"), "--log-level", "warn"),
        files={
            root / "config.toml": config,
            p["cni-conf"] / "10-canaryctl.conflist": json.dumps(cni, indent=2),
        },
        health=healthy,
        health_what="containerd's socket",
        setup=load_pause,
        stop_grace=15.0,
    )


def kubelet(bed: Bed) -> Component:
    """The kubelet of the real node: cgroupfs, certificates from the cluster's CA."""
    p = _paths(bed.folder)
    state, certs = bed.state, bed.certs
    ip = node_ip()
    pki_dir = bed.folder / "pki"
    folder = p["kubelet"]
    # The kubelet's identity towards the API (Node authorizer), and its serving certificate
    # for the API server's logs/exec calls, valid for the address the API server dials.
    client_crt, client_key = pki.issue(
        pki_dir, "kubelet", f"system:node:{NODE_NAME}", organizations=("system:nodes",)
    )
    serve_crt, serve_key = pki.issue(
        pki_dir, "kubelet-serving", NODE_NAME, server_names=(ip, NODE_NAME, "127.0.0.1")
    )
    kubeconfig = _kubeconfig(state, certs.ca_cert, client_crt, client_key)
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": ip,
        "port": bed.port("kubelet"),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": bed.port("kubelet-healthz"),
        "tlsCertFile": str(serve_crt),
        "tlsPrivateKeyFile": str(serve_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(certs.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{p['socket']}",
        "cgroupDriver": "cgroupfs",
        # This host is cgroup v1 (hybrid); recent kubelets refuse it unless told otherwise.
        "failCgroupV1": False,
        "failSwapOn": False,
        "registerNode": True,
        "registerWithTaints": [NODE_TAINT],
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(folder / "pod-logs"),
        "maxPods": 110,
        "serializeImagePulls": False,
        # Our images exist only locally: the image GC must never remove them (a high
        # threshold of 100 with no maximum age turns the kubelet's image GC off).
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A shared development disk may be fuller than the defaults allow; keep evictions off.
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        # Lowering its own OOM score needs CAP_SYS_RESOURCE, which a sandbox may lack.
        "oomScoreAdj": 0,
        "nodeStatusUpdateFrequency": "4s",
        "nodeStatusReportFrequency": "1m",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "logging": {"verbosity": 1},
    }
    return Component(
        name="kubelet",
        command=(
            str(bed.bins["kubelet"]),
            f"--config={folder / 'config.yaml'}",
            f"--kubeconfig={folder / 'kubeconfig'}",
            f"--root-dir={folder / 'root'}",
            f"--cert-dir={folder / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={ip}",
            f"--node-labels={NODE_LABEL[0]}={NODE_LABEL[1]}",
        ),
        links=("containerd", "kube-apiserver"),
        files={
            folder / "config.yaml": yaml.safe_dump(config, sort_keys=False),
            folder / "kubeconfig": kubeconfig,
        },
        health=lambda: node_ready(state),
        health_what=f"node {NODE_NAME} Ready",
        stop_grace=15.0,
    )


def kube_proxy(bed: Bed) -> Component:
    """kube-proxy of the real node, in the cluster's proxy mode (iptables by default)."""
    state, certs = bed.state, bed.certs
    folder = bed.folder / "kube-proxy"
    crt, key = pki.issue(bed.folder / "pki", "kube-proxy", "system:kube-proxy")
    healthz = bed.port("kube-proxy-healthz")
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(folder / "kubeconfig")},
        "hostnameOverride": NODE_NAME,
        "mode": state.proxy_mode,
        "clusterCIDR": NODE_POD_CIDR,
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{bed.port('kube-proxy-metrics')}",
        # Zero leaves the host's conntrack settings as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "oomScoreAdj": 0,
        # NodePorts on 127.0.0.1 would need route_localnet=1; Services are reached by ClusterIP.
        "iptables": {"localhostNodePorts": False},
        "syncPeriod": "30s",
        "logging": {"verbosity": 1},
    }
    return Component(
        name="kube-proxy",
        command=(str(bed.bins["kube-proxy"]), f"--config={folder / 'config.yaml'}"),
        links=("kubelet",),
        files={
            folder / "config.yaml": yaml.safe_dump(config, sort_keys=False),
            folder / "kubeconfig": _kubeconfig(state, certs.ca_cert, crt, key),
        },
        health=lambda: httpx.get(f"http://127.0.0.1:{healthz}/healthz", timeout=2).is_success,
        health_what="kube-proxy /healthz",
    )


#: Builders of the real node, in start order (after the control plane).
NODE: tuple[Builder, ...] = (containerd, kubelet, kube_proxy)


def _kubeconfig(state: ClusterState, ca: Path, crt: Path, key: Path) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": state.server, "certificate-authority": str(ca)},
                }
            ],
            "users": [
                {"name": "me", "user": {"client-certificate": str(crt), "client-key": str(key)}}
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "me"}}],
            "current-context": "local",
        }
    )


def _ctr(address: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", address, "-n", "k8s.io", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- queries -------------------------------------------------------------------------


def _admin(state: ClusterState) -> httpx.Client:
    from canaryctl.testenv.cluster import http_client

    return http_client(state)


def node_ready(state: ClusterState) -> bool:
    """True when the real node reports Ready."""
    with _admin(state) as http:
        r = http.get(f"{state.server}/api/v1/nodes/{NODE_NAME}")
    if r.status_code != 200:
        return False
    conds = r.json().get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def node_status(
    state: ClusterState, client: Callable[[ClusterState], httpx.Client]
) -> dict[str, object]:
    """The real node's readiness, address and pods (namespace/name, phase, ready, IP)."""
    try:
        with client(state) as http:
            node = http.get(f"{state.server}/api/v1/nodes/{NODE_NAME}")
            pods = http.get(
                f"{state.server}/api/v1/pods",
                params={"fieldSelector": f"spec.nodeName={NODE_NAME}"},
            )
    except (httpx.HTTPError, OSError) as exc:
        return {"name": NODE_NAME, "error": str(exc)}
    if node.status_code != 200:
        return {"name": NODE_NAME, "registered": False}
    body = node.json()
    conds = body.get("status", {}).get("conditions", [])
    addresses = body.get("status", {}).get("addresses", [])
    listed = []
    for pod in pods.json().get("items", []) if pods.status_code == 200 else []:
        pconds = pod.get("status", {}).get("conditions", [])
        listed.append(
            {
                "pod": f"{pod['metadata']['namespace']}/{pod['metadata']['name']}",
                "phase": pod.get("status", {}).get("phase"),
                "ready": any(c["type"] == "Ready" and c["status"] == "True" for c in pconds),
                "ip": pod.get("status", {}).get("podIP"),
            }
        )
    return {
        "name": NODE_NAME,
        "registered": True,
        "ready": any(c["type"] == "Ready" and c["status"] == "True" for c in conds),
        "addresses": {a["type"]: a["address"] for a in addresses},
        "proxy_mode": state.proxy_mode,
        "pods": listed,
    }


# --- the host: before up, and after down ---------------------------------------------


def prepare_host(bed: Bed) -> None:
    """Check the host, take the one-node-per-host lock and save the host's state."""
    why = missing_requirements(bed.state.proxy_mode)
    if why:
        raise TestenvError("testenv --dataplane cannot run here: " + "; ".join(why))
    _take_lock(bed.folder)
    p = _paths(bed.folder)
    if not p["host"].exists():  # a retry keeps the first, true, snapshot
        host.snapshot().save(p["host"])
    # Build the pause image now: a build error shows before anything starts.
    images.pause_image()


def _take_lock(folder: Path) -> None:
    """Own the host's one real node; clean up a node whose session died without ``down``."""
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        owner = json.loads(HOST_LOCK.read_text())["folder"]
        state_file = Path(owner) / "state.json"
        if owner != str(folder) and state_file.exists():
            state = json.loads(state_file.read_text())
            if any(alive(pid, owner) for pid in state.get("pids", {}).values()):
                raise TestenvError(
                    f"testenv: cluster {state['name']} already runs a real node on this host "
                    f"(two kube-proxies would rewrite each other's rules); stop it with "
                    f"`canaryctl testenv down --name {state['name']}`"
                )
            # Its processes are gone but its changes to the host may not be: undo them
            # before our snapshot, or they would become part of "the host as found".
            abandon(owner)
    HOST_LOCK.write_text(json.dumps({"folder": str(folder)}))


def abandon(folder: str) -> None:
    """Clean up after a real node whose processes all died (killed session, reboot)."""
    from canaryctl.testenv.cluster import ClusterState

    state = ClusterState(**json.loads((Path(folder) / "state.json").read_text()))
    restore_host(state)
    shutil.rmtree(folder, ignore_errors=True)


def stop_hooks(state: ClusterState) -> tuple[dict[str, Callable[[], None]], dict[str, float]]:
    """What runs before the kubelet and containerd stop: pods torn down, then leftovers."""
    address = socket_address(state.folder)
    return (
        {"kubelet": lambda: _drain(state, address), "containerd": lambda: _remove_all(address)},
        {"kubelet": 15.0, "containerd": 15.0},
    )


def _drain(state: ClusterState, address: str, timeout: float = 20.0) -> None:
    """Cordon the real node, delete its pods and let the kubelet stop them (with their
    CNI teardown); cordoned first, so their controllers' replacements stay Pending."""
    with _admin(state) as http:
        http.patch(
            f"{state.server}/api/v1/nodes/{NODE_NAME}",
            json={"spec": {"unschedulable": True}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        pods = http.get(
            f"{state.server}/api/v1/pods", params={"fieldSelector": f"spec.nodeName={NODE_NAME}"}
        ).json()
        for pod in pods.get("items", []):
            meta = pod["metadata"]
            http.request(
                "DELETE",
                f"{state.server}/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                json={"gracePeriodSeconds": 0},
            )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = _ctr(address, "tasks", "ls").stdout.splitlines()[1:]
        if not any("RUNNING" in line for line in tasks):
            return
        time.sleep(0.5)


def _remove_all(address: str) -> None:
    """Kill every task still running in our containerd (its data goes with our folder)."""
    for line in _ctr(address, "tasks", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "RUNNING":
            _ctr(address, "tasks", "kill", "-s", "SIGKILL", fields[0])


def _kill_strays(folder: str) -> None:
    """containerd's shims outlive it (they reparent to init); ours name our socket.

    One look per process (``names_folder``), not ``alive``: that waits up to a second on
    every process that is not ours, a minute and more on a host with a hundred of them.
    No new shim can appear meanwhile: containerd, which starts them, has stopped.
    """
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and names_folder(int(entry), folder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)


def restore_host(state: ClusterState) -> None:
    """After every process stopped: put the host back as the snapshot found it."""
    p = _paths(Path(state.folder))
    _kill_strays(state.folder)
    if p["host"].exists():
        before = host.HostSnapshot.load(p["host"])
        host.restore(before, [state.folder], BRIDGE)
    with contextlib.suppress(FileNotFoundError, ValueError):
        if json.loads(HOST_LOCK.read_text())["folder"] == state.folder:
            HOST_LOCK.unlink()

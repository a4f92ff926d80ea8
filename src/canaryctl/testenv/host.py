"""What a real node changes on the host, saved before it starts and put back after it stops.

The kubelet, kube-proxy, containerd and the CNI plugins set sysctls, add iptables/nftables
rules and chains, create network interfaces, mounts, cgroups and files in fixed system
folders. ``snapshot`` records the host as found; ``restore`` removes exactly what was added
since (leaving anything that was there before untouched) and writes the saved sysctls back.
``observe`` is the comparison used by the tests: what must be equal before up and after down.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Settings the kubelet (kernel tunables), kube-proxy and the CNI bridge may change.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.netfilter.nf_conntrack_tcp_be_liberal",
)

#: Fixed system paths the node's programs write to whatever their configuration says.
WATCHED_PATHS = (
    "/run/containerd",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/run/xtables.lock",
    "/etc/cni",
    "/opt/cni",
    "/opt/containerd",
)

#: The kubelet's pod cgroups (cgroupfs driver, cgroup root "/").
POD_CGROUP = "kubepods"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(names: Iterable[str] = SYSCTLS) -> dict[str, str]:
    """Current values of the sysctls that exist on this kernel."""
    out: dict[str, str] = {}
    for name in names:
        with contextlib.suppress(OSError):
            out[name] = _sysctl_path(name).read_text().strip()
    return out


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def iptables_rules(binary: str = "iptables-save") -> dict[str, dict[str, list[str]]]:
    """table -> {"chains": [...], "rules": ["-A CHAIN ...", ...]} from iptables-save."""
    tables: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in _run([binary]).splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], {"chains": [], "rules": []})
        elif current is None:
            continue
        elif line.startswith(":"):
            current["chains"].append(line[1:].split()[0])
        elif line.startswith("-A "):
            current["rules"].append(line)
    return tables


def nft_tables() -> list[str]:
    """``family name`` of every nftables table."""
    return [line.removeprefix("table ") for line in _run(["nft", "list", "tables"]).splitlines()]


def links() -> list[str]:
    """Names of the network interfaces."""
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


def mounts() -> list[str]:
    """Mount points, in /proc/self/mounts order (octal escapes decoded)."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1]
        out.append(point.encode().decode("unicode_escape"))
    return out


def _tree(path: Path) -> list[str] | None:
    """Every path under ``path`` (relative), or None when it does not exist."""
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_dir() or path.is_symlink():
        return []
    found: list[str] = []
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            found.append(os.path.relpath(os.path.join(root, n), path))
    return sorted(found)


def _cgroups() -> list[str]:
    """Controllers (cgroup v1 hierarchies, or the v2 root) that have a kubepods cgroup."""
    out = []
    with contextlib.suppress(OSError):
        for ctrl in sorted(os.listdir(CGROUP_ROOT)):
            if (CGROUP_ROOT / ctrl / POD_CGROUP).is_dir():
                out.append(ctrl)
    if (CGROUP_ROOT / POD_CGROUP).is_dir():
        out.append(".")
    return out


@dataclass
class HostSnapshot:
    """The host as found, before a real node starts."""

    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    ip6tables: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    nft: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    paths: dict[str, list[str] | None] = field(default_factory=dict)
    cgroups: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> HostSnapshot:
        return cls(**json.loads(path.read_text()))


def snapshot() -> HostSnapshot:
    """Record everything ``restore`` will put back."""
    return HostSnapshot(
        sysctls=read_sysctls(),
        iptables=iptables_rules("iptables-save"),
        ip6tables=iptables_rules("ip6tables-save"),
        nft=nft_tables(),
        links=links(),
        mounts=mounts(),
        paths={p: _tree(Path(p)) for p in WATCHED_PATHS},
        cgroups=_cgroups(),
    )


def observe() -> dict[str, object]:
    """The host's state as compared by tests: rules, sysctls, mounts, interfaces, paths."""
    return {
        "iptables-save": _strip_counters(_run(["iptables-save"])),
        "ip6tables-save": _strip_counters(_run(["ip6tables-save"])),
        "nft list ruleset": _run(["nft", "list", "ruleset"]),
        "sysctls": read_sysctls(),
        "mounts": mounts(),
        "links": links(),
        "paths": {p: _tree(Path(p)) for p in WATCHED_PATHS},
        "cgroups": _cgroups(),
    }


def _strip_counters(text: str) -> list[str]:
    # Comments carry timestamps and chain headers carry packet counters; neither is state.
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(":"):
            line = line.split(" [", 1)[0]
        out.append(line)
    return out


def unmount_under(prefixes: Iterable[str]) -> list[str]:
    """Unmount every mount point under the given folders, deepest first; returns them."""
    roots = [p.rstrip("/") + "/" for p in prefixes]
    points = [m for m in mounts() if any((m + "/").startswith(r) for r in roots)]
    for point in sorted(set(points), key=lambda m: m.count("/"), reverse=True):
        # Lazy as a fallback: a busy mount is detached now and freed when the last user goes.
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
    return points


def _restore_iptables(binary: str, before: dict[str, dict[str, list[str]]]) -> None:
    save = f"{binary}-save"
    after = iptables_rules(save)
    for table, now in after.items():
        was = before.get(table, {"chains": [], "rules": []})
        # Rules first (they may jump to new chains), newest first, then the emptied chains.
        for rule in reversed([r for r in now["rules"] if r not in was["rules"]]):
            args = shlex.split(rule)
            subprocess.run([binary, "-w", "-t", table, "-D", *args[1:]], capture_output=True)
        new_chains = [c for c in now["chains"] if c not in was["chains"]]
        for chain in new_chains:
            subprocess.run([binary, "-w", "-t", table, "-F", chain], capture_output=True)
        for chain in new_chains:
            subprocess.run([binary, "-w", "-t", table, "-X", chain], capture_output=True)


def _restore_paths(before: dict[str, list[str] | None]) -> None:
    for name, was in before.items():
        path = Path(name)
        if was is None:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            continue
        now = _tree(path) or []
        keep = set(was)
        for rel in sorted(set(now) - keep, key=lambda r: r.count("/"), reverse=True):
            child = path / rel
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    child.unlink()


def _remove_cgroup(path: Path, timeout: float = 10.0) -> bool:
    """Remove a cgroup tree bottom-up, killing what is left in it first.

    A killed process leaves its cgroup only once it has exited, so removal is retried.
    """
    deadline = time.monotonic() + timeout
    while path.is_dir():
        tree = sorted((Path(r) for r, _, _ in os.walk(path)), key=lambda p: -len(p.parts))
        for cgroup in tree:
            with contextlib.suppress(OSError):
                for pid in (cgroup / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
        for cgroup in tree:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        if not path.is_dir() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return not path.is_dir()


def restore(before: HostSnapshot, private_folders: Iterable[str], bridge: str) -> None:
    """Undo what a real node did to the host since ``before`` was taken.

    Interfaces removed are only new ones that are the node's bridge or veth pairs: other
    programs on the host may add interfaces of their own meanwhile.
    """
    # Containers left running (a node that died without tearing its pods down) go first,
    # killed through their cgroups, so nothing holds the mounts below.
    for ctrl in _cgroups():
        if ctrl not in before.cgroups:
            _remove_cgroup(CGROUP_ROOT / ctrl / POD_CGROUP)
    unmount_under([*private_folders, *(p for p in WATCHED_PATHS if Path(p).is_dir())])
    # Mounts made elsewhere since the snapshot (none expected) are left alone: another
    # program on this host may own them.
    for name in links():
        if name not in before.links and (name == bridge or name.startswith("veth")):
            subprocess.run(["ip", "link", "delete", name], capture_output=True)
    _restore_iptables("iptables", before.iptables)
    _restore_iptables("ip6tables", before.ip6tables)
    for table in nft_tables():
        if table not in before.nft:
            subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)
    _restore_paths(before.paths)
    for name, value in before.sysctls.items():
        path = _sysctl_path(name)
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value)

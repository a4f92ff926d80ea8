"""Find or build the control plane's binaries.

Resolution order, per binary: an explicit path (argument or environment variable
``CANARYCTL_<NAME>``, e.g. ``CANARYCTL_KUBE_APISERVER``), a folder of binaries named by
``CANARYCTL_BIN_DIR``, the cache outside the repository (``$CANARYCTL_CACHE_DIR`` or
``~/.cache/canaryctl``), and finally a build from the pinned Go modules into that cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from canaryctl.errors import TestenvError
from canaryctl.testenv import versions

Progress = Callable[[str], None]


def cache_root() -> Path:
    """The cache folder shared by every checkout of canaryctl on this machine."""
    env = os.environ.get("CANARYCTL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "canaryctl"


def bin_dir() -> Path:
    """Where built binaries of the pinned versions live."""
    return cache_root() / versions.bundle_id() / "bin"


def env_var(name: str) -> str:
    """Environment variable that overrides one binary, e.g. CANARYCTL_KUBE_APISERVER."""
    return "CANARYCTL_" + name.upper().replace("-", "_")


def _explicit(name: str, explicit: Mapping[str, str | Path] | None) -> Path | None:
    if explicit and explicit.get(name):
        return Path(explicit[name])
    if os.environ.get(env_var(name)):
        return Path(os.environ[env_var(name)])
    folder = os.environ.get("CANARYCTL_BIN_DIR")
    if folder:
        return Path(folder) / name
    return None


def find(
    explicit: Mapping[str, str | Path] | None = None,
    names: Sequence[str] = versions.ALL_BINARIES,
) -> dict[str, Path | None]:
    """Locate every binary (the control plane's by default) without building.

    Missing ones map to None.
    """
    found: dict[str, Path | None] = {}
    for name in names:
        path = _explicit(name, explicit)
        if path is not None:
            if not os.access(path, os.X_OK):
                raise TestenvError(
                    f"{name}: {path} (from {env_var(name)} or flag) is not executable"
                )
            found[name] = path
            continue
        cached = bin_dir() / name
        found[name] = cached if os.access(cached, os.X_OK) else None
    return found


def ensure(
    explicit: Mapping[str, str | Path] | None = None,
    progress: Progress = print,
    names: Sequence[str] = versions.ALL_BINARIES,
) -> dict[str, Path]:
    """Return a path for every named binary, building the missing ones from Go modules."""
    found = find(explicit, names)
    missing = [name for name, path in found.items() if path is None]
    if missing:
        build(missing, progress)
        found = find(explicit, names)
    return {name: path for name, path in found.items() if path is not None}


def build(names: list[str], progress: Progress = print) -> None:
    """Build the named binaries of the pinned versions into the cache."""
    go = shutil.which("go")
    if go is None:
        raise TestenvError(
            "the Go toolchain is needed to build the local control plane the first time: "
            "install Go >= 1.25 (or point CANARYCTL_BIN_DIR at prebuilt binaries)"
        )
    target = bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    workroot = cache_root() / versions.bundle_id() / "build"
    workroot.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    kube = [n for n in names if n in versions.KUBERNETES_COMMANDS]
    if kube:
        _build_kubernetes(go, kube, workroot / "kubernetes", target, progress)
    node = [n for n in names if n in versions.NODE_COMMANDS]
    if node:
        # Its own folder with the same wrapper go.mod: a node build never rewrites the go.mod
        # of a control plane build that may be running; the Go build cache is shared.
        _build_kubernetes(go, node, workroot / "kubernetes-node", target, progress)
    if "etcd" in names:
        _build_etcd(go, workroot / "etcd", target, progress)
    if "kwok" in names:
        _build_kwok(go, target, progress)
    progress(f"built {', '.join(names)} in {time.monotonic() - started:.0f}s into {target}")


def _run(
    cmd: list[str], cwd: Path, progress: Progress, label: str, extra_env: Mapping[str, str] = {}
) -> str:
    """Run a build command, printing a heartbeat so a long first build is visibly alive."""
    progress(f"[{label}] {' '.join(cmd)}")
    env = dict(os.environ, GOFLAGS=os.environ.get("GOFLAGS", "") + " -buildvcs=false")
    env.update(extra_env)
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    done = threading.Event()
    started = time.monotonic()

    def heartbeat() -> None:
        while not done.wait(30):
            progress(f"[{label}] still building ({time.monotonic() - started:.0f}s)")

    threading.Thread(target=heartbeat, daemon=True).start()
    out, _ = proc.communicate()
    done.set()
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-30:])
        raise TestenvError(f"[{label}] {' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    return out


def _module_gomod(go: str, module: str, version: str, cwd: Path, progress: Progress) -> str:
    out = _run([go, "mod", "download", "-json", f"{module}@{version}"], cwd, progress, module)
    info = json.loads(out[out.index("{") :])
    if info.get("Error"):
        raise TestenvError(f"go mod download {module}@{version}: {info['Error']}")
    return Path(info["GoMod"]).read_text()


def staging_replaces(release_gomod: str, staging_version: str) -> list[str]:
    """Replace lines mapping each k8s.io staging module of a release to its published version.

    The release's go.mod replaces them with ./staging/src/... paths, which only work inside
    the kubernetes repository; outside it they must point at the published v0.X.Y modules.
    """
    pattern = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", re.MULTILINE)
    modules = sorted(set(pattern.findall(release_gomod)))
    if not modules:
        raise TestenvError("no k8s.io staging modules found in the Kubernetes release go.mod")
    return [f"\t{m} => {m} {staging_version}" for m in modules]


def _write_wrapper(workdir: Path, module: str, version: str, body: str, imports: list[str]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("go.mod", "go.sum"):
        (workdir / stale).unlink(missing_ok=True)
    (workdir / "go.mod").write_text(
        f"module canaryctl.local/build\n\ngo 1.25.0\n\nrequire {module} {version}\n{body}"
    )
    lines = "\n".join(f'\t_ "{i}"' for i in imports)
    (workdir / "tools.go").write_text(
        f"//go:build tools\n\npackage tools\n\nimport (\n{lines}\n)\n"
    )


def _install(tmp: Path, names: list[str], target: Path) -> None:
    for name in names:
        os.replace(tmp / name, target / name)


def _build_kubernetes(
    go: str, names: list[str], workdir: Path, target: Path, progress: Progress
) -> None:
    version = versions.KUBERNETES_VERSION
    workdir.mkdir(parents=True, exist_ok=True)
    gomod = _module_gomod(go, versions.KUBERNETES_MODULE, version, workdir, progress)
    replaces = staging_replaces(gomod, versions.staging_version(version))
    packages = [f"{versions.KUBERNETES_MODULE}/cmd/{n}" for n in names]
    body = "\nreplace (\n" + "\n".join(replaces) + "\n)\n"
    _write_wrapper(workdir, versions.KUBERNETES_MODULE, version, body, packages)
    _run([go, "mod", "tidy"], workdir, progress, "kubernetes")
    minor = version.split(".")[1]
    ldflags = ["-s", "-w"]
    # Stamp the real version; without it the binaries report v0.0.0 and clients warn about skew.
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    progress(f"building {', '.join(names)} {version} from Go modules (minutes the first time)")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        _run(
            [go, "build", "-trimpath", "-ldflags", " ".join(ldflags), "-o", tmp + "/", *packages],
            workdir,
            progress,
            "kubernetes",
        )
        _install(Path(tmp), names, target)


def _build_etcd(go: str, workdir: Path, target: Path, progress: Progress) -> None:
    version = versions.ETCD_VERSION
    _write_wrapper(workdir, versions.ETCD_MODULE, version, "", [versions.ETCD_MODULE])
    _run([go, "mod", "tidy"], workdir, progress, "etcd")
    progress(f"building etcd {version} from Go modules")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        _run(
            [
                go,
                "build",
                "-trimpath",
                "-ldflags",
                "-s -w",
                "-o",
                f"{tmp}/etcd",
                versions.ETCD_MODULE,
            ],
            workdir,
            progress,
            "etcd",
        )
        _install(Path(tmp), ["etcd"], target)


def _build_kwok(go: str, target: Path, progress: Progress) -> None:
    progress(f"building kwok {versions.KWOK_VERSION} with go install")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        package = f"{versions.KWOK_PACKAGE}@{versions.KWOK_VERSION}"
        _run(
            [go, "install", "-trimpath", "-ldflags", "-s -w", package],
            Path(tmp),
            progress,
            "kwok",
            extra_env={"GOBIN": tmp},
        )
        _install(Path(tmp), ["kwok"], target)

"""Find or build one binary of a pinned Go module through a wrapper module (helm, istioctl,
Traefik).

``go install pkg@version`` is not used: the wrapper module requires the pinned module and
nothing else, starts from the module's own go.sum, and builds the package with exactly the
dependency versions the module was released with. A module whose go.mod has replace
directives needs a ``wrapper`` hook that carries them (Traefik's does, with local shims);
without one, such a go.mod is refused rather than silently built with other versions.

Resolution order of every binary: ``CANARYCTL_<NAME>`` (a path), ``CANARYCTL_BIN_DIR``/name,
the cache (``<cache>/<name>-<version>/bin/<name>``), then a build into that cache.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from canaryctl.errors import TestenvError
from canaryctl.testenv.binaries import Progress, _explicit, _run, cache_root, env_var

# (go, the module's `go mod edit -json`, build folder, progress) -> the wrapper's go.mod text.
WrapperHook = Callable[[str, dict, Path, Progress], str]


@dataclass(frozen=True)
class GoBinary:
    """One binary built from a pinned Go module.

    ``version_var`` is the Go variable stamped with the version (``-X``), if the binary
    reports one; ``wrapper`` writes any extra wrapper content (shims) and returns the
    wrapper's go.mod, for a module with replace directives.
    """

    name: str
    module: str
    version: str
    package: str
    title: str = ""  # the name in prose ("Traefik"); defaults to ``name``
    version_var: str | None = None
    build_time: str = "minutes the first time"
    wrapper: WrapperHook | None = None

    @property
    def env(self) -> str:
        """The environment variable that points at a ready binary instead."""
        return env_var(self.name)

    @property
    def label(self) -> str:
        return self.title or self.name


def home(binary: GoBinary) -> Path:
    """Cache folder of the pinned version (its binary and its build folder)."""
    return cache_root() / f"{binary.name}-{binary.version}"


def find(binary: GoBinary) -> Path | None:
    """The binary if one is configured or cached; None when it must be built."""
    path = _explicit(binary.name, None)
    if path is not None:
        if not os.access(path, os.X_OK):
            raise TestenvError(
                f"{binary.name}: {path} (from {binary.env} or CANARYCTL_BIN_DIR) is not executable"
            )
        return path
    cached = home(binary) / "bin" / binary.name
    return cached if os.access(cached, os.X_OK) else None


def ensure(binary: GoBinary, progress: Progress = print) -> Path:
    """Return the binary, building it from the pinned Go module the first time."""
    found = find(binary)
    if found is None:
        build(binary, progress)
        found = find(binary)
    if found is None:  # pragma: no cover - build() raises on every failure
        raise TestenvError(f"{binary.name}: build finished but no binary is in the cache")
    return found


def wrapper_gomod(binary: GoBinary, go_version: str) -> str:
    """The plain wrapper's go.mod: the pinned module, nothing replaced."""
    return (
        f"module canaryctl.local/{binary.name}\n\n"
        f"go {go_version}\n\n"
        f"require {binary.module} {binary.version}\n"
    )


def prepare(binary: GoBinary, go: str, progress: Progress = print) -> Path:
    """Write the wrapper module into a fresh ``<home>/build`` folder; return that folder."""
    workdir = home(binary) / "build"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    source = download(go, binary.module, binary.version, workdir, progress, binary.name)
    gomod = gomod_json(go, source / "go.mod", workdir, progress, binary.name)
    if binary.wrapper is not None:
        text = binary.wrapper(go, gomod, workdir, progress)
    elif gomod.get("Replace"):
        raise TestenvError(
            f"{binary.name} {binary.version}'s go.mod has replace directives; its GoBinary "
            "needs a wrapper hook that carries them into the wrapper module"
        )
    else:
        text = wrapper_gomod(binary, gomod["Go"])
    (workdir / "go.mod").write_text(text)
    # The module's own go.sum pins the hash of every dependency it was released with.
    if (source / "go.sum").exists():
        shutil.copyfile(source / "go.sum", workdir / "go.sum")
        (workdir / "go.sum").chmod(0o644)
    (workdir / "tools.go").write_text(
        f'//go:build tools\n\npackage tools\n\nimport _ "{binary.package}"\n'
    )
    return workdir


def build(binary: GoBinary, progress: Progress = print) -> Path:
    """Build the binary into the cache through its wrapper module."""
    go = shutil.which("go")
    if go is None:
        article = "an" if binary.name[0] in "aeiou" else "a"
        raise TestenvError(
            f"the Go toolchain is needed to build {binary.label} the first time: install "
            f"Go >= 1.26 (or point {binary.env} at {article} {binary.name} binary)"
        )
    started = time.monotonic()
    workdir = prepare(binary, go, progress)
    _run([go, "mod", "tidy"], workdir, progress, binary.name)
    ldflags = "-s -w"
    if binary.version_var:
        # Stamp the version: `<name> version` (and e.g. helm's kubeVersion checks) read it.
        ldflags += f" -X {binary.version_var}={binary.version}"
    target = home(binary) / "bin"
    target.mkdir(parents=True, exist_ok=True)
    progress(f"building {binary.name} {binary.version} from Go modules ({binary.build_time})")
    with tempfile.TemporaryDirectory(dir=home(binary)) as tmp:
        out = Path(tmp) / binary.name
        cmd = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(out), binary.package]
        _run(cmd, workdir, progress, binary.name)
        os.replace(out, target / binary.name)
    progress(f"built {binary.name} in {time.monotonic() - started:.0f}s into {target}")
    return target / binary.name


def download(go: str, module: str, version: str, cwd: Path, progress: Progress, label: str) -> Path:
    """Download ``module@version`` into the module cache; return its (read-only) folder."""
    out = _run([go, "mod", "download", "-json", f"{module}@{version}"], cwd, progress, label)
    info = json.loads(out[out.index("{") :])
    if info.get("Error"):
        raise TestenvError(f"go mod download {module}@{version}: {info['Error']}")
    return Path(info["Dir"])


def gomod_json(go: str, path: Path, cwd: Path, progress: Progress, label: str) -> dict:
    """A go.mod file as ``go mod edit -json`` reads it."""
    out = _run([go, "mod", "edit", "-json", str(path)], cwd, progress, label)
    return json.loads(out[out.index("{") :])

"""Find or build the helm binary of the pinned version (installs the operator's chart).

Helm's module has no replace directives, so a wrapper module requiring it at the pinned
version builds ``cmd/helm`` with exactly the dependency versions of its own go.sum.

Resolution order: ``CANARYCTL_HELM`` (a path), ``CANARYCTL_BIN_DIR``/helm, the cache
(``<cache>/helm-<version>/bin/helm``), then a build into that cache.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from canaryctl.errors import TestenvError
from canaryctl.testenv import versions
from canaryctl.testenv.binaries import Progress, _explicit, _run, cache_root

NAME = "helm"


def home() -> Path:
    """Cache folder of the pinned helm version (its binary and its build folder)."""
    return cache_root() / f"helm-{versions.HELM_VERSION}"


def find() -> Path | None:
    """The helm binary if one is configured or cached; None when it must be built."""
    path = _explicit(NAME, None)
    if path is not None:
        if not os.access(path, os.X_OK):
            raise TestenvError(f"helm: {path} (from CANARYCTL_HELM or flag) is not executable")
        return path
    cached = home() / "bin" / NAME
    return cached if os.access(cached, os.X_OK) else None


def ensure(progress: Progress = print) -> Path:
    """Return the helm binary, building it from the pinned Go module the first time."""
    found = find()
    if found is None:
        build(progress)
        found = find()
    if found is None:  # pragma: no cover - build() raises on every failure
        raise TestenvError("helm: build finished but no binary is in the cache")
    return found


def build(progress: Progress = print) -> Path:
    """Build helm into the cache through a wrapper module pinned to HELM_VERSION."""
    go = shutil.which("go")
    if go is None:
        raise TestenvError(
            "the Go toolchain is needed to build helm the first time: install Go >= 1.26 "
            "(or point CANARYCTL_HELM at a helm binary)"
        )
    version = versions.HELM_VERSION
    started = time.monotonic()
    workdir = home() / "build"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    out = _run(
        [go, "mod", "download", "-json", f"{versions.HELM_MODULE}@{version}"],
        workdir,
        progress,
        "helm",
    )
    info = json.loads(out[out.index("{") :])
    if info.get("Error"):
        raise TestenvError(f"go mod download {versions.HELM_MODULE}@{version}: {info['Error']}")
    source = Path(info["Dir"])
    gomod = json.loads(
        _run([go, "mod", "edit", "-json", str(source / "go.mod")], workdir, progress, "helm")
    )
    if gomod.get("Replace"):
        raise TestenvError(
            f"helm {version}'s go.mod has replace directives; canaryctl.testenv.helm_build "
            "must carry them into its wrapper module"
        )
    (workdir / "go.mod").write_text(
        f"module canaryctl.local/helm\n\ngo {gomod['Go']}\n\n"
        f"require {versions.HELM_MODULE} {version}\n"
    )
    # Helm's own go.sum pins the hash of every dependency it was released with.
    shutil.copyfile(source / "go.sum", workdir / "go.sum")
    (workdir / "go.sum").chmod(0o644)
    package = f"{versions.HELM_MODULE}/cmd/helm"
    (workdir / "tools.go").write_text(
        f'//go:build tools\n\npackage tools\n\nimport _ "{package}"\n'
    )
    _run([go, "mod", "tidy"], workdir, progress, "helm")
    # Stamp the version: `helm version` and the chart's kubeVersion checks read it.
    ldflags = f"-s -w -X {versions.HELM_MODULE}/internal/version.version={version}"
    target = home() / "bin"
    target.mkdir(parents=True, exist_ok=True)
    progress(f"building helm {version} from Go modules (a minute or more the first time)")
    with tempfile.TemporaryDirectory(dir=home()) as tmp:
        binary = Path(tmp) / NAME
        _run(
            [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(binary), package],
            workdir,
            progress,
            "helm",
        )
        os.replace(binary, target / NAME)
    progress(f"built helm in {time.monotonic() - started:.0f}s into {target}")
    return target / NAME

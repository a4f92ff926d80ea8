"""Find or build istioctl of the pinned Istio version (its `analyze` checks the Istio
router's VirtualServices and DestinationRules; there is no Envoy to run them here).

Built from the published istio.io/istio module through a wrapper module that requires it
and nothing else: no replace directive, no shim, every dependency at the version Istio's
own go.mod selects. ``go install pkg@version`` cannot be used: the proxy answers 403 (not
404) for the nested paths it probes first, and Go stops on a 403.

Resolution order: ``CANARYCTL_ISTIOCTL`` (a path), ``CANARYCTL_BIN_DIR``/istioctl, the cache
(``<cache>/istioctl-<version>/bin/istioctl``), then a build into that cache (several minutes
the first time: istioctl links most of Istio and client-go).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from canaryctl.errors import TestenvError
from canaryctl.testenv import versions
from canaryctl.testenv.binaries import Progress, _explicit, _run, cache_root

NAME = "istioctl"


def home() -> Path:
    """Cache folder of the pinned istioctl (its binary and its build folder)."""
    return cache_root() / f"istioctl-{versions.ISTIO_VERSION}"


def find() -> Path | None:
    """The istioctl binary if one is configured or cached; None when it must be built."""
    path = _explicit(NAME, None)
    if path is not None:
        if not os.access(path, os.X_OK):
            raise TestenvError(f"istioctl: {path} (from CANARYCTL_ISTIOCTL) is not executable")
        return path
    cached = home() / "bin" / NAME
    return cached if os.access(cached, os.X_OK) else None


def ensure(progress: Progress = print) -> Path:
    """Return istioctl, building it from the pinned Go module the first time."""
    found = find()
    if found is None:
        build(progress)
        found = find()
    if found is None:  # pragma: no cover - build() raises on every failure
        raise TestenvError("istioctl: build finished but no binary is in the cache")
    return found


def wrapper_gomod(go_version: str) -> str:
    """The wrapper's go.mod: Istio at the pinned version, nothing replaced."""
    return (
        "module canaryctl.local/istioctl\n\n"
        f"go {go_version}\n\n"
        f"require {versions.ISTIO_MODULE} {versions.ISTIO_VERSION}\n"
    )


def _istio_go_version(go: str, cwd: Path, progress: Progress) -> str:
    """The `go` directive of Istio's go.mod at the pinned version (downloaded once)."""
    module = f"{versions.ISTIO_MODULE}@{versions.ISTIO_VERSION}"
    out = _run([go, "mod", "download", "-json", module], cwd, progress, NAME)
    info = json.loads(out[out.index("{") :])
    if info.get("Error"):
        raise TestenvError(f"go mod download {module}: {info['Error']}")
    found = re.search(r"^go (\S+)", Path(info["GoMod"]).read_text(), re.M)
    if found is None:
        raise TestenvError(f"{module}: its go.mod has no go directive")
    return found.group(1)


def build(progress: Progress = print) -> Path:
    """Build istioctl into the cache through a wrapper module (no replace directives)."""
    go = shutil.which("go")
    if go is None:
        raise TestenvError(
            "the Go toolchain is needed to build istioctl the first time: install Go >= 1.26 "
            "(or point CANARYCTL_ISTIOCTL at an istioctl binary)"
        )
    started = time.monotonic()
    workdir = home() / "build"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    # Istio's go.mod names the Go version it needs; the wrapper asks for the same.
    (workdir / "go.mod").write_text(wrapper_gomod(_istio_go_version(go, workdir, progress)))
    (workdir / "tools.go").write_text(
        f'//go:build tools\n\npackage tools\n\nimport _ "{versions.ISTIOCTL_PACKAGE}"\n'
    )
    _run([go, "mod", "tidy"], workdir, progress, NAME)
    target = home() / "bin"
    target.mkdir(parents=True, exist_ok=True)
    progress(f"building istioctl {versions.ISTIO_VERSION} from Go modules (minutes the first time)")
    with tempfile.TemporaryDirectory(dir=home()) as tmp:
        out = Path(tmp) / NAME
        _run(
            [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out),
             versions.ISTIOCTL_PACKAGE],
            workdir,
            progress,
            NAME,
        )  # fmt: skip
        os.replace(out, target / NAME)
    progress(f"built istioctl in {time.monotonic() - started:.0f}s into {target}")
    return target / NAME

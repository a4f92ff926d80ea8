"""Find or build the helm binary of the pinned version (installs the operator's chart).

Helm's module has no replace directives, so a wrapper module requiring it at the pinned
version builds ``cmd/helm`` with exactly the dependency versions of its own go.sum
(see :mod:`canaryctl.testenv.gomodule`).

Resolution order: ``CANARYCTL_HELM`` (a path), ``CANARYCTL_BIN_DIR``/helm, the cache
(``<cache>/helm-<version>/bin/helm``), then a build into that cache.
"""

from __future__ import annotations

from pathlib import Path

from canaryctl.testenv import gomodule, versions
from canaryctl.testenv.binaries import Progress

NAME = "helm"

BINARY = gomodule.GoBinary(
    name=NAME,
    module=versions.HELM_MODULE,
    version=versions.HELM_VERSION,
    package=f"{versions.HELM_MODULE}/cmd/helm",
    # `helm version` and the chart's kubeVersion checks read the stamped version.
    version_var=f"{versions.HELM_MODULE}/internal/version.version",
    build_time="a minute or more the first time",
)


def home() -> Path:
    """Cache folder of the pinned helm version (its binary and its build folder)."""
    return gomodule.home(BINARY)


def find() -> Path | None:
    """The helm binary if one is configured or cached; None when it must be built."""
    return gomodule.find(BINARY)


def ensure(progress: Progress = print) -> Path:
    """Return the helm binary, building it from the pinned Go module the first time."""
    return gomodule.ensure(BINARY, progress)


def build(progress: Progress = print) -> Path:
    """Build helm into the cache through a wrapper module pinned to HELM_VERSION."""
    return gomodule.build(BINARY, progress)

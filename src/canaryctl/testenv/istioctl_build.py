"""Find or build istioctl of the pinned Istio version (its `analyze` checks the Istio
router's VirtualServices and DestinationRules; there is no Envoy to run them here).

Built from the published istio.io/istio module through a wrapper module that requires it
and nothing else: no replace directive, no shim, every dependency at the version Istio's
own go.mod selects (see :mod:`canaryctl.testenv.gomodule`). ``go install pkg@version``
cannot be used: the proxy answers 403 (not 404) for the nested paths it probes first, and
Go stops on a 403.

Resolution order: ``CANARYCTL_ISTIOCTL`` (a path), ``CANARYCTL_BIN_DIR``/istioctl, the cache
(``<cache>/istioctl-<version>/bin/istioctl``), then a build into that cache (several minutes
the first time: istioctl links most of Istio and client-go).
"""

from __future__ import annotations

from pathlib import Path

from canaryctl.testenv import gomodule, versions
from canaryctl.testenv.binaries import Progress

NAME = "istioctl"

BINARY = gomodule.GoBinary(
    name=NAME,
    module=versions.ISTIO_MODULE,
    version=versions.ISTIO_VERSION,
    package=versions.ISTIOCTL_PACKAGE,
)


def home() -> Path:
    """Cache folder of the pinned istioctl (its binary and its build folder)."""
    return gomodule.home(BINARY)


def find() -> Path | None:
    """The istioctl binary if one is configured or cached; None when it must be built."""
    return gomodule.find(BINARY)


def ensure(progress: Progress = print) -> Path:
    """Return istioctl, building it from the pinned Go module the first time."""
    return gomodule.ensure(BINARY, progress)


def wrapper_gomod(go_version: str) -> str:
    """The wrapper's go.mod: Istio at the pinned version, nothing replaced."""
    return gomodule.wrapper_gomod(BINARY, go_version)


def build(progress: Progress = print) -> Path:
    """Build istioctl into the cache through a wrapper module (no replace directives)."""
    return gomodule.build(BINARY, progress)

"""The istioctl build's pure parts: the wrapper go.mod and where the binary is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from canaryctl.errors import TestenvError
from canaryctl.testenv import istioctl_build, versions


def test_the_wrapper_requires_the_pinned_istio_and_replaces_nothing() -> None:
    gomod = istioctl_build.wrapper_gomod("1.26.0")
    assert f"require {versions.ISTIO_MODULE} {versions.ISTIO_VERSION}\n" in gomod
    assert "go 1.26.0\n" in gomod
    assert "replace" not in gomod and "=>" not in gomod


def test_the_cache_folder_is_per_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CANARYCTL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CANARYCTL_ISTIOCTL", raising=False)
    monkeypatch.delenv("CANARYCTL_BIN_DIR", raising=False)
    assert istioctl_build.home() == tmp_path / f"istioctl-{versions.ISTIO_VERSION}"
    assert istioctl_build.find() is None
    binary = istioctl_build.home() / "bin" / "istioctl"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert istioctl_build.find() == binary


def test_an_explicit_binary_that_cannot_run_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CANARYCTL_ISTIOCTL", str(tmp_path / "missing"))
    with pytest.raises(TestenvError, match="CANARYCTL_ISTIOCTL"):
        istioctl_build.find()

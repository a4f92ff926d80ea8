"""The shared Go-module builder's pure parts, for each binary built through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from canaryctl.errors import TestenvError
from canaryctl.testenv import gomodule, helm_build, istioctl_build, traefik_build

BUILDERS = [helm_build, istioctl_build, traefik_build]


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.NAME)
def test_each_binary_is_cached_per_version_and_found_once_built(
    builder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CANARYCTL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(builder.BINARY.env, raising=False)
    monkeypatch.delenv("CANARYCTL_BIN_DIR", raising=False)
    assert builder.home() == tmp_path / f"{builder.NAME}-{builder.BINARY.version}"
    assert builder.find() is None
    binary = builder.home() / "bin" / builder.NAME
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert builder.find() == builder.ensure() == binary


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.NAME)
def test_an_override_that_cannot_run_names_its_variable(
    builder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = "CANARYCTL_" + builder.NAME.upper()
    assert builder.BINARY.env == env
    monkeypatch.setenv(env, str(tmp_path / "missing"))
    with pytest.raises(TestenvError, match=env):
        builder.find()


def test_without_go_the_error_says_how_to_skip_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(TestenvError, match=r"install Go .* CANARYCTL_ISTIOCTL at an istioctl"):
        istioctl_build.build()


def test_the_plain_wrapper_requires_the_module_and_replaces_nothing() -> None:
    text = gomodule.wrapper_gomod(helm_build.BINARY, "1.25.0")
    assert text == (
        f"module canaryctl.local/helm\n\ngo 1.25.0\n\n"
        f"require {helm_build.BINARY.module} {helm_build.BINARY.version}\n"
    )

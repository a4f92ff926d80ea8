"""Binary resolution and the Kubernetes wrapper go.mod (pure logic)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from canaryctl.errors import TestenvError
from canaryctl.testenv import binaries, versions

RELEASE_GOMOD = """module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-2025
)
"""


def test_staging_replaces_map_each_staging_module_to_its_published_version() -> None:
    lines = binaries.staging_replaces(RELEASE_GOMOD, "v0.35.4")
    assert lines == [
        "\tk8s.io/api => k8s.io/api v0.35.4",
        "\tk8s.io/client-go => k8s.io/client-go v0.35.4",
    ]


def test_staging_replaces_refuses_a_go_mod_without_staging_modules() -> None:
    with pytest.raises(TestenvError):
        binaries.staging_replaces("module x\n", "v0.35.4")


def test_staging_version_follows_the_kubernetes_minor_and_patch() -> None:
    assert versions.staging_version("v1.35.4") == "v0.35.4"


def test_explicit_environment_paths_win_over_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "my-apiserver"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CANARYCTL_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("CANARYCTL_KUBE_APISERVER", str(fake))
    found = binaries.find()
    assert found["kube-apiserver"] == fake
    assert found["etcd"] is None  # not in the empty cache


def test_a_non_executable_explicit_path_is_an_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARYCTL_ETCD", str(tmp_path / "missing"))
    with pytest.raises(TestenvError, match="CANARYCTL_ETCD"):
        binaries.find()

"""The distribution a user installs: sdist and wheel from `python -m build`, installed into
a fresh virtualenv, carry every file canaryctl reads at run time and both commands."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from canaryctl.testenv import binaries

ROOT = Path(__file__).resolve().parents[2]
#: Files read at run time, relative to the package (checked in the wheel and once installed).
RUNTIME_DATA = [
    "testenv/stages/nodes.yaml",
    "testenv/stages/pods.yaml",
    "crds/canaries.canaryctl.dev.yaml",
    "dashboards/canaryctl.json",
    "py.typed",
]


def run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    out = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    assert out.returncode == 0, f"{cmd}: {out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist, then the wheel built from that sdist (so the sdist must be complete)."""
    out = tmp_path_factory.mktemp("dist")
    log = run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    assert "deprecat" not in log.lower(), "the build warns about deprecated configuration"
    return out


def test_the_wheel_holds_the_runtime_data_and_both_entry_points(dist: Path) -> None:
    (wheel,) = dist.glob("canaryctl-*.whl")
    assert len(list(dist.glob("canaryctl-*.tar.gz"))) == 1
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in RUNTIME_DATA:
        assert f"canaryctl/{rel}" in names, f"{rel} missing from the wheel"
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "canaryctl = canaryctl.cli.app:main" in text
    assert "kubectl-canary = canaryctl.cli.app:main" in text
    assert "kubectl_complete-canary = canaryctl.cli.completion:main" in text
    (metadata,) = [n for n in names if n.endswith("METADATA")]
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_a_fresh_venv_runs_canaryctl_and_the_kubectl_plugin(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("canaryctl-*.whl")
    venv = tmp_path / "venv"
    # No pip inside (ensurepip is slow): this interpreter's pip installs into it, from its cache.
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    bin_ = venv / "bin"
    run(sys.executable, "-m", "pip", "--python", bin_ / "python", "install", "-q", wheel)
    assert "Usage: canaryctl" in run(bin_ / "canaryctl", "--help")
    assert "Usage: kubectl canary" in run(bin_ / "kubectl-canary", "--help")
    # `kubectl canary <TAB>`: the real kubectl finds the plugin and its completion
    # executable on PATH and relays their answer (Cobra's protocol, as a shell asks it).
    kubectl = binaries.find(names=["kubectl"])["kubectl"]
    if kubectl is not None:
        env = {**os.environ, "PATH": f"{bin_}:{os.environ.get('PATH', '')}"}

        def complete(*words: str) -> list[str]:
            done = subprocess.run([kubectl, "__complete", "canary", *words], env=env,
                                  capture_output=True, text=True, check=True)  # fmt: skip
            return done.stdout.splitlines()

        out = complete("ro")
        assert out[0].split("\t")[0] == "rollout" and out[-1] == ":4", out
        out = complete("rollout", "--router", "")
        kinds = [line.split("\t")[0] for line in out[:4]]
        assert kinds == ["replicas", "nginx", "istio", "gateway"], out
    # The installed package (not the source tree) finds its data files.
    probe = (
        "import importlib.resources as r, sys\n"
        "root = r.files('canaryctl')\n"
        "missing = [p for p in sys.argv[1:] if not root.joinpath(p).is_file()]\n"
        "print(root)\n"
        "assert not missing, missing\n"
    )
    where = run(bin_ / "python", "-c", probe, *RUNTIME_DATA, cwd=tmp_path)
    assert str(venv) in where, f"imported canaryctl from {where}, not the fresh venv"

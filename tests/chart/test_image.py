"""The operator image built without a registry: an OCI layout tar whose config is what the
Containerfile declares, holding Debian's python3, canaryctl and its dependencies."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shlex
import shutil
import tarfile

import pytest

from canaryctl.testenv import operator_image
from helpers import REPO

CONTAINERFILE = REPO / "Containerfile"


def final_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Containerfile's last stage, continuations joined."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    return [tuple(ln.split(None, 1)) for ln in lines[stages[-1] :]]  # type: ignore[misc]


@pytest.fixture(scope="module")
def image() -> tuple[dict, list[set[str]]]:
    """The image's config and the file names of its layers (read once: they are large)."""
    if os.geteuid() != 0 or shutil.which("mmdebstrap") is None:
        pytest.skip("building the operator image needs root and mmdebstrap (make operator-image)")
    return blobs(operator_image.build())


def blobs(image: operator_image.images.Image) -> tuple[dict, list[set[str]]]:
    """The image config and the file names of each layer, lowest first."""
    with tarfile.open(image.tar) as tf:
        read = lambda d: tf.extractfile("blobs/sha256/" + d.split(":")[1]).read()  # noqa: E731
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.loads(read(index["manifests"][0]["digest"]))
        config = json.loads(read(manifest["config"]["digest"]))
        layers = []
        for layer in manifest["layers"]:
            data = io.BytesIO(gzip.decompress(read(layer["digest"])))
            with tarfile.open(fileobj=data) as lt:
                layers.append({n.removeprefix("./") for n in lt.getnames()})
    return config, layers


def test_the_image_config_is_what_the_containerfile_declares(image) -> None:
    config, layers = image
    stage = dict(final_stage())
    assert config["config"]["Entrypoint"] == json.loads(stage["ENTRYPOINT"])
    assert config["config"]["Cmd"] == json.loads(stage["CMD"])
    assert config["config"]["User"] == stage["USER"]
    env = dict(kv.split("=", 1) for kv in shlex.split(stage["ENV"]))
    assert env.items() <= dict(e.split("=", 1) for e in config["config"]["Env"]).items()
    run = stage["RUN"]
    assert all(f" {p}" in run for p in operator_image.DEBIAN_PACKAGES), run
    assert operator_image.DEBIAN_SUITE in " ".join(a for i, a in final_stage() if i == "FROM")
    assert len(layers) == 3


def test_the_layers_hold_debian_python_canaryctl_and_its_dependencies(image) -> None:
    _, (base, deps, app) = image
    base_names = base
    assert "usr/bin/python3" in base_names
    assert not any(n.startswith("usr/share/doc/") for n in base_names)
    assert "usr/share/perl" not in base_names  # no usrmerge, so no full Perl (perl-base only)
    assert "bin" in base_names and "usr/bin" in base_names  # merged /usr, by mmdebstrap's hook
    assert not any(
        n.startswith("var/lib/apt/lists/") and n.endswith("Packages") for n in base_names
    )
    site = operator_image.SITE
    deps_names = deps
    for package in ("kopf", "lightkube", "pydantic_core", "yaml", "prometheus_client"):
        assert f"{site}/{package}/__init__.py" in deps_names, package
    app_names = app
    assert f"{site}/canaryctl/__main__.py" in app_names
    assert f"{site}/canaryctl/crds/canaries.canaryctl.dev.yaml" in app_names
    assert not any(n.startswith(f"{site}/canaryctl/") for n in deps_names)

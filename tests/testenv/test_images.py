"""Locally built images: a static Go binary in a one-layer OCI image layout, cached."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from canaryctl.errors import TestenvError
from canaryctl.testenv import images

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")

HELLO = """package main

import "fmt"

func main() { fmt.Println("hello") }
"""


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CANARYCTL_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "hello"
    src.mkdir()
    (src / "go.mod").write_text("module example.local/hello\n\ngo 1.25.0\n")
    (src / "main.go").write_text(HELLO)
    return src


def _blob(tf: tarfile.TarFile, digest: str) -> bytes:
    member = tf.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
    assert member is not None
    data = member.read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, "blob matches its digest"
    return data


def test_build_image_packs_a_static_binary_as_a_one_layer_oci_layout(source: Path) -> None:
    image = images.build_image(source, "hello", env={"GREETING": "hi"})
    assert image.ref.startswith("canaryctl.local/hello:")
    with tarfile.open(image.tar) as tf:
        assert json.load(tf.extractfile("oci-layout"))["imageLayoutVersion"] == "1.0.0"  # type: ignore[arg-type]
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        desc = index["manifests"][0]
        assert desc["annotations"]["io.containerd.image.name"] == image.ref
        assert desc["digest"] == image.digest
        manifest = json.loads(_blob(tf, desc["digest"]))
        config = json.loads(_blob(tf, manifest["config"]["digest"]))
        assert len(manifest["layers"]) == 1
        layer = gzip.decompress(_blob(tf, manifest["layers"][0]["digest"]))
    assert config["config"]["Entrypoint"] == ["/hello"]
    assert config["config"]["Env"] == ["GREETING=hi"]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(layer)) as lt:
        binary = lt.getmember("hello")
        assert binary.mode == 0o755
        data = lt.extractfile(binary).read()  # type: ignore[union-attr]
    assert data[:4] == b"\x7fELF"
    assert b"/lib64/ld-linux" not in data, "a static binary needs no dynamic loader"


def test_build_image_is_cached_by_source_and_a_source_change_gives_a_new_tag(
    source: Path,
) -> None:
    first = images.build_image(source, "hello")
    stamp = first.tar.stat().st_mtime_ns
    again = images.build_image(source, "hello")
    assert again == first and first.tar.stat().st_mtime_ns == stamp, "served from the cache"
    (source / "main.go").write_text(HELLO.replace("hello", "bye"))
    changed = images.build_image(source, "hello")
    assert changed.ref != first.ref and changed.tar != first.tar


def test_build_image_names_the_folder_when_it_has_no_go_module(tmp_path: Path) -> None:
    with pytest.raises(TestenvError, match=r"has no go\.mod"):
        images.build_image(tmp_path, "nothing")


def test_a_broken_program_fails_with_the_compiler_message(source: Path) -> None:
    (source / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    with pytest.raises(TestenvError, match="undefined"):
        images.build_image(source, "broken")

"""Container images built locally, without a registry.

``build_image`` compiles a static Go binary (``CGO_ENABLED=0``) from a source folder of the
repository and packs it as a one-layer OCI image layout tar; ``import_image`` loads the tar
into a containerd with ``ctr -n k8s.io images import``, where the kubelet finds it. Tars are
cached under ``~/.cache/canaryctl/images/`` keyed by a hash of the source (and the Go
version), so an unchanged image is built once per machine.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from canaryctl.errors import TestenvError
from canaryctl.testenv.binaries import cache_root

#: Registry-like prefix of every image built here; nothing is ever pulled from it.
REGISTRY = "canaryctl.local"
#: Folders with image sources in the repository (images/<name>/).
IMAGES_DIR = Path(__file__).resolve().parents[3] / "images"
_K8S_NAMESPACE = "k8s.io"


@dataclass(frozen=True)
class Image:
    """A built image: its reference (``canaryctl.local/name:tag``) and OCI layout tar."""

    ref: str
    tar: Path
    digest: str


def images_cache() -> Path:
    """Where built image tars are kept."""
    return cache_root() / "images"


@cache
def _go_version() -> str:
    go = shutil.which("go")
    if go is None:
        raise TestenvError("the Go toolchain is needed to build container images: install Go")
    return subprocess.run(
        [go, "env", "GOVERSION"], check=True, capture_output=True, text=True
    ).stdout.strip()


def source_hash(source_dir: Path) -> str:
    """Hash of every file in the source folder (names and contents) and the Go version."""
    h = hashlib.sha256(_go_version().encode())
    for path in sorted(p for p in source_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(source_dir).as_posix()
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def reference(source_dir: Path, name: str, tag: str | None = None) -> str:
    """The reference ``build_image`` gives this source (without building it)."""
    return f"{REGISTRY}/{name}:{tag or source_hash(source_dir)[:12]}"


def build_image(
    source_dir: Path,
    name: str,
    tag: str | None = None,
    *,
    env: dict[str, str] | None = None,
) -> Image:
    """Build (or take from the cache) the image of the Go program in ``source_dir``.

    The binary is the image's entrypoint ``/<name>``; ``env`` becomes the image's
    environment. The tag defaults to the first 12 hex digits of the source hash.
    """
    if not (source_dir / "go.mod").exists():
        raise TestenvError(f"image {name}: {source_dir} has no go.mod")
    digest = source_hash(source_dir)
    ref = reference(source_dir, name, tag)
    key = hashlib.sha256(f"{digest}\0{ref}\0{sorted((env or {}).items())}".encode()).hexdigest()
    tar = images_cache() / f"{name}-{key[:16]}.tar"
    if tar.exists():
        return Image(ref, tar, _manifest_digest(tar))
    tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tar.parent) as tmp:
        binary = Path(tmp) / name
        cmd = [shutil.which("go") or "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binary]
        go_env = dict(os.environ, CGO_ENABLED="0", GOOS="linux", GOFLAGS="-buildvcs=false")
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=source_dir, env=go_env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise TestenvError(f"image {name}: go build in {source_dir} failed:\n{proc.stderr}")
        layout = Path(tmp) / "layout.tar"
        _write_oci_layout(layout, ref, name, binary.read_bytes(), env or {})
        os.replace(layout, tar)
    return Image(ref, tar, _manifest_digest(tar))


def _blob(blobs: dict[str, bytes], data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest, len(data)


def _tar_bytes(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A deterministic tar (fixed owner and times) of path -> (content, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _write_oci_layout(out: Path, ref: str, name: str, binary: bytes, env: dict[str, str]) -> None:
    layer = _tar_bytes({name: (binary, 0o755)})
    config = {
        "Entrypoint": [f"/{name}"],
        "Env": [f"{k}={v}" for k, v in sorted(env.items())],
    }
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    write_layout(out, ref, [(gzip.compress(layer, mtime=0), diff_id)], config, [name])


def write_layout(
    out: Path,
    ref: str,
    layers: list[tuple[bytes, str]],
    config: dict[str, object],
    created_by: list[str],
) -> None:
    """Write a one-manifest OCI image layout tar named ``ref`` (for ``ctr images import``).

    ``layers`` are (gzip-compressed tar, sha256 digest of the uncompressed tar) pairs,
    lowest first;
    ``config`` is the image config's ``config`` object (Entrypoint, Cmd, Env, User, ...).
    """
    blobs: dict[str, bytes] = {}
    descriptors, diff_ids = [], []
    for compressed, diff_id in layers:
        diff_ids.append(diff_id)
        digest, size = _blob(blobs, compressed)
        descriptors.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
             "size": size}
        )  # fmt: skip
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"canaryctl build_image {c}"} for c in created_by],
    }
    config_digest, config_size = _blob(blobs, json.dumps(image_config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": descriptors,
    }
    manifest_digest, manifest_size = _blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    # containerd names the imported image after this annotation.
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
                },
            }
        ],
    }
    files = {
        "oci-layout": (json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644),
        "index.json": (json.dumps(index, sort_keys=True).encode(), 0o644),
    }
    for digest, data in blobs.items():
        files[f"blobs/sha256/{digest.split(':', 1)[1]}"] = (data, 0o644)
    out.write_bytes(_tar_bytes(files))


def _manifest_digest(tar: Path) -> str:
    with tarfile.open(tar) as tf:
        member = tf.extractfile("index.json")
        assert member is not None
        return str(json.load(member)["manifests"][0]["digest"])


def import_image(image: Image, address: str) -> None:
    """Load the image into the containerd at ``address`` (namespace k8s.io, for the kubelet)."""
    proc = subprocess.run(
        ["ctr", "--address", address, "-n", _K8S_NAMESPACE, "images", "import", str(image.tar)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise TestenvError(f"importing {image.ref} into containerd failed: {proc.stderr.strip()}")


def imported(address: str) -> set[str]:
    """References of the images the containerd at ``address`` holds for the kubelet."""
    proc = subprocess.run(
        ["ctr", "--address", address, "-n", _K8S_NAMESPACE, "images", "ls", "-q"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        raise TestenvError(f"listing containerd images failed: {proc.stderr.strip()}")
    return set(proc.stdout.split())


def pause_image() -> Image:
    """The pod sandbox image, built from images/pause."""
    return build_image(IMAGES_DIR / "pause", "pause")


#: The seed's app as the examples name it (examples/pulpocon-app: canaryctl.local/pulpocon-app:1.0).
APP_NAME, APP_TAG = "pulpocon-app", "1.0"


def app_image() -> Image:
    """The seed's HTTP app, built from images/pulpocon-app with the examples' tag."""
    return build_image(IMAGES_DIR / APP_NAME, APP_NAME, APP_TAG)

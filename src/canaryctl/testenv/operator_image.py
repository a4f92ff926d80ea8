"""The operator's container image, built without a registry or a container engine.

Three layers, each cached under ``~/.cache/canaryctl/images/`` by a hash of its inputs:

``base``
    A Debian root filesystem with Python (``mmdebstrap --variant=minbase``), from the
    Debian mirrors; rebuilt only when the suite or the package list changes.
``deps``
    canaryctl's run-time dependencies (``[project].dependencies`` of pyproject.toml),
    installed by pip from PyPI as binary wheels for the image's Python into
    ``/opt/canaryctl/lib``; rebuilt when pyproject.toml changes.
``app``
    The canaryctl wheel built from this checkout, installed into the same folder;
    rebuilt when the source changes.

The image runs ``python3 -m canaryctl operator`` as user 65532 and is packed as an OCI
image layout tar (``images.write_layout``) for ``ctr images import``. The repository's
``Containerfile`` describes the same image for a container engine and a registry.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from canaryctl.errors import TestenvError
from canaryctl.testenv import images
from canaryctl.testenv.binaries import Progress

NAME = "canaryctl-operator"
#: Debian suite and packages of the base layer (its python3 is the image's Python).
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "ca-certificates")
DEBIAN_SOURCES = (
    f"deb http://deb.debian.org/debian {DEBIAN_SUITE} main",
    f"deb http://deb.debian.org/debian {DEBIAN_SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {DEBIAN_SUITE}-security main",
)
#: Documentation, manuals and translations are left out of the root filesystem.
#: mmdebstrap's hook that merges /usr itself: without it bookworm's bootstrap installs the
#: usrmerge package, which pulls in the whole of Perl (40 MiB) that nothing else needs.
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
#: Python of DEBIAN_SUITE: pip picks the dependencies' wheels for it.
PYTHON_VERSION = "3.11"
WHEEL_PLATFORM = "manylinux2014_x86_64"
#: Where the dependencies and canaryctl are installed in the image.
SITE = "opt/canaryctl/lib"
USER = "65532:65532"
ROOT = Path(__file__).resolve().parents[3]
#: Operator images (and app layers) kept in the cache; older ones are deleted.
KEEP_IMAGES = 4


@dataclass(frozen=True)
class Layer:
    """A cached layer: its gzip-compressed tar and the digest of the uncompressed tar."""

    path: Path
    diff_id: str


def _key(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def base_key() -> str:
    """Input hash of the base layer."""
    return _key(
        "base", DEBIAN_SUITE, *DEBIAN_PACKAGES, *DEBIAN_SOURCES, *DPKG_EXCLUDES, MERGED_USR_HOOK
    )


def deps_key(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """Input hash of the dependencies layer: the dependency list and the target Python."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return _key("deps", PYTHON_VERSION, WHEEL_PLATFORM, *deps)


def app_key(root: Path = ROOT) -> str:
    """Input hash of the app layer: every file of the package and the build configuration."""
    files = [root / "pyproject.toml", *sorted((root / "src" / "canaryctl").rglob("*"))]
    parts: list[bytes] = []
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            parts += [path.relative_to(root).as_posix().encode(), path.read_bytes()]
    return _key("app", *parts)


def reference(root: Path = ROOT) -> str:
    """The image reference ``build`` gives this checkout (without building it)."""
    return f"{images.REGISTRY}/{NAME}:{_key(base_key(), deps_key(), app_key(root))[:12]}"


def build(progress: Progress = print, root: Path = ROOT) -> images.Image:
    """Build (or take from the cache) the operator image of this checkout."""
    ref = reference(root)
    out = images.images_cache() / f"{NAME}-{ref.rsplit(':', 1)[1]}.tar"
    if out.exists():
        return images.Image(ref, out, images._manifest_digest(out))
    started = time.monotonic()
    layers = [_base(progress), _deps(progress), _app(progress, root)]
    config = {
        "Entrypoint": ["python3", "-m", "canaryctl"],
        "Cmd": ["operator"],
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"PYTHONPATH=/{SITE}",
            # Read-only root filesystem: bytecode is compiled at build time, never written.
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
            "HOME=/tmp",
        ],
        "User": USER,
        "WorkingDir": "/",
        "Labels": {"org.opencontainers.image.title": NAME},
    }
    blobs = [(layer.path.read_bytes(), layer.diff_id) for layer in layers]
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staged = Path(tmp) / "image.tar"
        images.write_layout(staged, ref, blobs, config, ["base", "deps", "app"])
        os.replace(staged, out)
    # Every source change makes a new image (~75 MiB): keep the newest few on disk.
    _prune(out.parent, f"{NAME}-*.tar", KEEP_IMAGES)
    _prune(out.parent / "layers", f"{NAME}-app-*.tar.gz", KEEP_IMAGES)
    size = sum(len(b) for b, _ in blobs)
    progress(f"built {ref} ({size / 2**20:.0f} MiB) in {time.monotonic() - started:.0f}s")
    return images.Image(ref, out, images._manifest_digest(out))


def _prune(folder: Path, pattern: str, keep: int) -> None:
    """Delete all but the ``keep`` most recently written files matching ``pattern``."""
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in found[keep:]:
        path.unlink(missing_ok=True)
        if path.name.endswith(".tar.gz"):  # a layer's digest file goes with it
            path.with_name(path.name.removesuffix(".tar.gz") + ".diffid").unlink(missing_ok=True)


def _cached(name: str, key: str, make: object, progress: Progress) -> Layer:
    """The layer ``<name>-<key>`` from the cache, or made by ``make(tar_path)`` into it."""
    cache = images.images_cache() / "layers"
    gz, digest = cache / f"{NAME}-{name}-{key}.tar.gz", cache / f"{NAME}-{name}-{key}.diffid"
    if gz.exists() and digest.exists():
        return Layer(gz, digest.read_text().strip())
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        plain = Path(tmp) / "layer.tar"
        make(plain)  # type: ignore[operator]
        h = hashlib.sha256()
        with (
            plain.open("rb") as src,
            gzip.GzipFile(Path(tmp) / "layer.tar.gz", "wb", compresslevel=6, mtime=0) as dst,
        ):
            while chunk := src.read(1 << 20):
                h.update(chunk)
                dst.write(chunk)
        os.replace(Path(tmp) / "layer.tar.gz", gz)
        digest.write_text(f"sha256:{h.hexdigest()}\n")
    progress(f"{NAME}: {name} layer built in {time.monotonic() - started:.0f}s")
    return Layer(gz, digest.read_text().strip())


def _run(cmd: list[str], what: str, **kwargs: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise TestenvError(f"{NAME}: {what} failed (exit {proc.returncode}):\n{tail}")


def _base(progress: Progress) -> Layer:
    def make(out: Path) -> None:
        tool = shutil.which("mmdebstrap")
        if tool is None:
            raise TestenvError(
                f"{NAME}: mmdebstrap is needed to build the image's Debian root filesystem "
                "(apt-get install mmdebstrap, or run scripts/install-system-deps.sh)"
            )
        progress(f"{NAME}: Debian {DEBIAN_SUITE} root filesystem with mmdebstrap")
        cmd = [tool, "--mode=root", "--variant=minbase", "--format=tar", "--skip=output/dev"]
        cmd += [f"--include={','.join(DEBIAN_PACKAGES)}", f"--hook-dir={MERGED_USR_HOOK}"]
        cmd += [f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES]
        # apt's lists and caches are not part of a runtime image.
        cmd += ["--customize-hook=rm -rf $1/var/lib/apt/lists/* $1/var/cache/apt/*"]
        # Debian's own tools (mmdebstrap's helpers run `env python3`): the system PATH, not
        # a user's Python shims, which can cost seconds per package.
        env = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
        _run([*cmd, DEBIAN_SUITE, str(out), *DEBIAN_SOURCES], "mmdebstrap", env=env, timeout=900)

    return _cached("base", base_key(), make, progress)


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def _tar_folder(folder: Path, out: Path) -> None:
    """A tar of ``folder``'s content at the image's root, owned by root, read-only for others."""

    def reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = (info.mode & 0o755) | (0o755 if info.isdir() else 0o644)
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for child in sorted(folder.iterdir()):
            tf.add(child, arcname=child.name, filter=reset)


def _deps(progress: Progress) -> Layer:
    def make(out: Path) -> None:
        deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        progress(f"{NAME}: run-time dependencies for Python {PYTHON_VERSION} with pip")
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            target = Path(tmp) / SITE
            _run(
                _pip(
                    "install", "--quiet", "--target", str(target), "--only-binary=:all:",
                    "--platform", WHEEL_PLATFORM, "--python-version", PYTHON_VERSION,
                    "--implementation", "cp", *deps,
                ),
                "pip install of the dependencies",
                timeout=900,
            )  # fmt: skip
            shutil.rmtree(target / "bin", ignore_errors=True)  # scripts for the host's Python
            _tar_folder(Path(tmp), out)

    return _cached("deps", deps_key(), make, progress)


def _app(progress: Progress, root: Path) -> Layer:
    def make(out: Path) -> None:
        progress(f"{NAME}: canaryctl wheel from {root}")
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            wheels = Path(tmp) / "wheels"
            _run(
                _pip("wheel", "--quiet", "--no-deps", "-w", str(wheels), str(root)),
                "building the canaryctl wheel",
                timeout=600,
            )
            (wheel,) = wheels.glob("canaryctl-*.whl")
            image = Path(tmp) / "image"
            _run(
                _pip(
                    "install", "--quiet", "--no-deps", "--target", str(image / SITE), str(wheel)
                ),
                "pip install of the canaryctl wheel",
                timeout=600,
            )  # fmt: skip
            shutil.rmtree(image / SITE / "bin", ignore_errors=True)
            _tar_folder(image, out)

    return _cached("app", app_key(root), make, progress)


def size(image: images.Image) -> int:
    """Bytes of the image's compressed layers (what a registry stores and a node pulls)."""
    with tarfile.open(image.tar) as tf:
        return sum(m.size for m in tf.getmembers() if m.name.startswith("blobs/"))

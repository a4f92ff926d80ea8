"""The real Istio and Gateway API CRDs for the local control plane, and canaryctl's own.

The CRDs come from the projects' own Go modules at pinned versions (fetched once with
``go mod download`` and copied into the canaryctl cache), so the API server validates
every VirtualService, DestinationRule and HTTPRoute with the schemas users get.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from canaryctl.errors import TestenvError
from canaryctl.kube.client import FIELD_MANAGER
from canaryctl.testenv import binaries

ISTIO_API_MODULE = "istio.io/api"
ISTIO_API_VERSION = "v1.32.0"
GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"
#: v1.7.0 needs a newer Go toolchain than the one the control plane is built with.
GATEWAY_API_VERSION = "v1.6.3"


@dataclass(frozen=True)
class Bundle:
    """A set of CRDs shipped in one Go module: which files, and which API groups of them."""

    name: str
    module: str
    version: str
    files: tuple[str, ...]
    groups: tuple[str, ...]


ISTIO = Bundle(
    name="istio",
    module=ISTIO_API_MODULE,
    version=ISTIO_API_VERSION,
    files=("kubernetes/customresourcedefinitions.gen.yaml",),
    groups=("networking.istio.io",),
)
GATEWAY_API = Bundle(
    name="gateway-api",
    module=GATEWAY_API_MODULE,
    version=GATEWAY_API_VERSION,
    files=tuple(
        f"config/crd/standard/gateway.networking.k8s.io_{plural}.yaml"
        for plural in ("gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants")
    ),
    groups=("gateway.networking.k8s.io",),
)
BUNDLES = (ISTIO, GATEWAY_API)


def bundle_dir(bundle: Bundle) -> Path:
    """Cache folder of one bundle's CRD files at its pinned version."""
    return binaries.cache_root() / "crds" / f"{bundle.name}-{bundle.version}"


def fetch(bundle: Bundle, progress: binaries.Progress = print) -> list[Path]:
    """Paths of the bundle's CRD files, downloading its Go module the first time."""
    target = bundle_dir(bundle)
    cached = [target / Path(f).name for f in bundle.files]
    if all(p.exists() for p in cached):
        return cached
    go = shutil.which("go")
    if go is None:
        raise TestenvError(
            f"the Go toolchain is needed once to fetch the {bundle.name} CRDs "
            f"({bundle.module}@{bundle.version}) into {target}"
        )
    progress(f"fetching {bundle.module}@{bundle.version} for its CRDs")
    # An empty working folder: a go.mod around the caller must not take part.
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            [go, "mod", "download", "-json", f"{bundle.module}@{bundle.version}"],
            capture_output=True,
            text=True,
            cwd=cwd,
        )
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {"Error": proc.stderr.strip() or f"exit status {proc.returncode}"}
    if proc.returncode != 0 or info.get("Error"):
        raise TestenvError(f"go mod download {bundle.module}@{bundle.version}: {info['Error']}")
    source = Path(info["Dir"])
    target.mkdir(parents=True, exist_ok=True)
    for rel, dest in zip(bundle.files, cached, strict=True):
        if not (source / rel).exists():
            raise TestenvError(f"{bundle.module}@{bundle.version} has no {rel}")
        tmp = dest.with_suffix(".tmp")
        shutil.copyfile(source / rel, tmp)
        tmp.replace(dest)  # atomic: a concurrent reader never sees half a file
    return cached


def load(bundle: Bundle, progress: binaries.Progress = print) -> list[dict[str, Any]]:
    """The bundle's CustomResourceDefinitions of the selected API groups, as mappings."""
    docs: list[dict[str, Any]] = []
    for path in fetch(bundle, progress):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if (
                    doc
                    and doc.get("kind") == "CustomResourceDefinition"
                    and doc["spec"]["group"] in bundle.groups
                ):
                    docs.append(doc)
    return docs


def install(
    client: Client,
    bundles: tuple[Bundle, ...] = BUNDLES,
    *,
    timeout: float = 60.0,
    progress: binaries.Progress = print,
) -> list[str]:
    """Server-side apply the bundles' CRDs and wait until each is Established; their names."""
    names: list[str] = []
    for bundle in bundles:
        for doc in load(bundle, progress):
            crd = codecs.from_dict(doc)
            try:
                client.apply(crd, field_manager=FIELD_MANAGER, force=True)
            except ApiError as exc:
                raise TestenvError(
                    f"installing CRD {doc['metadata']['name']}: {exc.status.message}"
                ) from exc
            names.append(doc["metadata"]["name"])
    deadline = time.monotonic() + timeout
    for name in names:
        while not _established(client, name):
            if time.monotonic() > deadline:
                raise TestenvError(f"CRD {name} not Established within {timeout:.0f}s")
            time.sleep(0.1)
    return names


def install_canaryctl(client: Client, *, timeout: float = 60.0) -> str:
    """Server-side apply canaryctl's own Canary CRD (package data) and wait until Established."""
    from canaryctl.kube.crd import CRD_PATH

    doc = yaml.safe_load(CRD_PATH.read_text())
    name = doc["metadata"]["name"]
    try:
        client.apply(codecs.from_dict(doc), field_manager=FIELD_MANAGER, force=True)
    except ApiError as exc:
        raise TestenvError(f"installing CRD {name}: {exc.status.message}") from exc
    deadline = time.monotonic() + timeout
    while not _established(client, name) or not _served(client):
        if time.monotonic() > deadline:
            raise TestenvError(f"CRD {name} not Established and served within {timeout:.0f}s")
        time.sleep(0.1)
    return name


def _served(client: Client) -> bool:
    """Whether Canary objects can be listed (Established comes before storage is ready)."""
    from canaryctl.kube.canary import Canary

    try:
        next(iter(client.list(Canary, namespace="default", chunk_size=1)), None)
    except ApiError:
        return False
    return True


def _established(client: Client, name: str) -> bool:
    crd = client.get(CustomResourceDefinition, name)
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)

"""Apply YAML manifests with server-side apply (used by the demo and tests)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError

from canaryctl.errors import ClusterError
from canaryctl.kube.client import FIELD_MANAGER


def load(paths: Iterable[str | Path]) -> list[codecs.AnyResource]:
    """Parse every YAML document of the given files into lightkube objects."""
    objs: list[codecs.AnyResource] = []
    for path in paths:
        with open(path) as f:
            objs.extend(codecs.load_all_yaml(f))
    return objs


def apply(client: Client, objs: Iterable[codecs.AnyResource], namespace: str) -> None:
    """Server-side apply each object into namespace (idempotent; conflicts are forced)."""
    for obj in objs:
        try:
            client.apply(obj, namespace=namespace, field_manager=FIELD_MANAGER, force=True)
        except ApiError as exc:
            name = f"{obj.kind}/{obj.metadata.name}"
            raise ClusterError(f"applying {name} in {namespace}: {exc.status.message}") from exc
